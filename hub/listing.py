"""The catalog listing: one page of model cards with the facets and the total, in a fixed number of
queries whatever the number of models (one for the models, one per metric, one for the alerts).

The models matching the search words come from one query joining each model's `latest` and
`production` aliases, the version calls go to (production, else latest: `present.shown_version`), its
framework and GPU need (read from the stored manifest by the database) and its deployment. The other
filters, the facet counts and the sort run here, on those rows. Popularity is the predictions of the
last 30 days (daily rollups, every version of the model); accuracy the Wilson 95% lower bound of the
feedback of the version calls go to (its daily rollups, all time).
"""

from __future__ import annotations

import math
import operator
from collections import Counter
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime, timedelta
from functools import reduce

from peewee import JOIN, OP, SQL, Cast, Expression, FieldAlias, NodeList, PostgresqlDatabase, Value, fn

from database.connection import database
from monitor.alerttables import AlertRule, AlertStatus
from monitor.scorecard import wilson_interval
from monitor.tables import RollupDay
from registry.models import AliasRow, DeploymentRow, ModelRow, VersionRow
from vocab.alerts import AlertState
from vocab.states import DeploymentStatus
from vocab.times import isoformat, utcnow

PER_PAGE = 24
MAX_PER_PAGE = 100
POPULAR_DAYS = 30
SORTS = ("popular", "accuracy", "recent", "name")  # the first is the default
STATES = tuple(s.value for s in DeploymentStatus)
DEPLOYMENT = ("url", "runner", "env_key", "error", "restarts", "updated_at")  # as present.deployment
GPU_NEEDS = {"none": "CPU only", "optional": "GPU optional", "required": "needs a GPU"}
FILTERS = ("task", "framework", "tag", "gpu", "state")


@dataclass(frozen=True)
class CatalogQuery:
    """What a reader asked for; empty strings filter nothing."""

    q: str = ""
    task: str = ""
    framework: str = ""
    tag: str = ""
    gpu: str = ""
    state: str = ""
    sort: str = SORTS[0]
    page: int = 1
    per_page: int = PER_PAGE  # 0: every model on one page (the API without paging)

    def params(self, **changes) -> dict:
        """The query's non-default values (with `changes`), in a fixed order: a stable URL's."""
        asked, default = asdict(replace(self, **changes)), asdict(CatalogQuery())
        return {k: v for k, v in asked.items() if v != default[k]}


def parse_query(args) -> tuple[CatalogQuery, list[str]]:
    """A CatalogQuery from request arguments (strings), and what was wrong: a bad sort, page, GPU
    need or state is replaced by its default and named, with the values it may take."""
    raw = {f.name: (args.get(f.name) or "").strip() for f in fields(CatalogQuery)}
    problems: list[str] = []
    choices = {"sort": SORTS, "gpu": tuple(GPU_NEEDS), "state": STATES}
    for key, valid in choices.items():
        if raw[key] and raw[key] not in valid:
            problems.append(f"Unknown {key} {raw[key]!r}: use one of {', '.join(valid)}.")
            raw[key] = ""
    raw["sort"] = raw["sort"] or SORTS[0]
    for key, default, top in (("page", 1, None), ("per_page", PER_PAGE, MAX_PER_PAGE)):
        value, name = raw[key], key.replace("_", " ")
        fits = value.isdigit() and 1 <= int(value) <= (top or math.inf)
        if value and not fits:
            whole = f"a whole number from 1 to {top}" if top else "a whole number from 1"
            problems.append(f"Unknown {name} {value!r}: use {whole}.")
        raw[key] = int(value) if fits else default
    return CatalogQuery(**raw), problems


class ListingUseCases:
    """Mixed into the Hub."""

    def catalog_page(self, query: CatalogQuery, now: datetime | None = None) -> dict:
        """One page of model cards for `query`, with the total, the facets and what was wrong (a page
        past the last one shows the last)."""
        rows = _rows(query.q)
        matching, facets = _filter(rows, query)
        metric = _popularity if query.sort != "accuracy" else _accuracy
        metric(matching, now or utcnow())
        matching.sort(key=SORT_KEYS[query.sort])
        size = query.per_page or max(1, len(matching))
        pages = max(1, math.ceil(len(matching) / size))
        problems = [] if query.page <= pages else [f"Page {query.page} is past the last page, {pages}."]
        page = min(query.page, pages)
        shown = matching[(page - 1) * size : page * size]
        (_accuracy if metric is _popularity else _popularity)(shown, now or utcnow())
        _alerts(shown)
        return {
            "models": [_card(row) for row in shown], "total": len(matching), "page": page, "pages": pages,
            "per_page": query.per_page, "sort": query.sort, "facets": facets, "problems": problems,
        }  # fmt: skip

    def models(self, q: str = "", task: str = "", tag: str = "") -> list[dict]:
        """Every model's card matching `q`, `task` and `tag`, by name."""
        query = CatalogQuery(q=q, task=task, tag=tag, sort="name", per_page=0)
        return self.catalog_page(query)["models"]


