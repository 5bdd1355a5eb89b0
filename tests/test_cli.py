"""`aid` as a user meets it: real `aid` processes, a real hub on a free port, exact terminal text.

A bad setting, bad input or an unreachable hub ends in one line saying what to do (exit 2 for a bad
setting, usage or input; 1 when the hub is away or something failed), never a traceback. `aid serve`
logs to a file under its home and keeps the terminal for its own lines and warnings."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.hubserver import AID
from tests.packages import onnx_package
from tests.postgres import _free_port

UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens there


def hub_env(home: Path, **settings: str) -> dict:
    """This environment without its AIDHUB_* settings, then a home, the process runner and `settings`."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AIDHUB_")}
    return {**environ, "AIDHUB_HOME": str(home), "AIDHUB_RUNNER": "process", **settings}


def aid(*args: str, home: Path, timeout: float = 60, **settings: str) -> subprocess.CompletedProcess:
    env = hub_env(home, **settings)
    return subprocess.run([AID, *args], capture_output=True, text=True, timeout=timeout, env=env)


def start_lines(port: int, home: Path, verbose: bool = False) -> str:
    hint = "" if verbose else "  (aid serve -v shows it here)"
    return f"aidhub on http://127.0.0.1:{port}  (home {home})\nhub log  {home / 'logs' / 'hub.log'}{hint}\n"


BAD_SETTINGS = {
    "AIDHUB_RUNNER=bogus": "AIDHUB_RUNNER='bogus' is not a runner; use one of auto, process, container.",
    "AIDHUB_BUILD_WORKERS=x": "AIDHUB_BUILD_WORKERS='x' is not a valid setting; use a number >= 0 such as 2.",
    "AIDHUB_BASE_IMAGE=a b": "AIDHUB_BASE_IMAGE: The base image 'a b' cannot go into an image: "
    "use an image reference with a tag or digest, e.g. python:3.11-slim.",
    "AIDHUB_REVIEW_EVERY=soon": "AIDHUB_REVIEW_EVERY='soon' is not a duration; "
    "use seconds (30), minutes (1m) or 0 (never).",
}


@pytest.mark.parametrize("setting", BAD_SETTINGS)
@pytest.mark.parametrize(
    "command", [["serve", "--port", str(_free_port())], ["worker"]], ids=["serve", "worker"]
)
def test_bad_setting_is_one_line_and_exit_2(tmp_path, command, setting):
    name, _, value = setting.partition("=")
    done = aid(*command, home=tmp_path, **{name: value})
    assert (done.returncode, done.stdout, done.stderr) == (2, "", f"Error: {BAD_SETTINGS[setting]}\n")


def test_serve_with_an_unsupported_database_url_is_one_line_and_exit_2(tmp_path):
    """The database is opened in gunicorn's worker: its error still reaches the terminal as one line."""
    port = _free_port()
    done = aid("serve", "--port", str(port), home=tmp_path, AIDHUB_DATABASE_URL="mysql://x")
    assert done.returncode == 2
    assert done.stdout == start_lines(port, tmp_path)
    assert done.stderr == (
        "Error: AIDHUB_DATABASE_URL: Database URL 'mysql://x' is not supported: "
        "use sqlite:///PATH or postgresql://USER@HOST/DB.\n"
    )
    log = (tmp_path / "logs" / "hub.log").read_text()
    assert "INFO cli.serve: The hub did not start: AIDHUB_DATABASE_URL: Database URL 'mysql://x'" in log
    assert "Traceback" in log  # the file keeps what the terminal leaves out


def test_serve_failing_in_a_way_the_hub_does_not_name_is_one_line_pointing_at_the_log(tmp_path):
    (tmp_path / "queue.db").mkdir()  # the build queue's SQLite cannot open a folder
    port = _free_port()
    done = aid("serve", "--port", str(port), home=tmp_path)
    log_file = tmp_path / "logs" / "hub.log"
    assert (done.returncode, done.stdout) == (1, start_lines(port, tmp_path))
    assert done.stderr.splitlines()[-1] == (  # after the first admin token: the database opened
        "Error: The hub did not start: OperationalError: unable to open database file. "
        f"The traceback is in {log_file}."
    )
    assert "Traceback (most recent call last)" in log_file.read_text()


def test_worker_with_an_unsupported_database_url_is_one_line_and_exit_2(tmp_path):
    queue = "redis://127.0.0.1:9/0"
    done = aid("worker", home=tmp_path, AIDHUB_DATABASE_URL="mysql://x", AIDHUB_QUEUE_URL=queue)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        "Error: AIDHUB_DATABASE_URL: Database URL 'mysql://x' is not supported: "
        "use sqlite:///PATH or postgresql://USER@HOST/DB.\n"
    )


def test_serve_with_a_home_it_cannot_write_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "file").write_text("")
    home = tmp_path / "file" / "home"
    done = aid("serve", "--port", str(_free_port()), home=home)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        f"Error: Cannot write the hub's log in {home / 'logs'} (Not a directory); "
        "set AIDHUB_HOME or --home to a folder you can write.\n"
    )


