"""CPU per direct call on each side, without servers or load: what `python -m benchmarks direct`'s
throughput ratio is made of, measured in a way that a busy shared machine disturbs less.

- server: `CallBuffer.direct` on the ASGI headers of a call without the token, `add` of the
  benchmark's iris request body and reply, and its share of `take` (the hub's fetch), per call;
- hub: `Collector` storing one fetched reply of `--batch` records in a SQLite file (parse, check,
  insert, rollups, Prometheus), per record.

CPU time of this process (time.process_time), the best of several rounds. `python -m
benchmarks.direct_cost [--batch 2000] [--profile]` (~20 s)."""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import tempfile
import time
from types import SimpleNamespace

INPUTS = {"features": [[5.1, 3.8, 1.6, 0.2]]}
BODY = json.dumps({"inputs": INPUTS}).encode()  # the request's body, as the server keeps it
REPLY = b'{"label":[0]}'
HEADERS = [(b"host", b"127.0.0.1:3000"), (b"user-agent", b"wrk"), (b"content-type", b"application/json"),
           (b"content-length", b"49")]  # fmt: skip


def server_us(calls: int = 20_000) -> tuple[float, float]:
    """(the request's part: `direct` + `add`, the hub fetch's part: `take`), per call."""
    from runners.flavors.calls import CallBuffer

    buffer = CallBuffer("secret", max_calls=calls * 10)
    acked = [0]

    def record() -> None:
        for _ in range(calls):
            if buffer.direct(HEADERS):
                buffer.add(time.time(), 1.234, INPUTS, REPLY, body=BODY)

    def fetch() -> None:
        while True:  # the hub's fetches of 2000, each acknowledging the one before
            last = json.loads(buffer.take(acked[0], 2000).split(b"\n", 1)[0])["last"]
            if last == acked[0]:
                return
            acked[0] = last

    request, taken = float("inf"), float("inf")
    for _ in range(7):
        started = time.process_time()
        record()
        recorded = time.process_time()
        fetch()
        request, taken = min(request, recorded - started), min(taken, time.process_time() - recorded)
    return request / calls * 1e6, taken / calls * 1e6


def _hub_collector(batch: int):
    """A Collector over a new SQLite file, and `fill()`, which gives its client a reply of `batch`."""
    import monitor.migrations  # noqa: F401  (registers the steps)
    import registry.migrations  # noqa: F401
    from database.connection import connect, database
    from database.migrations import migrate
    from hub.collector import Collector
    from monitor.metrics import Metrics
    from monitor.predlog import PredictionLog
    from runners.flavors.calls import CallBuffer

    conn = connect(f"sqlite:///{tempfile.mkdtemp(prefix='aidhub-direct-cost-')}/hub.db")
    database.initialize(conn)
    migrate(conn)
    server = SimpleNamespace(reply="")
    collector = Collector(SimpleNamespace(direct_calls=lambda url, acks, limit: server.reply),
                          PredictionLog(conn), Metrics())  # fmt: skip

    def fill() -> None:
        buffer, now = CallBuffer("secret"), time.time()
        for i in range(batch):
            buffer.add(now + i * 1e-4, 1.234, INPUTS, REPLY, body=BODY)
        server.reply = buffer.take(0, batch)  # as the hub's client hands it on

    return collector, fill


def hub_us(batch: int, profile: bool = False) -> float:
    collector, fill = _hub_collector(batch)
    version = SimpleNamespace(id=7, version="1.0.0", model=SimpleNamespace(name="iris"))
    if profile:
        fill()
        with cProfile.Profile() as found:
            collector._collect_from("http://server", version)
        pstats.Stats(found).sort_stats("tottime").print_stats(15)
    best = float("inf")
    for _ in range(7):
        fill()  # not counted: the server's part
        started = time.process_time()
        assert collector._collect_from("http://server", version) == batch
        best = min(best, time.process_time() - started)
    return best / batch * 1e6


def run() -> list[dict]:
    """`make bench`'s rows: CPU per direct call on the model server, and per record the hub stores."""
    request, taken = server_us()
    figures = {
        "direct call recorded, server CPU on the request's way": request,
        "direct call recorded, server CPU in the hub's fetch": taken,
        "direct call stored by the hub, CPU per record": hub_us(2000),
    }
    return [{"name": name, "value": us, "unit": "us", "target": ""} for name, us in figures.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=2000, help="records per fetch on the hub side")
    parser.add_argument("--profile", action="store_true", help="also print the hub's cProfile")
    args = parser.parse_args()
    request, taken = server_us()
    print(
        f"server: {request + taken:.2f} us CPU per direct call: {request:.2f} on the request's way "
        f"(direct + add), {taken:.2f} in the hub's fetch (take)"
    )
    print(f"hub:    {hub_us(args.batch, args.profile):.2f} us CPU per record stored (batch {args.batch})")


if __name__ == "__main__":
    main()
