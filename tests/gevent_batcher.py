"""Run by tests/test_load.py: hub/batcher.py in a gevent-patched process, as under `aid serve`,
sending to the real model server at argv[1] with the hub's token (argv[2]). A caller is killed while
it waits behind a call that is out; prints what the others got, their answers alone, and what was
sent (JSON)."""

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import sys  # noqa: E402

import gevent  # noqa: E402
import numpy as np  # noqa: E402

from hub.batcher import Batcher  # noqa: E402
from hub.serving import ModelClient  # noqa: E402


def main(url: str, token: str) -> None:
    client, sent = ModelClient(token=token), []

    def send(arrays: dict) -> dict:
        sent.append(arrays["features"][:, 0].tolist())
        gevent.sleep(0.05)  # a slower model: the calls behind this one wait meanwhile
        return client.predict_tensors(url, arrays)

    def row(value: float) -> dict:  # values float32 holds exactly
        return {"features": np.array([[value, 3.0, 1.5, 0.2]], dtype=np.float32)}

    batcher = Batcher(send, ["features"], 16, max_latency_ms=5)
    first = gevent.spawn(batcher, row(4.5))
    gevent.sleep(0.01)  # its call is out
    killed, last = (gevent.spawn(batcher, row(v)) for v in (6.5, 5.5))
    gevent.sleep(0.01)  # both wait
    killed.kill()
    gevent.joinall([first, last], timeout=10)
    print(json.dumps({
        "answers": [first.value, last.value],
        "alone": [client.predict_tensors(url, row(v)) for v in (4.5, 5.5)],
        "sent": sent,
    }, default=lambda a: np.asarray(a).tolist()))  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