def test_status_without_a_hub_says_how_to_start_one_and_exits_1(tmp_path):
    done = aid("--hub", UNREACHABLE, "status", home=tmp_path)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        f"Error: No hub answers at {UNREACHABLE} (NewConnectionError). Start one with 'aid serve' "
        "(or 'make run'), or point --hub / AIDHUB_URL at a running hub.\n"
    )


def test_publish_of_an_invalid_package_lists_its_problems_and_exits_2(tmp_path):
    package = onnx_package(tmp_path / "pkg", name="Bad Name")
    (package / "README.md").unlink()
    done = aid("--hub", UNREACHABLE, "publish", str(package), home=tmp_path)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        f"Error: {package} is not a valid package (2 problems):\n"
        "  - name: 'Bad Name' is not valid: use lower-case letters, digits and '-', e.g. iris-classifier\n"
        "  - README.md: missing: add a model card saying what the model does\n"
    )


@contextmanager
def serving(home: Path, *args: str) -> Iterator[int]:
    """`aid serve` on a free port with its stdout and stderr in files beside `home`; stopped (SIGTERM,
    as Ctrl-C in `make run`) when the block ends, so that the files then hold all it printed."""
    port = _free_port()
    with open(home.parent / "stdout", "w") as out, open(home.parent / "stderr", "w") as err:
        command = [AID, "serve", "--port", str(port), *args]
        proc = subprocess.Popen(command, stdout=out, stderr=err, env=hub_env(home))
    try:
        wait_until(lambda: answers(f"http://127.0.0.1:{port}/api/v1/health"), proc)
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def wait_until(condition, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"aid serve exited with {proc.returncode}"
        assert time.monotonic() < deadline, f"not within {timeout}s"
        time.sleep(0.1)


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def test_serve_logs_to_a_file_in_its_home_and_prints_only_its_start(tmp_path):
    home = tmp_path / "home"
    with serving(home) as port:
        pass
    log = (home / "logs" / "hub.log").read_text()
    assert f"INFO gunicorn.error: Listening at: http://127.0.0.1:{port}" in log
    assert "INFO gunicorn.error: Booting worker with pid:" in log
    assert "INFO gunicorn.error: Shutting down: Master" in log
    assert (tmp_path / "stdout").read_text() == start_lines(port, home)
    token = (home / "admin-token").read_text().strip()
    first = f"The first admin token (shown once; also in {home / 'admin-token'}): {token}\n"
    assert (tmp_path / "stderr").read_text() == first
    assert token not in log


def test_serve_verbose_shows_the_log_lines_live(tmp_path):
    home = tmp_path / "home"
    with serving(home, "-v") as port:
        pass
    shown = (tmp_path / "stderr").read_text()
    assert f"INFO gunicorn.error: Listening at: http://127.0.0.1:{port}" in shown
    assert "INFO gunicorn.error: Booting worker with pid:" in shown
    assert (tmp_path / "stdout").read_text() == start_lines(port, home, verbose=True)
    lines = [line for line in shown.splitlines() if not line.startswith("The first admin token")]
    assert lines == (home / "logs" / "hub.log").read_text().splitlines()


LOG_LINES = """
import logging, logging.config, sys
from pathlib import Path
from cli.logfile import logging_config
logging.config.dictConfig(logging_config(Path(sys.argv[1]), sys.argv[2], verbose=False))
for name in ("huey", "httpx", "gunicorn.error", "hub.deployments"):
    logging.getLogger(name).debug("%s debug", name)
    logging.getLogger(name).info("%s info", name)
    logging.getLogger(name).warning("%s warning", name)
try:
    1 / 0
except ZeroDivisionError:
    logging.getLogger("hub.watcher").exception("watch failed")
"""


RECORD = re.compile(r"^\S+ \S+ \[\d+\] (.+)$", re.MULTILINE)  # time [pid] LEVEL logger: message


@pytest.mark.parametrize("level", ["info", "warning"])
def test_library_loggers_go_to_the_file_and_only_warnings_to_the_terminal(tmp_path, level):
    """The configuration gunicorn is given: huey's, httpx's and gunicorn's lines reach the file at the
    level asked; the terminal gets warnings, and errors without their traceback."""
    path = tmp_path / "hub.log"
    done = subprocess.run([sys.executable, "-c", LOG_LINES, str(path), level], capture_output=True, text=True)
    names = ("huey", "httpx", "gunicorn.error", "hub.deployments")
    levels = ("INFO", "WARNING") if level == "info" else ("WARNING",)
    assert RECORD.findall(done.stderr) == [
        *(f"WARNING {n}: {n} warning" for n in names),
        "ERROR hub.watcher: watch failed (traceback in the log file)",
    ]
    written = path.read_text()
    assert RECORD.findall(written) == [
        *(f"{lv} {n}: {n} {lv.lower()}" for n in names for lv in levels),
        "ERROR hub.watcher: watch failed",
    ]
    assert "ZeroDivisionError: division by zero" in written
