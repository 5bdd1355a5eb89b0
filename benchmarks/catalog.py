"""How long the catalog page takes with 1,000 models (target <= 150 ms server time), and how many
queries it makes (the same for any number of models).

`run()` opens a Hub on a fresh home and SQLite file, fills it through the registry's and the
monitor's tables directly (`add_models`: versions, aliases, deployments in every state, 45 days of
daily rollups with feedback, a few firing alerts), then renders the catalog page through Flask's
test client, signed in, as a reader asks for it: the default view, each sort, a later page, a search
and filters. Each figure is the median of RUNS renders, in milliseconds.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

from peewee import chunked

from monitor.alerttables import AlertRule, AlertStatus
from monitor.tables import RollupDay
from registry.models import AliasRow, DeploymentRow, ModelRow, VersionRow
from vocab.alerts import AlertState
from vocab.states import DeploymentStatus
from vocab.times import utcnow

MODELS = 1_000
RUNS = 15
DAYS = 45
TASKS = ("image-classification", "text-classification", "regression", "object-detection",
         "tabular-classification", "translation", "summarization", "speech-recognition")  # fmt: skip
FRAMEWORKS = ("onnx", "torch", "sklearn", "python")
TAGS = ("vision", "nlp", "tabular", "audio", "small", "large", "english", "multilingual", "fast",
        "experimental", "production-grade", "resnet", "bert", "xgboost", "finance", "medical")  # fmt: skip
STATES = [s for s in DeploymentStatus if s != DeploymentStatus.NOT_DEPLOYED]
VIEWS = (
    ("popular (default)", "/"),
    ("accuracy", "/?sort=accuracy"),
    ("recent, page 5", "/?sort=recent&page=5"),
    ("search 'clf'", "/?q=clf"),
    ("task + framework + state", "/?task=regression&framework=onnx&state=ready"),
    ("tag + gpu, by accuracy", "/?tag=vision&gpu=none&sort=accuracy"),
)
SCHEMA = {
    "inputs": {"x": {"dtype": "float32", "shape": [-1, 4]}},
    "outputs": {"y": {"dtype": "float32", "shape": [-1]}},
}


def _manifest(name: str, number: str, task: str, framework: str, gpu: str) -> dict:
    """A stored manifest of the shape `Manifest.to_dict` writes."""
    return {
        "name": name, "version": number, "task": task, "framework": framework, "summary": "",
        "tags": [], "artifact": "model.onnx", "entrypoint": None, "python": "3.11", "requirements": [],
        "resources": {"cpu": 1, "memory": "1Gi", "gpu": gpu}, "examples": "examples.json",
        "inputs": {"x": {"dtype": "float32", "shape": [-1, 4]}}, "base_image": None, "alerts": [],
    }  # fmt: skip


def _insert(table, rows: list[dict]) -> None:
    for batch in chunked(rows, 100):
        table.insert_many(batch).execute()


def _plan(rng: random.Random) -> dict:
    gpu = rng.choice(("0", "0", "1", "optional"))
    return {
        "task": rng.choice(TASKS),
        "framework": rng.choice(FRAMEWORKS),
        "gpu": gpu,
        "versions": rng.randint(1, 3),
    }


def _add_model_rows(count: int, rng: random.Random, now: datetime, prefix: str) -> dict[str, dict]:
    plans = {
        f"{prefix}{i:04d}-{rng.choice(('clf', 'net', 'tiny', 'base'))}": _plan(rng) for i in range(count)
    }
    rows = []
    for i, (name, p) in enumerate(plans.items()):
        summary = f"A {p['framework']} model for {p['task']}, number {i}"
        published = now - timedelta(minutes=rng.randint(0, 60 * 24 * 60))
        rows.append({"name": name, "task": p["task"], "summary": summary, "owner": "bench",
                     "tags": rng.sample(TAGS, rng.randint(0, 4)), "updated_at": published})  # fmt: skip
    _insert(ModelRow, rows)
    return plans


def _ids(names) -> dict[str, int]:
    return {
        m.name: m.id
        for m in ModelRow.select(ModelRow.id, ModelRow.name).where(ModelRow.name.in_(list(names)))
    }


def _add_versions(plans: dict[str, dict], now: datetime) -> dict[str, list[int]]:
    """Each model's versions (1.0.0, 1.1.0, ...); their ids by model name, oldest first."""
    ids, rows = _ids(plans), []
    for name, p in plans.items():
        for n in range(p["versions"]):
            number = f"1.{n}.0"
            manifest = _manifest(name, number, p["task"], p["framework"], p["gpu"])
            rows.append({"model": ids[name], "version": number, "digest": f"{ids[name]:032x}{n:032x}",
                         "size": 40_000, "manifest": manifest,
                         "card": "# A model\n", "examples": [{"inputs": {"x": [[1, 2, 3, 4]]}}],
                         "created_at": now - timedelta(days=30 - n), **SCHEMA})  # fmt: skip
    _insert(VersionRow, rows)
    versions: dict[str, list[int]] = {}
    by_id = {v: k for k, v in ids.items()}
    query = VersionRow.select(VersionRow.id, VersionRow.model).where(VersionRow.model.in_(list(ids.values())))
    for v in query.order_by(VersionRow.id):
        versions.setdefault(by_id[v.model_id], []).append(v.id)
    return versions


