import itertools
import tempfile
from pathlib import Path

import pytest
from playhouse.db_url import connect

from monitor import tables
from monitor.migrations import migrate
from tests.postgres import PostgresServer

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


DEFAULT_DOCKER_HOST = "unix:///run/aidhub/podman.sock"
BASE_IMAGE = "aidhub/base:py3.11"


@pytest.fixture(scope="session")
def docker_host() -> str:
    """The container engine the container runner tests use: $DOCKER_HOST, else Podman's socket
    from scripts/container-engine.sh."""
    import os

    return os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST


@pytest.fixture(scope="session")
def engine(docker_host):
    """A docker SDK client for `docker_host`, with the local base image; the test FAILS (not
    skips) when no engine answers: the container runner is part of what `make test` proves."""
    import docker

    try:
        client = docker.DockerClient(base_url=docker_host, timeout=120)
        client.ping()
    except Exception as e:
        pytest.fail(
            f"No container engine answers at DOCKER_HOST={docker_host} ({e}); start one with "
            "scripts/container-engine.sh (and scripts/base-image.sh for the base image).",
            pytrace=False,
        )
    try:
        client.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(
            f"Base image {BASE_IMAGE} is missing; build it with scripts/base-image.sh.", pytrace=False
        )
    yield client
    client.close()
