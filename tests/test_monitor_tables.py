"""The monitor's tables on SQLite and PostgreSQL, and the monitor's place in the layers."""

import ast
from pathlib import Path

import pytest

from monitor.tables import LatencyBucket, Prediction, Rollup
from vocab.times import utc_naive

MONITOR = Path(__file__).resolve().parent.parent / "monitor"
FORBIDDEN = {"hub", "registry", "runners", "web", "cli"}


def test_rollup_keys_are_unique(db):
    unique = {tuple(i.columns) for i in db.get_indexes(Rollup._meta.table_name) if i.unique}
    assert ("version_id", "minute") in unique
    unique = {tuple(i.columns) for i in db.get_indexes(LatencyBucket._meta.table_name) if i.unique}
    assert ("version_id", "minute", "bucket") in unique
    indexed = {i.columns[0] for i in db.get_indexes(Prediction._meta.table_name)}
    assert "version_id" in indexed


def test_utc_naive():
    from datetime import UTC, datetime, timedelta, timezone

    assert utc_naive(0) == datetime(1970, 1, 1)
    assert utc_naive(datetime(2025, 1, 1, 14, tzinfo=timezone(timedelta(hours=2)))) == datetime(
        2025, 1, 1, 12
    )
    assert utc_naive(datetime(2025, 1, 1, 12, tzinfo=UTC)) == datetime(2025, 1, 1, 12)


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    return {name.split(".")[0] for name in names}


@pytest.mark.parametrize("path", sorted(MONITOR.glob("*.py")), ids=lambda p: p.name)
def test_monitor_imports_no_package_above_or_beside_it(path):
    assert not imported_packages(path) & FORBIDDEN
    assert "os.environ" not in path.read_text() and "getenv(" not in path.read_text()
