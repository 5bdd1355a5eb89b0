"""The pages in a real headless Chromium, served by a real HTTP server over the conftest `app`
(SQLite, then PostgreSQL): hub.js runs under the pages' Content-Security-Policy."""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from flask import request
from werkzeug.serving import make_server

from tests.demo_package import demo_build
from tests.page_reading import Elements, text_of
from vocab.states import BuildStatus


def chromium() -> str:
    if not (path := shutil.which("chromium")):
        pytest.fail("Chromium is not installed: run 'make test' as root, or 'apt-get install chromium'.")
    return path


@pytest.fixture
def live_url(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def run_chromium(tmp_path: Path, *args: str) -> str:
    command = [
        chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium-profile'}", *args,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def dump_dom(tmp_path: Path, url: str) -> str:
    """The page's DOM after its scripts ran for 3 s of (virtual) time."""
    return run_chromium(tmp_path, "--virtual-time-budget=3000", "--dump-dom", url)


def test_model_page_in_a_real_browser_shows_the_card_and_the_try_it_form(live_url, publish, tmp_path):
    publish()
    dom = dump_dom(tmp_path, f"{live_url}/models/demo-adder")
    elements = Elements(dom)
    assert elements.find("html", **{"data-js": "ready"}), "hub.js did not run (blocked or failed)"
    assert "Adds one to every value. Trained on nothing at all." in text_of(dom)
    assert elements.find("form", id="try-it") and elements.find("textarea", name="x")
    assert elements.find("link", rel="stylesheet", href="/static/hub.css")
    assert [a.get("src") for a in elements.find("script")] == ["/static/hub.js"]


def test_build_page_in_a_real_browser_follows_the_build_until_it_ends(app, hub, live_url, publish, tmp_path):
    publish()
    build_id = demo_build(BuildStatus.QUEUED, "waiting for a worker\n")

    @app.after_request
    def cancel_once_the_page_is_served(response):
        if request.path == f"/builds/{build_id}":
            hub.cancel_build(build_id)  # the page says queued; the API says cancelled from now on
        return response

    dom = dump_dom(tmp_path, f"{live_url}/builds/{build_id}")
    elements = Elements(dom)
    assert elements.find("html", **{"data-js": "ready"}), "hub.js did not run (blocked or failed)"
    text = text_of(dom)
    assert f"demo-adder@1.0.0 Build {build_id} cancelled" in text
    assert "The build ended." in text and "Cancel build" not in text
