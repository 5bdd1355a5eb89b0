"""The runner interface every backend implements, and the plain values it works on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

LogFn = Callable[[str], None]
TAIL_LINES = 40  # how much of a failed command's or server's log a RunnerError carries


class RunnerError(Exception):
    """A build or a start failed; `log_tail` holds the last lines of what it printed."""

    def __init__(self, message: str, log_tail: str = ""):
        super().__init__(message)
        self.log_tail = log_tail


@dataclass(frozen=True)
class ServeSpec:
    """Everything a runner needs to know about one model version. Plain values only."""

    name: str  # model name, e.g. "iris-classifier" or "owner/name"
    version: str  # semver from the manifest
    digest: str  # sha256 hex of the package archive
    package_dir: Path  # the extracted package (read-only for the runner)
    framework: str  # onnx | torch | sklearn | python
    artifact: str | None  # path inside package_dir
    entrypoint: str | None  # "predict.py:Model" for python (and optional torch)
    inputs: dict  # name -> {"dtype": "float32", "shape": [-1, 4]}
    outputs: dict  # name -> {"dtype": ..., "shape": [...]}
    requirements: tuple[str, ...] = ()
    python: str = "3.11"
    gpu: str = "0"  # "0" none, "1".."n" required, "optional"
    labels: tuple[str, ...] = ()
    env: dict = field(default_factory=dict)
    cpus: float = 1.0  # resources.cpu (the manifest's default when a spec is made by hand)
    memory_bytes: int = 1024**3  # resources.memory in bytes, e.g. 512Mi -> 536870912
    base_images: dict = field(default_factory=dict)  # the manifest's base_image: {"cpu": ref, "gpu": ref}
    # the manifest's batching: {"enabled": bool, "max_batch_size": n, "max_latency_ms": ms}; {} = off
    batching: dict = field(default_factory=dict)
    # path -> sha256 of each package file (the hub's file list: blob digests); {} when not known,
    # and the container runner hashes the weight files it needs a key for (runners/weights.py)
    files: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        return server_key(self.name, self.version)


def server_key(name: str, version: str) -> str:
    """A filesystem- and label-safe id of a version's server: '<name>--<version>'."""
    return f"{name.replace('/', '--')}--{version}"


@dataclass
class Instance:
    """A running (or starting) server for one version."""

    key: str
    url: str  # base URL, e.g. http://127.0.0.1:41234
    env_key: str
    pid: int | None = None
    port: int | None = None
    log_path: Path | None = None
    runner: str = ""
    container_id: str | None = None  # the engine's container id (container runner only)


class Runner(Protocol):
    kind: str

    def build(self, spec: ServeSpec, log: LogFn) -> str:
        """Make the environment for `spec` (idempotent, cached by environment key); return the key."""

    def start(self, spec: ServeSpec, log: LogFn) -> Instance:
        """Build if needed, start a server, wait until /readyz answers; raise RunnerError on failure."""

    def stop(self, instance: Instance) -> None:
        """Stop the server; stopping a stopped instance is a no-op."""

    def alive(self, instance: Instance) -> bool:
        """Whether the server process is still running."""

    def instances(self) -> list[Instance]:
        """The servers of this runner that exist now (running or not), to find orphans."""

    def close(self) -> None:
        """Let go of what the runner holds open (an engine connection); its servers keep running."""
