"""The real-browser harness (issue 11): Debian's Chromium, headless, driven by Playwright's Python API
against a real hub (`aid serve`, tests/hubserver.py) with example models published and deployed.

Playwright runs the system browser (`executable_path`): its own browser download is never used, nor
`playwright install`. `make test` installs Chromium (scripts/system-deps.sh) and Playwright (the dev
extras); a missing Chromium fails the test with that hint, never skips it.

Test modules import the fixtures they use from here (`hub_server`, `browser`, `page`, `phone`) and the
helpers `shot` (a PNG under `OUTPUT`) and `axe_violations` (axe-core's serious and critical findings).
Screenshots land in $AIDHUB_TEST_OUTPUT, else `test-output/` at the repository's root (git-ignored).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.hubserver import REPO, HubProcess

OUTPUT = Path(os.environ.get("AIDHUB_TEST_OUTPUT") or REPO / "test-output")
DEPLOYED = ("iris-onnx", "wine-python")  # digits-torch is left out: a torch environment takes minutes
SERIOUS = ("serious", "critical")
DEPLOY_TIMEOUT = 900  # a cold environment cache builds each example's virtualenv first


def chromium() -> str:
    if not (path := shutil.which("chromium")):
        pytest.fail(
            "Chromium is not installed: 'make test' installs it (scripts/system-deps.sh, as root), "
            "or run 'apt-get install chromium'.",
            pytrace=False,
        )
    return path


def build_examples(names) -> None:
    """The examples' generated files (model, reference data), as `make examples` makes them."""
    done = subprocess.run(
        [sys.executable, str(REPO / "examples" / "build.py"), *names], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="session")
def hub_server(tmp_path_factory):
    """`aid serve` on 127.0.0.1 with DEPLOYED published and ready; undeployed and stopped at the end."""
    build_examples(DEPLOYED)
    server = HubProcess(tmp_path_factory.mktemp("browser-hub")).start()
    try:
        for name in DEPLOYED:
            done = server.aid("publish", str(REPO / "examples" / name), "--deploy", timeout=DEPLOY_TIMEOUT)
            assert done.returncode == 0, f"{name}: {done.stdout}{done.stderr}\n{server.output()}"
        yield server
    finally:
        server.undeploy_all()
        server.stop()


@pytest.fixture(scope="module")
def browser():
    """Chromium, headless, launched by Playwright from the system's binary; one per test module, since
    Playwright's sync API keeps an asyncio loop running on the main thread while it is open (tests
    after it that call asyncio.run() would fail)."""
    from playwright.sync_api import sync_playwright

    path = chromium()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=path, headless=True, args=["--no-sandbox"])
        yield launched
        launched.close()


def new_page(browser, hub_server, **context):
    opened = browser.new_context(base_url=hub_server.url, **context)
    opened.set_default_timeout(15_000)
    return opened, opened.new_page()


@pytest.fixture
def page(browser, hub_server):
    """A fresh tab (its own cookies) on the hub, 1280 × 900 CSS px."""
    context, tab = new_page(browser, hub_server, viewport={"width": 1280, "height": 900})
    yield tab
    context.close()


@pytest.fixture
def phone(browser, hub_server):
    """A fresh tab as on a phone: 375 CSS px wide, touch, device scale 2."""
    size = {"viewport": {"width": 375, "height": 812}, "device_scale_factor": 2}
    context, tab = new_page(browser, hub_server, **size, is_mobile=True, has_touch=True)
    yield tab
    context.close()


def shot(page, name: str) -> Path:
    """A full-page screenshot of `page` as OUTPUT/<name>.png; its path."""
    OUTPUT.mkdir(parents=True, exist_ok=True)
    path = OUTPUT / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 0
    return path


def axe_violations(page) -> list[dict]:
    """axe-core's serious and critical violations on `page` as loaded: rule, impact, help and the
    elements (selectors and HTML) that break it. axe-core ships with axe-playwright-python."""
    from axe_playwright_python.sync_playwright import Axe

    found = Axe().run(page).response["violations"]
    return [
        {
            "rule": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "nodes": [(n["target"], n["html"][:200]) for n in v["nodes"][:5]],
        }  # fmt: skip
        for v in found
        if v["impact"] in SERIOUS
    ]