# --- the query ------------------------------------------------------------------------------------


def _json_text(column, *path: str):
    """The text at `path` in a JSON text column, extracted by the database."""
    if isinstance(database.obj, PostgresqlDatabase):
        parts: list = [Cast(column, "json")]
        for i, key in enumerate(path):
            parts += [SQL("->>" if i == len(path) - 1 else "->"), Value(key)]
        return NodeList(parts)
    return fn.json_extract(column, "$." + ".".join(path)).coerce(False)  # text, not the column's JSON


def _rows(q: str) -> list[dict]:
    """Every model whose name, summary, task or tags contain `q`, with what its card and the filters
    need: one query."""
    latest, production = AliasRow.alias("latest_alias"), AliasRow.alias("production_alias")
    latest_version, shown = VersionRow.alias("latest_version"), VersionRow.alias("shown_version")
    latest_model, production_model = (FieldAlias.create(a, AliasRow.model) for a in (latest, production))
    columns = (
        ModelRow.id, ModelRow.name, ModelRow.task, ModelRow.summary, ModelRow.tags, ModelRow.owner,
        ModelRow.updated_at, *(getattr(DeploymentRow, c).alias(f"deployment_{c}") for c in DEPLOYMENT),
        latest_version.version.alias("latest"), production.version.alias("production_id"),
        shown.id.alias("shown_id"), shown.version.alias("shown"), DeploymentRow.status.alias("state"),
        _json_text(shown.manifest, "framework").alias("framework"),
        _json_text(shown.manifest, "resources", "gpu").alias("gpu"),
    )  # fmt: skip
    query = (
        ModelRow.select(*columns)
        .join(latest, JOIN.LEFT_OUTER, on=(latest_model == ModelRow.id) & (latest.name == "latest"))
        .join_from(ModelRow, production, JOIN.LEFT_OUTER,
                   on=(production_model == ModelRow.id) & (production.name == "production"))
        .join_from(latest, latest_version, JOIN.LEFT_OUTER, on=latest_version.id == latest.version)
        .join_from(ModelRow, shown, JOIN.LEFT_OUTER,
                   on=shown.id == fn.COALESCE(production.version, latest.version))
        .join_from(shown, DeploymentRow, JOIN.LEFT_OUTER, on=DeploymentRow.version == shown.id)
    )  # fmt: skip
    if q:
        columns = (ModelRow.name, ModelRow.summary, ModelRow.task, ModelRow.tags)  # tags: the JSON text
        query = query.where(reduce(operator.or_, (_contains(column, q) for column in columns)))
    return [_row(r) for r in query.dicts()]


def _contains(column, text: str):
    """`column` contains `text`, whatever the case; % and _ in it match only themselves."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    pattern = NodeList((Value(f"%{escaped}%", converter=str), SQL("ESCAPE"), Value("\\", converter=str)))
    return Expression(column, OP.ILIKE, pattern)


def _row(r: dict) -> dict:
    gpu = str(r["gpu"] or "0").strip().lower()
    return {
        **r, "state": r["state"] or DeploymentStatus.NOT_DEPLOYED.value, "framework": r["framework"] or "",
        "gpu": "none" if gpu == "0" else "optional" if gpu == "optional" else "required",
        "tags": r["tags"] or [], "requests_30d": 0, "correct": 0, "incorrect": 0, "alerts_firing": 0,
    }  # fmt: skip


# --- filters and facets ---------------------------------------------------------------------------


def _filter(rows: list[dict], query: CatalogQuery) -> tuple[list[dict], dict]:
    """The rows every filter keeps, and per facet the values with their counts over the rows every
    other filter keeps (so that picking a task still shows how many models the other tasks have)."""
    tests = {
        "task": lambda r: r["task"] == query.task, "framework": lambda r: r["framework"] == query.framework,
        "tag": lambda r: query.tag in r["tags"], "gpu": lambda r: r["gpu"] == query.gpu,
        "state": lambda r: r["state"] == query.state,
    }  # fmt: skip
    active = {k: test for k, test in tests.items() if getattr(query, k)}
    counts: dict[str, Counter] = {k: Counter() for k in FILTERS}
    matching = []
    for row in rows:
        failed = [k for k, test in active.items() if not test(row)]
        if not failed:
            matching.append(row)
        for key in FILTERS if not failed else failed if len(failed) == 1 else ():
            counts[key].update(row["tags"] if key == "tag" else [row[key]])
    return matching, {k: _facet(counts[k], getattr(query, k), k) for k in FILTERS}


def _facet(counts: Counter, chosen: str, key: str) -> list[dict]:
    """[{value, count, chosen}], the most common first (tags) or by value; the chosen one always."""
    if chosen and chosen not in counts:
        counts[chosen] = 0
    counts.pop("", None)
    order = counts.most_common() if key == "tag" else sorted(counts.items())
    return [{"value": v, "count": n, "chosen": v == chosen} for v, n in order]


# --- metrics: a query each, for many models at once -----------------------------------------------


def _popularity(rows: list[dict], now: datetime) -> None:
    """Each row's predictions over the last POPULAR_DAYS days (today included), every version."""
    if not rows:
        return
    since = datetime(now.year, now.month, now.day) - timedelta(days=POPULAR_DAYS - 1)
    query = (
        RollupDay.select(VersionRow.model, fn.SUM(RollupDay.requests))
        .join(VersionRow, on=VersionRow.id == RollupDay.version_id)
        .where(RollupDay.day >= since)
        .group_by(VersionRow.model)
    )
    totals = dict(query.tuples())
    for row in rows:
        row["requests_30d"] = int(totals.get(row["id"]) or 0)


