"""Run by `benchmarks.direct_inplace` with a model environment's python, in a copy of a version's service
folder: CPU microseconds per POST /predict through the service's real BentoML ASGI app, in this process
(no sockets, no load generator). With the hub's token in the environment, the calls are recorded and
fetched every 3,000 calls, as the hub would. Prints one JSON line: {"recorded", "us" (sorted rounds)}.

    python inplace_calls.py CALLS ROUNDS BODY_JSON"""

import asyncio
import json
import os
import sys
import time

sys.path.insert(0, os.getcwd())
CALLS, ROUNDS, BODY = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].encode()
TOKEN = os.environ.get("AIDHUB_REPORT_TOKEN")
HEADERS = [(b"host", b"127.0.0.1:3000"), (b"content-type", b"application/json"), (b"user-agent", b"wrk")]


def _app():
    from _bentoml_impl.loader import load
    from bentoml._internal.context import server_context

    service = load("service:AidService", standalone_load=True)
    server_context.service_type, server_context.service_name = "entry_service", service.name
    return service.to_asgi(is_main=True)


async def _call(app, path: str, body: bytes, headers: list) -> list[dict]:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 3000),
        "headers": [*headers, (b"content-length", str(len(body)).encode())],
    }  # fmt: skip
    messages, sent = [], False

    async def receive() -> dict:
        nonlocal sent
        if sent:
            await asyncio.Event().wait()  # the client never disconnects
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict) -> None:
        messages.append(message)

    # In a task of its own, as a server runs each request: what a call sets in its context (BentoML
    # keeps a traced request's id there, and then adds a header to every reply) stays with it.
    await asyncio.get_running_loop().create_task(app(scope, receive, send))
    return messages


async def _main() -> None:
    app, acks = _app(), {}
    inbox, outbox = asyncio.Queue(), asyncio.Queue()
    asyncio.ensure_future(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, outbox.put)
    )
    await inbox.put({"type": "lifespan.startup"})
    assert (await outbox.get())["type"] == "lifespan.startup.complete"

    async def fetch() -> None:
        ask = json.dumps({"ack": acks, "limit": 20_000}).encode()
        reply = await _call(app, "/aidhub/calls", ask, [(b"authorization", f"Bearer {TOKEN}".encode())])
        text = b"".join(m.get("body", b"") for m in reply if m["type"] == "http.response.body")
        head = json.loads(text.split(b"\n", 1)[0])
        acks[head["worker"]] = head["last"]

    rounds = []
    for turn in range(ROUNDS + 1):  # the first warms up
        started = time.process_time()
        for i in range(CALLS):
            reply = await _call(app, "/predict", BODY, HEADERS)
            if TOKEN and i % 3000 == 2999:
                await fetch()
        if TOKEN:
            await fetch()
        if turn:
            rounds.append((time.process_time() - started) / CALLS * 1e6)
    assert reply[0]["status"] == 200, reply
    print(json.dumps({"recorded": bool(TOKEN), "us": sorted(rounds)}))


asyncio.run(_main())
