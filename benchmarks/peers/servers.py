"""The peers the hub is measured against, each a process of its own on a free port: MLServer 1.7 with
custom runtimes (its own environment, scripts/bench-deps.sh) and the hand-written BentoML service."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from benchmarks.peers.models import Model
from tests.hubserver import CACHE, REPO
from tests.postgres import _free_port

HERE = Path(__file__).resolve().parent
MLSERVER = CACHE / "peers" / "mlserver" / "bin" / "mlserver"
BENTOML = Path(sys.executable).parent / "bentoml"


def install_deps() -> None:
    """wrk, matplotlib and MLServer's environment (scripts/bench-deps.sh; quick once installed)."""
    subprocess.run(["bash", str(REPO / "scripts" / "bench-deps.sh")], check=True)


class Server:
    """A child process in its own session (its workers are stopped with it), ready when `ready` is."""

    def __init__(self, command: list[str], url: str, ready: Callable[[str], bool], **popen) -> None:
        self.url, self.ready, self.log = url, ready, popen.pop("log")
        self.proc = subprocess.Popen(
            command, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True, **popen
        )

    def wait(self, timeout: float = 180) -> Server:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.proc.args[:3]} exited; see {self.log.name}")
            try:
                if self.ready(self.url):
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"{self.proc.args[:3]} not ready in {timeout} s; see {self.log.name}")

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.log.close()


def _status_ok(path: str) -> Callable[[str], bool]:
    return lambda url: httpx.get(f"{url}{path}", timeout=2).status_code == 200


def _model_repository(root: Path, models: list[Model]) -> None:
    """MLServer's settings.json, peers_runtime.py and one folder per model with model-settings.json."""
    shutil.copy(HERE / "mlserver_runtime.py", root / "peers_runtime.py")
    for model in models:
        folder = root / model.name
        folder.mkdir()
        (folder / model.artifact).symlink_to(model.folder / model.artifact)
        settings = {
            "name": model.name,
            "implementation": f"peers_runtime.{model.runtime}",
            "parameters": {"uri": f"./{model.artifact}"},
        }
        (folder / "model-settings.json").write_text(json.dumps(settings))


def mlserver(root: Path, models: list[Model]) -> Server:
    """`mlserver start` on a repository of every model, MLServer's defaults otherwise."""
    http, grpc, metrics = _free_port(), _free_port(), _free_port()
    _model_repository(root, models)
    settings = {"http_port": http, "grpc_port": grpc, "metrics_port": metrics, "host": "127.0.0.1"}
    (root / "settings.json").write_text(json.dumps(settings))
    env = {**os.environ, "PYTHONPATH": str(root)}
    log = open(root / "mlserver.log", "ab")
    ready = lambda url: all(_status_ok(f"/v2/models/{m.name}/ready")(url) for m in models)  # noqa: E731
    command = [str(MLSERVER), "start", str(root)]
    return Server(command, f"http://127.0.0.1:{http}", ready, cwd=root, env=env, log=log)


def by_hand(folder: Path, model: Model) -> Server:
    """`bentoml serve plain_service:CLASS` from the hub's venv (BentoML, onnxruntime and torch)."""
    port = _free_port()
    env = {
        **os.environ,
        "MODEL_PATH": str(model.folder / model.artifact),
        "BENTOML_HOME": str(folder / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
    }
    log = open(folder / f"bentoml-{model.name}.log", "ab")
    command = [str(BENTOML), "serve", f"plain_service:{model.plain}", "--port", str(port)]
    return Server(command, f"http://127.0.0.1:{port}", _status_ok("/readyz"), cwd=HERE, env=env, log=log)
