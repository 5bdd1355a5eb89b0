"""Shared fixtures: databases on every backend, a Hub on a temp home, the web app and its client,
the container engine. Project packages are imported inside the fixtures that need them."""

import itertools
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.browser import browser, hub_server, page, phone  # noqa: F401 - one of each per session
from tests.hubserver import cache_env
from tests.postgres import PostgresServer

BACKENDS = ["sqlite", "postgresql"]
_db_names = itertools.count()


@pytest.fixture(scope="session")
def postgres():
    root = Path(tempfile.mkdtemp(prefix="aidhub-pg-"))
    server = PostgresServer(root).start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)  # a few GB after a full run


def new_database(request, backend: str, folder: Path) -> str:
    """The URL of a fresh, empty database: a SQLite file in `folder`, or a new PostgreSQL database."""
    if backend == "sqlite":
        return f"sqlite:///{folder}/hub.db"
    server = request.getfixturevalue("postgres")
    return server.create_database(f"test_{next(_db_names)}_{folder.name[-12:].lower()}")


@pytest.fixture(params=BACKENDS)
def database_url(request, tmp_path):
    """A fresh, empty database URL for one test: a SQLite file, then a new PostgreSQL database."""
    return new_database(request, request.param, tmp_path)


@pytest.fixture(scope="module", params=BACKENDS)
def module_database_url(request, tmp_path_factory):
    """A fresh, empty database URL that the tests of one module share, on each backend in turn."""
    return new_database(request, request.param, tmp_path_factory.mktemp("db"))


@pytest.fixture
def db(database_url):
    """A migrated database, bound to the one proxy every table uses."""
    import monitor.migrations  # noqa: F401  (registers the monitor's steps)
    import registry.migrations  # noqa: F401  (registers the registry's steps)
    from database.connection import connect, database
    from database.migrations import migrate

    conn = connect(database_url)
    database.initialize(conn)
    migrate(conn)
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def open_hub():
    """open_hub(home, database_url, **config) -> a Hub with the process runner and the test caches;
    a factory, so that module-scoped fixtures open their own (and close it)."""
    from hub.config import Config
    from hub.hub import Hub

    def open_hub(home: Path, database_url: str, **config):
        env = {**cache_env(), "AIDHUB_RUNNER": "process", "AIDHUB_DATABASE_URL": database_url}
        return Hub(Config.load(env=env, home=home, **config))

    return open_hub


@pytest.fixture
def hub(open_hub, tmp_path, database_url):
    """A Hub on an empty home and database (SQLite, then PostgreSQL)."""
    hub = open_hub(tmp_path / "home", database_url)
    yield hub
    hub.close()


@pytest.fixture
def app(hub):
    """The web app over `hub`, as `aid serve` makes it (flaskr's conftest: app, client)."""
    from web.app import create_app

    return create_app(hub=hub)


@pytest.fixture
def client(app):
    """A test client signed in with the hub's first admin token."""
    return admin_client(app)


def admin_client(app):
    hub = app.extensions["hub"]
    token = (hub.config.home / "admin-token").read_text().strip()
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client


@pytest.fixture
def publish(hub, tmp_path):
    """publish(**manifest) -> the hub's reply to the demo package (tests/demo_package.py) with those
    aid.yaml fields."""
    from tests.demo_package import write_package
    from tests.packages import archive

    def publish(**manifest) -> dict:
        folder = tmp_path / f"pkg-{manifest.get('name', 'demo')}-{manifest.get('version', '1.0.0')}"
        return hub.publish(archive(write_package(folder, **manifest)))

    return publish


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