def _add_aliases_and_deployments(versions: dict[str, list[int]], rng: random.Random) -> None:
    ids = {
        m.name: m.id
        for m in ModelRow.select(ModelRow.id, ModelRow.name).where(ModelRow.name.in_(list(versions)))
    }
    aliases, deployments = [], []
    for name, vids in versions.items():
        aliases.append({"model": ids[name], "name": "latest", "version": vids[-1]})
        shown = vids[-1]
        if len(vids) > 1 and rng.random() < 0.4:
            shown = vids[-2]
            aliases.append({"model": ids[name], "name": "production", "version": shown})
        if rng.random() < 0.6:
            deployments.append({"version": shown, "status": rng.choice(STATES), "runner": "process"})
    _insert(AliasRow, aliases)
    _insert(DeploymentRow, deployments)


def _add_traffic(versions: dict[str, list[int]], rng: random.Random, now: datetime) -> None:
    """DAYS daily rollups for most versions (some idle), feedback on some days; alerts on a few."""
    today, rows = datetime(now.year, now.month, now.day), []
    for vids in versions.values():
        for vid in vids:
            if rng.random() < 0.2:
                continue
            rate = rng.randint(1, 5_000)
            for d in range(DAYS):
                requests, judged = rng.randint(0, rate), rng.randint(0, 20) if rng.random() < 0.5 else 0
                correct = sum(rng.random() < 0.85 for _ in range(judged))
                rows.append({"version_id": vid, "day": today - timedelta(days=d), "requests": requests,
                             "errors": requests // 50, "latency_sum_ms": requests * 12.0, "feedback": judged,
                             "correct": correct, "incorrect": judged - correct})  # fmt: skip
    _insert(RollupDay, rows)
    for name, vids in list(versions.items())[::25]:
        rule = AlertRule.create(model=name, condition="error_rate > 0.01", metric="error_rate", op=">",
                                threshold=0.01, window_seconds=600, created_at=now)  # fmt: skip
        AlertStatus.create(rule_id=rule.id, version_id=vids[-1], version="x", state=AlertState.FIRING,
                           since=now, checked_at=now)  # fmt: skip


def add_models(db, count: int, seed: int = 1, prefix: str = "bench-") -> None:
    """`count` models named PREFIX0000-... with their versions, aliases, deployments, rollups and
    alerts, written straight into the tables in one transaction."""
    rng, now = random.Random(seed), utcnow()
    with db.atomic():
        plans = _add_model_rows(count, rng, now, prefix)
        versions = _add_versions(plans, now)
        _add_aliases_and_deployments(versions, rng)
        _add_traffic(versions, rng, now)


@contextmanager
def counted_queries(db):
    """Counts the statements `db` runs inside the block on this thread (not the hub's background
    loops'): yields a list, one SQL string per query."""
    seen: list[str] = []
    execute = db.execute_sql
    thread = threading.get_ident()

    def counting(sql, params=None, *args, **kwargs):
        if threading.get_ident() == thread:
            seen.append(sql)
        return execute(sql, params, *args, **kwargs)

    db.execute_sql = counting
    try:
        yield seen
    finally:
        del db.execute_sql


def _median_ms(client, url: str) -> float:
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        reply = client.get(url)
        times.append(time.perf_counter() - started)
        assert reply.status_code == 200, reply.get_data(as_text=True)[:500]
    return statistics.median(times) * 1000


def run(count: int = MODELS, database_url: str | None = None) -> list[dict]:
    """The figures on a fresh SQLite file (or the empty database at `database_url`)."""
    from hub.config import Config
    from hub.hub import Hub
    from tests.hubserver import cache_env
    from web.app import create_app

    with tempfile.TemporaryDirectory(prefix="aidhub-bench-") as folder:
        home = Path(folder) / "home"
        env = {
            **cache_env(),
            "AIDHUB_RUNNER": "process",
            "AIDHUB_DATABASE_URL": database_url or f"sqlite:///{folder}/hub.db",
        }
        hub = Hub(Config.load(env=env, home=home), background=False)  # no watcher: nothing really runs
        hub._first_admin_token()  # what a first start does
        try:
            add_models(hub.db, count)
            if database_url and database_url.startswith("postgres"):
                hub.db.execute_sql("ANALYZE")  # what PostgreSQL's autovacuum does soon after a bulk insert
            client = create_app(hub=hub).test_client()
            token = (home / "admin-token").read_text().strip()
            client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
            rows = [{"name": f"catalog page {label}, {count:,} models", "value": _median_ms(client, url),
                     "unit": "ms", "target": "<= 150"} for label, url in VIEWS]  # fmt: skip
            with counted_queries(hub.db) as seen:
                client.get("/")
            rows.append({"name": "catalog page queries", "value": len(seen), "unit": "", "target": None})
            return rows
        finally:
            hub.close()
