"""Shadow versions on a real hub (`aid serve`: gunicorn, a gevent worker) with real model servers: one
serving python model (y = 2x) and three candidates, a good one (y = 3x), one that fails and one that
sleeps 200 ms. What a caller gets, what is logged and paired, the share copied, the failures counted,
the caller's latency beside a slow shadow, and `aid shadow` / `aid compare` as a user meets them."""

from __future__ import annotations

import json
import statistics
import time

import httpx
import pytest
from peewee import SqliteDatabase

from monitor.tables import Prediction
from tests.hubserver import HubProcess, wait_for
from tests.packages import python_package

NAME = "shadowed"
# The failing one fails only on inputs other than its example's, so that its deploy's smoke test passes.
FAILING = """
    def predict(self, x):
        if x != [1.0]:
            raise ValueError("no")
        return {"y": [2.0]}
"""
SLOW = """
    def predict(self, x):
        import time
        time.sleep(0.2)
        return {"y": [v * 2.0 for v in x]}
"""


def candidate(root, version: str, predict: str | None = None, factor: float = 2.0):
    folder = python_package(root / version, NAME, version, factor=factor)
    if predict:
        (folder / "predict.py").write_text("class Model:\n    def setup(self):\n        pass\n" + predict)
    return folder


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    root = tmp_path_factory.mktemp("shadow")
    server = HubProcess(root / "home", workers=1).start()
    packages = [
        candidate(root, "1.0.0"), candidate(root, "1.1.0", factor=3.0),
        candidate(root, "1.2.0", FAILING), candidate(root, "1.3.0", SLOW),
    ]  # fmt: skip
    for folder in packages:
        done = server.aid("publish", str(folder), "--deploy")
        assert done.returncode == 0, done.stdout + done.stderr + server.output()
    done = server.aid("alias", NAME, "production", "1.0.0")
    assert done.returncode == 0, done.stderr
    yield server
    server.undeploy_all()  # the hub leaves its servers running when it stops (they are adopted)
    server.stop()


@pytest.fixture(scope="module")
def http(hub):
    with httpx.Client(base_url=hub.url, headers=hub.headers, timeout=30) as client:
        yield client


def call(http, x: float) -> tuple[dict, float]:
    """One live call; its reply and the latency the caller saw, in ms."""
    started = time.perf_counter()
    reply = http.post(f"/api/v1/models/{NAME}/predict", json={"inputs": {"x": [x]}})
    took = (time.perf_counter() - started) * 1000
    assert reply.status_code == 200, reply.text
    return reply.json(), took


def counts(http) -> dict:
    return http.get(f"/api/v1/models/{NAME}/shadow").json()["shadow"]


def settled(http, **wanted: int) -> dict:
    """The shadow's counts once they reach `wanted`."""
    return wait_for(
        lambda: (c := counts(http)) and all(c[k] == v for k, v in wanted.items()) and c,
        30,
        f"counts {wanted}",
    )


def drained(http) -> dict:
    """The counts once copies queued earlier (a slow shadow's) are all made."""
    last = None
    for _ in range(60):
        if (now := counts(http)) == last:
            return now
        last = now
        time.sleep(0.5)
    raise AssertionError(f"the shadow's counts still change: {now}")


def shadow_rows(hub, version: str) -> list[Prediction]:
    with SqliteDatabase(str(hub.home / "hub.db")).bind_ctx([Prediction]):
        query = Prediction.select().where(Prediction.version == version, Prediction.source == "shadow")
        return list(query.order_by(Prediction.created_at))


def test_at_share_one_every_call_is_copied_logged_as_shadow_paired_and_never_returned(hub, http):
    started = hub.aid("shadow", NAME, "1.1.0", "--share", "1.0")
    assert started.returncode == 0, started.stderr
    assert started.stdout.startswith(f"{NAME}: 100% of the calls to 1.0.0 are copied to 1.1.0 (since ")
    replies = [call(http, float(i))[0] for i in range(1, 21)]
    assert {(r["version"], r["outputs"]["y"][0] / i) for i, r in enumerate(replies, 1)} == {("1.0.0", 2.0)}
    assert settled(http, copied=20) == {**counts(http), "failed": 0, "dropped": 0}
    rows = wait_for(lambda: len(rows := shadow_rows(hub, "1.1.0")) == 20 and rows, 10, "20 shadow rows")
    answers = {r.id: json.loads(r.outputs)["y"] for r in rows}  # the workers finish in any order
    assert answers == {f"{r['id']}.shadow": [3.0 * i] for i, r in enumerate(replies, 1)}
    shown = hub.aid("compare", NAME, "1.0.0", "1.1.0")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == f"{NAME} 1.0.0 vs 1.1.0, last 24h: 20 calls on the same inputs"
    assert lines[3].split() == ["answered", "live", "/", "in", "shadow", "20", "/", "0", "0", "/", "20"]
    assert lines[-2:] == [
        "agreement (labels): — of 0 calls", "mean absolute difference (numbers): 10.5 over 20 values",
    ]  # fmt: skip


