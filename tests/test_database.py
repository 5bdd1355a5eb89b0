"""The one database set-up: connecting from a URL and the migration runner, on SQLite and PostgreSQL."""

import subprocess
import sys

import pytest

import monitor.alertmigrations  # noqa: F401 - registers the alerts' steps
import monitor.migrations  # noqa: F401 - registers the monitor's steps
import registry.migrations  # noqa: F401 - registers the registry's steps
from database.connection import DatabaseUrlInvalid, connect, database
from database.migrations import AppliedMigration, migrate
from registry.models import TABLES

EVERY_STEP = [
    "alerts:1",
    "alerts:2",  # alert actions (a canary's rollback)
    *[f"monitor:{n}" for n in range(1, 16)],  # 15: the review queue
    "registry:1",
    "registry:2",
    "registry:3",
    "registry:4",
    "registry:5",
    "registry:6",
    "registry:7",
    "registry:8",
    "registry:9",  # alias_changes
]  # components by name


@pytest.fixture
def fresh(database_url):
    """A connected, empty database bound to the proxy."""
    db = connect(database_url)
    database.initialize(db)
    yield db
    db.close()


def test_migrate_applies_every_registered_step_once(fresh):
    assert migrate(fresh) == EVERY_STEP
    assert migrate(fresh) == []
    with fresh.bind_ctx([AppliedMigration]):
        recorded = [f"{m.component}:{m.number}" for m in AppliedMigration.select()]
    assert sorted(recorded) == sorted(EVERY_STEP)
    assert {"models", "versions", "deployments", "builds", "monitor_prediction", "monitor_rollup"} <= set(
        fresh.get_tables()
    )


def test_a_database_made_by_an_older_hub_is_brought_up_to_date(fresh):
    """An older hub recorded its steps in registry_migrations; its tables lack later columns."""
    fresh.execute_sql("CREATE TABLE registry_migrations (id INTEGER PRIMARY KEY, name VARCHAR(200))")
    fresh.execute_sql("INSERT INTO registry_migrations VALUES (1, 'create tables')")
    fresh.create_tables(TABLES)
    fresh.execute_sql("ALTER TABLE deployments DROP COLUMN container_id")
    fresh.execute_sql("ALTER TABLE builds DROP COLUMN alias")
    assert migrate(fresh) == EVERY_STEP
    assert "container_id" in {c.name for c in fresh.get_columns("deployments")}
    assert {"alias", "retire"} <= {c.name for c in fresh.get_columns("builds")}


MIGRATE = """
import sys
import monitor.alertmigrations, monitor.migrations, registry.migrations
from database.connection import connect, database
from database.migrations import migrate
db = connect(sys.argv[1]); database.initialize(db)
print(",".join(migrate(db)))
"""


def test_hubs_starting_at_once_migrate_one_after_another(database_url):
    """Four processes migrate one new database at the same moment: every step runs exactly once."""
    procs = [
        subprocess.Popen([sys.executable, "-c", MIGRATE, database_url], stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0]
    assert sorted(outputs) == ["", "", "", ",".join(EVERY_STEP)]


def test_an_unknown_database_url_names_the_forms_that_work():
    with pytest.raises(DatabaseUrlInvalid) as caught:
        connect("mysql://root@db/hub")
    assert str(caught.value) == (
        "Database URL 'mysql://root@db/hub' is not supported: use sqlite:///PATH or postgresql://USER@HOST/DB."
    )
