"""The process backend: a virtualenv per environment key and `bentoml serve` as a subprocess."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections import deque
from pathlib import Path

from vocab.sizes import format_size

from .base import TAIL_LINES, Instance, LogFn, RunnerError, ServeSpec
from .environment import (
    READY_MARKER,
    combined_requirements,
    ensure_environment,
    environment_key,
    fill_wheelhouse,
)
from .service import (
    SERVICE_CLASS,
    SERVICE_MODULE,
    SETUP_FAILED_FILE,
    device_for,
    write_service_dir,
)
from .startup import Launched, server_url, wait_until_ready

log = logging.getLogger(__name__)

STOP_GRACE_S = 10.0
# A free port is found by binding port 0 and letting go; until the server binds it, seconds later,
# anything may take it (an outgoing connection's local port is drawn from the same range).
PORT_TRIES = 3
PORT_TAKEN = "Address already in use"
# The only variables of the hub's own environment a model server inherits: the hub's settings
# (AIDHUB_*, the database URL), tokens, proxies with credentials and the like stay behind. What
# the server is meant to know comes in the spec's `env` (the hub's report token, the payload cap).
KEPT_ENV = (
    "PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "TERM", "USER", "LOGNAME",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES",
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
)  # fmt: skip
NO_ISOLATION_NOTE = (
    "NOTE: the process runner does not isolate the model from this host: its code runs as the "
    "hub's user, can read what that user reads and reach the network. It gets a scrubbed "
    "environment (no AIDHUB_* settings, database URL or tokens; only its own report token) and "
    "its own HOME. Use the container runner to confine models you do not trust."
)


class ProcessRunner:
    """Runs each version as `ENV/bin/bentoml serve` on `host`, one process group per version."""

    kind = "process"

    def __init__(
        self,
        envs_dir: Path,
        wheelhouse: Path,
        deployments_dir: Path,
        uv_cache: Path | None = None,
        host: str = "127.0.0.1",
        ready_timeout: float = 120.0,
        workers: int | None = None,  # None: sized to each version's CPU limit (service.serving_plan)
        threads: int = 4,
    ):
        self.envs_dir = Path(envs_dir)
        self.wheelhouse = Path(wheelhouse)
        self.deployments_dir = Path(deployments_dir)
        self.uv_cache = Path(uv_cache) if uv_cache is not None else None
        self.host = host
        self.ready_timeout = ready_timeout
        self.workers = workers
        self.threads = threads
        self._children: dict[int, subprocess.Popen] = {}

    def requirements(self, spec: ServeSpec) -> list[str]:
        return combined_requirements(spec.framework, spec.requirements, _wants_gpu(spec))

    def env_key(self, spec: ServeSpec) -> str:
        return environment_key(spec.python, spec.framework, self.requirements(spec), spec.gpu)

    def build(self, spec: ServeSpec, log: LogFn) -> str:
        """Fill the wheelhouse with wheels only (unless done) and create the environment; return
        its key. A requirement without a wheel is refused (environment.NoWheel): this runner
        builds no source package, on the host or anywhere."""
        log(NO_ISOLATION_NOTE)
        return self._build(spec, log)

    def _build(self, spec: ServeSpec, log: LogFn) -> str:
        key, reqs = self.env_key(spec), self.requirements(spec)
        if not (self.envs_dir / key / READY_MARKER).exists():
            fill_wheelhouse(self.wheelhouse, reqs, log, spec.python)
        ensure_environment(self.envs_dir, key, self.wheelhouse, reqs, spec.python, log, self.uv_cache)
        return key

    def start(self, spec: ServeSpec, log: LogFn) -> Instance:
        """Build if needed, write the service, launch it, wait for /readyz; RunnerError if not."""
        env_key = self._build(spec, log)
        service_dir = self._write_service(spec)
        log(f"NOTE: the process runner does not enforce resources (cpu {spec.cpus:g}, memory "
            f"{format_size(spec.memory_bytes)}): use the container runner to limit a version.")  # fmt: skip
        for attempt in range(1, PORT_TRIES + 1):
            instance = self._launch(spec, env_key, service_dir, _free_port(self.host))
            log(f"Started {spec.name} {spec.version} as pid {instance.pid} on {instance.url}")
            try:
                wait_until_ready(spec, self._launched(instance), self.ready_timeout, log)
                return instance
            except RunnerError as e:
                if attempt == PORT_TRIES or PORT_TAKEN not in e.log_tail:
                    raise
                log(f"port {instance.port} was taken before the server bound it; trying another")

    def stop(self, instance: Instance) -> None:
        """SIGTERM the server, SIGKILL what is left after STOP_GRACE_S; a no-op when gone.

        Works from the Instance alone (pid, log path), e.g. after a hub restart: BentoML's
        workers run in their own sessions, so they are found by their working directory.
        """
        service_dir = self._service_dir(instance)
        if self.alive(instance):
            _signal_group(instance.pid, signal.SIGTERM)
        else:
            for pid in _pids_in(service_dir):
                _signal_group(pid, signal.SIGTERM)
        if not self._wait_gone(instance, service_dir, STOP_GRACE_S):
            log.warning("%s ignored SIGTERM for %.0f s; killing it", instance.key, STOP_GRACE_S)
            for pid in {*_pids_in(service_dir), *self._own_pid(instance)}:
                _signal_group(pid, signal.SIGKILL)
            self._wait_gone(instance, service_dir, STOP_GRACE_S)
        self._children.pop(instance.pid, None)

    def alive(self, instance: Instance) -> bool:
        """Whether the server's main process (`bentoml serve`) still runs."""
        pid = instance.pid
        if pid is None:
            return False
        proc = self._children.get(pid)
        if proc is not None:
            return proc.poll() is None
        return _process_running(pid) and b"bentoml" in _cmdline(pid)

    def instances(self) -> list[Instance]:
        """The servers running from this runner's deployments folder, whoever started them."""
        found = []
        for folder in sorted(self.deployments_dir.iterdir()) if self.deployments_dir.is_dir() else []:
            pids = _pids_in(folder / "service")
            main = [pid for pid in pids if _parent(pid) not in pids]
            if main:
                log_path = folder / "server.log"
                found.append(Instance(folder.name, "", "", main[0], None, log_path, self.kind))
        return found

    def close(self) -> None:
        """Nothing to let go of: the servers are plain processes."""

    def deployment_dir(self, spec_key: str) -> Path:
        return self.deployments_dir / spec_key

    def _write_service(self, spec: ServeSpec) -> Path:
        service_dir = self.deployment_dir(spec.key) / "service"
        running = _pids_in(service_dir)
        if running:
            raise RunnerError(
                f"Model {spec.name!r} version {spec.version!r} already runs here (pids "
                f"{running}); stop that instance before starting it again."
            )
        if service_dir.exists():
            shutil.rmtree(service_dir)
        return write_service_dir(spec, service_dir, workers=self.workers, threads=self.threads)

    def _launch(self, spec: ServeSpec, env_key: str, service_dir: Path, port: int) -> Instance:
        deployment = self.deployment_dir(spec.key)
        log_path = deployment / "server.log"
        bentoml = self.envs_dir / env_key / "bin" / "bentoml"
        command = [str(bentoml), "serve", f"{SERVICE_MODULE}:{SERVICE_CLASS}"]
        command += ["--host", self.host, "--port", str(port)]
        with open(log_path, "wb") as out:
            proc = subprocess.Popen(
                command,
                cwd=service_dir,
                env=self._child_env(spec, deployment),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._children[proc.pid] = proc
        url = server_url(self.host, port)
        return Instance(spec.key, url, env_key, proc.pid, port, log_path, self.kind)

    def _child_env(self, spec: ServeSpec, deployment: Path) -> dict[str, str]:
        """The server's environment: KEPT_ENV of ours, the spec's `env`, its own HOME and BentoML home."""
        env = {k: v for k, v in os.environ.items() if k in KEPT_ENV}
        env.update({str(k): str(v) for k, v in spec.env.items()})
        (deployment / "home").mkdir(parents=True, exist_ok=True)
        env["HOME"] = str(deployment / "home")
        env["BENTOML_HOME"] = str(deployment / "bentoml")
        env["BENTOML_DO_NOT_TRACK"] = "true"
        if device_for(spec.gpu) == "cpu":
            env["CUDA_VISIBLE_DEVICES"] = ""
        return env

    def _launched(self, instance: Instance) -> Launched:
        setup_failed = self._service_dir(instance) / SETUP_FAILED_FILE
        return Launched(
            url=instance.url,
            log_name=f"the server log ({instance.log_path})",
            setup_failed=setup_failed.exists,
            exited=lambda: not self.alive(instance),
            stop=lambda: self.stop(instance),
            stop_and_tail=lambda: self._stop_and_tail(instance),
        )

    def _stop_and_tail(self, instance: Instance) -> str:
        """Stop the server, then read its log (with what it printed while it stopped) and the
        traceback the flavors wrote when loading the model raised."""
        self.stop(instance)
        setup_error = log_tail(self._service_dir(instance) / SETUP_FAILED_FILE)
        return "\n".join(t for t in (log_tail(instance.log_path), setup_error) if t)

    def _service_dir(self, instance: Instance) -> Path:
        if instance.log_path is not None:
            return Path(instance.log_path).parent / "service"
        return self.deployment_dir(instance.key) / "service"

    def _own_pid(self, instance: Instance) -> list[int]:
        return [instance.pid] if self.alive(instance) else []

    def _wait_gone(self, instance: Instance, service_dir: Path, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive(instance) and not _pids_in(service_dir):
                return True
            time.sleep(0.05)
        return False


def _wants_gpu(spec: ServeSpec) -> bool:
    return device_for(spec.gpu) == "cuda"


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _pids_in(service_dir: Path) -> list[int]:
    """Live BentoML processes whose working directory is `service_dir`."""
    target = os.path.realpath(service_dir)
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _cwd(int(entry)) == target and _process_running(int(entry)):
            if b"bentoml" in _cmdline(int(entry)):
                pids.append(int(entry))
    return pids


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _cwd(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return ""


def _process_running(pid: int) -> bool:
    """True for a live, non-zombie process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def log_tail(path: Path | None, lines: int = TAIL_LINES) -> str:
    """The last `lines` lines of a log file ('' when it does not exist)."""
    if path is None or not Path(path).exists():
        return ""
    with open(path, encoding="utf-8", errors="replace") as handle:
        return "\n".join(line.rstrip("\n") for line in deque(handle, maxlen=lines))