def test_at_share_a_fifth_every_fifth_call_is_copied(hub, http):
    started = hub.aid("shadow", NAME, "1.1.0", "--share", "0.2")
    assert started.stdout.startswith(f"{NAME}: 20% of the calls to 1.0.0 are copied to 1.1.0 (since ")
    before = counts(http)["copied"]
    for i in range(50):
        call(http, float(i))
    settled(http, copied=before + 10)
    time.sleep(0.3)
    assert counts(http)["copied"] == before + 10


def test_a_failing_shadow_leaves_the_answers_alone_and_its_failures_are_counted(hub, http):
    assert hub.aid("shadow", NAME, "1.2.0", "--share", "1").returncode == 0
    before = counts(http)["failed"]
    replies = [call(http, 5.0)[0] for _ in range(10)]
    assert {(r["version"], r["outputs"]["y"][0]) for r in replies} == {("1.0.0", 10.0)}
    settled(http, failed=before + 10)
    figures = http.get(f"/api/v1/models/{NAME}/compare", params={"a": "1.0.0", "b": "1.2.0"}).json()
    assert (figures["pairs"], [s["errors"] for s in figures["sides"]]) == (10, [0, 10])
    errors = {r.error for r in shadow_rows(hub, "1.2.0") if r.status == "error"}
    assert [e[:44] for e in errors] == ["The model failed (HTTP 500 from its server):"]


def test_a_slow_shadow_does_not_slow_the_caller(hub, http):
    assert hub.aid("shadow", NAME, "--off").returncode == 0
    for i in range(10):  # warm the connections
        call(http, float(i))
    alone = statistics.median(call(http, float(i))[1] for i in range(60))
    assert hub.aid("shadow", NAME, "1.3.0", "--share", "1.0").returncode == 0
    beside = statistics.median(call(http, float(i))[1] for i in range(60))
    assert beside <= alone + 5.0, (alone, beside)  # the shadow takes 200 ms a call
    assert counts(http)["copied"] + counts(http)["dropped"] < 60  # it was still busy when we were done
    off = hub.aid("shadow", NAME, "--off")
    assert (off.returncode, off.stdout) == (0, f"Stopped copying {NAME}'s calls to 1.3.0.\n")


def test_when_the_shadow_becomes_the_serving_version_nothing_is_copied(hub, http):
    assert hub.aid("shadow", NAME, "1.1.0", "--share", "1.0").returncode == 0
    assert hub.aid("alias", NAME, "production", "1.1.0").returncode == 0
    try:
        time.sleep(2.1)  # the shadow setting's cache (hub/shadow.py TTL)
        before = drained(http)
        assert {call(http, 1.0)[0]["version"] for _ in range(5)} == {"1.1.0"}
        time.sleep(0.3)
        assert counts(http) == before
    finally:
        assert hub.aid("alias", NAME, "production", "1.0.0").returncode == 0
        assert hub.aid("shadow", NAME, "--off").returncode == 0


@pytest.mark.parametrize(
    ("args", "code", "said"),
    [
        (("shadow", NAME, "9.9.9"), 1, "Error: Model 'shadowed' has no version or alias '9.9.9'."),
        (("shadow", NAME, "1.1.0", "--share", "1.5"), 2, "Error: share 1.5 is not in (0, 1];"),
        (("shadow", NAME, "1.1.0", "--share", "0"), 2, "Error: share 0.0 is not in (0, 1];"),
        (("shadow", NAME, "1.0.0"), 2, "Error: shadowed@1.0.0 is the version serving shadowed's calls;"),
        (("shadow", NAME, "1.1.0", "--off"), 2, "Error: Give VERSION (1.1.0) or --off, not both."),
        (("shadow", "nothing"), 1, "Error: "),
        (("compare", NAME, "1.0.0", "1.0.0"), 2, "Error: shadowed@1.0.0 is compared with itself;"),
    ],
)
def test_bad_input_exits_with_its_code_and_says_why(hub, args, code, said):
    done = hub.aid(*args)
    assert (done.returncode, done.stdout) == (code, ""), done.stderr
    assert said in done.stderr, done.stderr
