"""The pages in a real headless Chromium, served by a real HTTP server over the conftest `app`
(SQLite, then PostgreSQL): hub.js runs under the pages' Content-Security-Policy.

`dump_dom` reads a page after its scripts ran. `in_a_phone` loads one in Chromium emulating a phone
(375 CSS px wide: a headless window is never narrower than 500) and evaluates an expression there,
over the DevTools protocol on the pipe Chromium opens with --remote-debugging-pipe (fds 3 and 4)."""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from flask import request
from werkzeug.serving import make_server

from tests.demo_package import demo_build
from tests.page_reading import Elements, text_of
from tests.test_pages import log_traffic
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


def clear_of_3_and_4(fd: int) -> int:
    """`fd` moved above 4, so that wiring the pipe's ends onto 3 and 4 cannot overwrite one."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 5)
    os.close(fd)
    return moved


class DevTools:
    """Chromium's DevTools protocol over its pipe: JSON messages, each ended by a NUL byte."""

    def __init__(self, tmp_path: Path, timeout: float = 60):
        self.deadline, self.buffer, self.sent = time.monotonic() + timeout, b"", 0
        to_chromium, self.writer = os.pipe()
        self.reader, from_chromium = os.pipe()
        to_chromium, from_chromium = clear_of_3_and_4(to_chromium), clear_of_3_and_4(from_chromium)
        command = [
            chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--remote-debugging-pipe", f"--user-data-dir={tmp_path / 'chromium-devtools'}", "about:blank",
        ]  # fmt: skip
        wiring = [
            (os.POSIX_SPAWN_DUP2, to_chromium, 3), (os.POSIX_SPAWN_DUP2, from_chromium, 4),
            (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
            (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
        ]  # fmt: skip
        self.pid = os.posix_spawn(command[0], command, os.environ, file_actions=wiring)
        os.close(to_chromium)
        os.close(from_chromium)

    def send(self, method: str, session: str | None = None, **params) -> int:
        self.sent += 1
        message = {"id": self.sent, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self.writer, json.dumps(message).encode() + b"\0")
        return self.sent

    def wait_for(self, wanted) -> dict:
        """The first message from Chromium for which `wanted(message)` holds."""
        while True:
            while b"\0" in self.buffer:
                raw, self.buffer = self.buffer.split(b"\0", 1)
                if wanted(message := json.loads(raw)):
                    return message
            ready, _, _ = select.select([self.reader], [], [], max(0.0, self.deadline - time.monotonic()))
            assert ready, "Chromium did not answer over the DevTools pipe in time"
            self.buffer += os.read(self.reader, 1 << 16)

    def call(self, method: str, session: str | None = None, **params) -> dict:
        sent = self.send(method, session, **params)
        reply = self.wait_for(lambda m: m.get("id") == sent)
        assert "error" not in reply, reply
        return reply["result"]

    def close(self) -> None:
        for fd in (self.reader, self.writer):
            os.close(fd)
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)


def in_a_phone(tmp_path: Path, url: str, expression: str, width: int = 375):
    """The value of a JavaScript `expression` in `url` once loaded, on a phone `width` CSS px wide."""
    tools = DevTools(tmp_path)
    try:
        target = tools.call("Target.createTarget", url="about:blank")["targetId"]
        tab = tools.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        metrics = {"width": width, "height": 800, "deviceScaleFactor": 2, "mobile": True}
        tools.call("Emulation.setDeviceMetricsOverride", tab, **metrics)
        tools.call("Page.enable", tab)
        tools.send("Page.navigate", tab, url=url)
        tools.wait_for(lambda m: m.get("method") == "Page.loadEventFired")
        reply = tools.call("Runtime.evaluate", tab, expression=expression, returnByValue=True)
        return reply["result"]["value"]
    finally:
        tools.close()


def test_model_page_in_a_real_browser_shows_the_card_and_the_try_it_form(live_url, publish, tmp_path):
    publish()
    dom = dump_dom(tmp_path, f"{live_url}/models/demo-adder")
    elements = Elements(dom)
    assert elements.find("html", **{"data-js": "ready"}), "hub.js did not run (blocked or failed)"
    assert "Adds one to every value. Trained on nothing at all." in text_of(dom)
    assert elements.find("form", id="try-it") and elements.find("input", id="try-in-0-0", type="number")
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


PHONE_CHECK = """({
  page: document.documentElement.scrollWidth, viewport: document.documentElement.clientWidth,
  widest: Math.max(...[...document.querySelectorAll('#scorecard svg')].map(
    e => e.getBoundingClientRect().right)),
  charts: document.querySelectorAll('#scorecard .charts svg[role=img]').length,
  window: document.querySelector('.windows [aria-current]').textContent,
  ticks: [...document.querySelectorAll('#chart-traffic .x-tick')].map(e => e.textContent),
})"""


def test_scorecard_fits_a_phone_with_its_charts_drawn(hub, live_url, publish, tmp_path):
    publish()
    log_traffic(hub)
    seen = in_a_phone(tmp_path, f"{live_url}/models/demo-adder?window=7d", PHONE_CHECK)
    assert seen["viewport"] == 375 and seen["page"] <= 375, seen  # no sideways scrolling
    assert 0 < seen["widest"] <= 375 and seen["charts"] == 3, seen  # traffic, latency, accuracy (no drift)
    assert seen["window"] == "7d" and seen["ticks"] and all(" " in t for t in seen["ticks"]), seen