def _accuracy(rows: list[dict], now: datetime) -> None:
    """Each row's feedback verdicts on the version calls go to, all time."""
    ids = [r["shown_id"] for r in rows if r["shown_id"] is not None]
    if not ids:
        return
    wanted = ids if len(ids) <= MAX_PER_PAGE else _shown_versions()  # a page's, else every model's
    query = (
        RollupDay.select(RollupDay.version_id, fn.SUM(RollupDay.correct), fn.SUM(RollupDay.incorrect))
        .where(RollupDay.version_id.in_(wanted))
        .group_by(RollupDay.version_id)
    )
    verdicts = {vid: (int(c or 0), int(i or 0)) for vid, c, i in query.tuples()}
    for row in rows:
        row["correct"], row["incorrect"] = verdicts.get(row["shown_id"], (0, 0))


def _shown_versions():
    """A subquery: the id of the version calls go to, of every model (production, else latest)."""
    latest, production = AliasRow.alias("latest_alias"), AliasRow.alias("production_alias")
    same_model = FieldAlias.create(production, AliasRow.model) == FieldAlias.create(latest, AliasRow.model)
    return (
        latest.select(fn.COALESCE(production.version, latest.version))
        .join(production, JOIN.LEFT_OUTER, on=same_model & (production.name == "production"))
        .where(latest.name == "latest")
    )


def _alerts(rows: list[dict]) -> None:
    """How many alert rules fire for each row's model (a rule firing for two versions counts twice)."""
    if not rows:
        return
    query = (
        AlertStatus.select(AlertRule.model, fn.COUNT(AlertStatus.id))
        .join(AlertRule, on=AlertStatus.rule_id == AlertRule.id)
        .where(AlertStatus.state == AlertState.FIRING)
        .group_by(AlertRule.model)
    )
    if len(rows) <= MAX_PER_PAGE:  # a page's models; else every model's (the API without paging)
        query = query.where(AlertRule.model.in_([r["name"] for r in rows]))
    firing = dict(query.tuples())
    for row in rows:
        row["alerts_firing"] = int(firing.get(row["name"]) or 0)


# --- order and cards ------------------------------------------------------------------------------


def _accuracy_low(row: dict) -> float | None:
    bounds = wilson_interval(row["correct"], row["correct"] + row["incorrect"])
    return None if bounds is None else bounds[0]


SORT_KEYS = {
    "popular": lambda r: (-r["requests_30d"], r["name"]),
    "accuracy": lambda r: (_accuracy_low(r) is None, -(_accuracy_low(r) or 0.0), r["name"]),
    "recent": lambda r: (-_timestamp(r["updated_at"]), r["name"]),
    "name": lambda r: r["name"],
}


def _timestamp(value) -> float:
    return value.timestamp() if isinstance(value, datetime) else 0.0


def _card(row: dict) -> dict:
    """A model's catalog card: a plain dict for the page and the API."""
    judged = row["correct"] + row["incorrect"]
    low = _accuracy_low(row)
    return {
        "name": row["name"], "task": row["task"], "summary": row["summary"], "tags": row["tags"],
        "owner": row["owner"] or None, "latest": row["latest"], "shown": row["shown"],
        "production": row["shown"] if row["production_id"] else None,
        "framework": row["framework"] or None, "gpu": row["gpu"], "deployment": _deployment(row),
        "updated_at": isoformat(row["updated_at"]),
        "requests_30d": row["requests_30d"],
        "accuracy": round(row["correct"] / judged, 4) if judged else None,
        "accuracy_low": None if low is None else round(low, 4), "feedback": judged,
        "alerts_firing": row["alerts_firing"],
    }  # fmt: skip


def _deployment(row: dict) -> dict:
    """The deployment of the version calls go to, as `present.deployment` writes it."""
    if row["deployment_updated_at"] is None:
        return {"status": row["state"]}
    values = {c: row[f"deployment_{c}"] for c in DEPLOYMENT}
    return {
        "status": row["state"], "url": values["url"] or None, "runner": values["runner"],
        "env_key": values["env_key"] or None, "error": values["error"] or None,
        "restarts": values["restarts"], "updated_at": isoformat(values["updated_at"]),
    }  # fmt: skip
