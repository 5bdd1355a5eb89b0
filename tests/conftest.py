import itertools
import tempfile
from pathlib import Path

import pytest
from playhouse.db_url import connect

from monitor import tables
from monitor.migrations import migrate
from tests.postgres import PostgresServer

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".cache"
_db_names = itertools.count()


@pytest.fixture(scope="session")
def postgres():
    root = Path(tempfile.mkdtemp(prefix="aidhub-pg-"))
    server = PostgresServer(root).start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """A fresh, empty database URL: a SQLite file, then a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/hub.db"
    server = request.getfixturevalue("postgres")
    return server.create_database(f"test_{next(_db_names)}_{tmp_path.name[-12:].lower()}")


@pytest.fixture
def db(database_url):
    """A migrated database with the monitor's tables bound to it."""
    pragmas = {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 5000}
    database = connect(database_url, **({"pragmas": pragmas} if "sqlite" in database_url else {}))
    tables.database.initialize(database)
    migrate(database)
    yield database
    database.close()
