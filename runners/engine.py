"""One container engine behind the Docker Engine API: the connection, what it can run (Podman or
Docker, a GPU runtime), building an image from a context, and the garbage Podman's builds leave.

The same code drives Docker Engine and Podman's Docker-compatible service (docs/podman-notes.md;
the quirk numbers below refer to that file).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from .base import TAIL_LINES, LogFn, RunnerError, ServeSpec
from .locks import LockBusy, file_lock

log = logging.getLogger(__name__)

GARBAGE_AGE_S = 600  # leaked build containers younger than this may belong to a build in flight
CDI_DIRS = (Path("/etc/cdi"), Path("/var/run/cdi"))
# Writes the build context's tar archive (the docker SDK's own function) in a child process.
_PACK_CONTEXT = (
    "import sys; from docker.utils.build import tar; "
    "tar(sys.argv[1], fileobj=open(sys.argv[2], 'wb')).close()"
)


class EngineAway(RunnerError):
    """No container engine answers at `docker_host`: not started, stopped, or gone mid-call."""

    def __init__(self, docker_host: str, reason: str):
        super().__init__(
            f"No container engine answers at DOCKER_HOST={docker_host} ({reason}). Start it "
            "(scripts/container-engine.sh starts Podman's service), or run the hub with the process "
            "runner (AIDHUB_RUNNER=process)."
        )
        self.docker_host = docker_host


def through_engine(method: Callable) -> Callable:
    """A method of an object with an `engine` whose engine calls run inside `engine.answering()`."""

    @functools.wraps(method)
    def call(self, *args, **kwargs):
        with self.engine.answering():
            return method(self, *args, **kwargs)

    return call


class Engine:
    """The engine at `docker_host`, connected on first use and again after it went away."""

    def __init__(self, docker_host: str):
        self.docker_host = docker_host
        self._client = None
        self._podman: bool | None = None

    @property
    def client(self):
        """A docker SDK client for `docker_host`; EngineAway when no engine answers there."""
        if self._client is None:
            import docker

            with self.answering():
                client = docker.DockerClient(base_url=self.docker_host, timeout=120)
                client.ping()
            self._client = client
        return self._client

    @contextlib.contextmanager
    def answering(self) -> Iterator[None]:
        """Run engine calls: a failure to reach the engine (refused, gone, cut off, timed out)
        becomes EngineAway, and the client is dropped, so the next call connects again."""
        try:
            yield
        except EngineAway:
            self.close()
            raise
        except Exception as e:
            if not _unanswered(e):
                raise
            self.close()
            raise EngineAway(self.docker_host, _reason(e)) from e

    def close(self) -> None:
        """Close the engine connection (Podman's service waits for open clients, quirk 12)."""
        client, self._client, self._podman = self._client, None, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    def is_podman(self) -> bool:
        if self._podman is None:
            components = self.client.version().get("Components") or []
            self._podman = any("podman" in str(c.get("Name", "")).lower() for c in components)
        return self._podman

    def gpu_runtime(self) -> str | None:
        """'nvidia' (Docker runtime), 'cdi' (Podman CDI spec for nvidia.com/gpu) or None."""
        if self.is_podman():
            return "cdi" if any(_names_nvidia_gpu(path) for path in _cdi_specs()) else None
        return "nvidia" if "nvidia" in (self.client.info().get("Runtimes") or {}) else None

    # --- building -------------------------------------------------------------------------

    @property
    def builds_lock(self) -> Path:
        """One lock per engine on this machine, shared by every hub that builds on it: a build
        holds it shared, garbage collection exclusive (it cannot tell whose leftovers are whose)."""
        engine = hashlib.sha256(self.docker_host.encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"aidhub-builds-{engine}.lock"

    def build_image(self, spec: ServeSpec, context: Path, tag: str, log: LogFn) -> str:
        """Build `context` as `tag` offline, passing the engine's output to `log`; the image id.

        The archive is sent and the engine's reply read over a socket, which gevent patches under
        `aid serve`: waiting on it yields to the hub's other greenlets."""
        began, tail = time.monotonic(), []
        with file_lock(self.builds_lock, shared=True, log=log), _packed(context) as archive:
            stream = self.client.api.build(
                fileobj=archive, custom_context=True, tag=tag, rm=True, forcerm=True, network_mode="none",
                decode=True, pull=False,  # labels: the Dockerfile has them (render_dockerfile)
            )  # fmt: skip
            image_id = _image_of_stream(spec, stream, tail, log)
        if image_id is None:  # quirk 19: a build killed from outside can end its stream without an error
            raise RunnerError(
                f"Building the image of {spec.name!r} version {spec.version!r} ended without an image; "
                "another build on the engine may have interfered. Deploy again.",
                log_tail="\n".join(tail[-TAIL_LINES:]),
            )
        log(f"Built image {tag} ({image_id[:19]}) in {time.monotonic() - began:.1f} s")
        return image_id

    def collect_build_garbage(self) -> None:
        """Podman API builds leak buildah working containers (quirk 2): remove those older than
        GARBAGE_AGE_S when no aidhub build on this engine is in flight. Dangling images are kept:
        buildah's layer cache (the dependency stage) lives in them."""
        if not self.is_podman() or not shutil.which("podman"):
            return
        try:
            with file_lock(self.builds_lock, wait=False):
                leaked = self._leaked_build_containers()
                if leaked:
                    subprocess.run(
                        ["podman", "rm", "--storage", "-f", *leaked], capture_output=True, timeout=60
                    )
        except (LockBusy, OSError, subprocess.SubprocessError) as e:
            log.debug("Skipped build garbage collection: %s", e)
        except Exception as e:  # an engine error must not fail a finished build
            log.warning("Build garbage collection failed: %s", e)

    def _leaked_build_containers(self) -> list[str]:
        listed = subprocess.run(
            ["podman", "ps", "-a", "--external", "--format", "json"],
            capture_output=True, text=True, timeout=30,
        ).stdout  # fmt: skip
        known = {c.id for c in self.client.containers.list(all=True)}
        return [
            c["Id"] for c in json.loads(listed or "[]")
            # builds by other tools on this engine take no lock: leave their young ones
            if c.get("Id") not in known and time.time() - _number(c.get("Created")) > GARBAGE_AGE_S
        ]  # fmt: skip


@contextlib.contextmanager
def _packed(context: Path) -> Iterator[BinaryIO]:
    """The build context as a tar archive beside it, open for reading; removed afterwards.

    A child process writes it: given a folder, the docker SDK would tar it in this process, seconds
    of blocking file reads for a large wheelhouse during which a hub under gevent answers nothing.
    Waiting for the child yields to the hub's other greenlets."""
    archive = context.with_name(f"{context.name}.tar")
    try:
        packed = subprocess.run(
            [sys.executable, "-c", _PACK_CONTEXT, str(context), str(archive)],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        if packed.returncode != 0:
            raise RunnerError(f"Packing the build context {context} failed: {packed.stderr.strip()[-500:]}")
        with open(archive, "rb") as handle:
            yield handle
    finally:
        archive.unlink(missing_ok=True)


def _image_of_stream(spec: ServeSpec, stream, tail: list[str], log: LogFn) -> str | None:
    """Follow a build's decoded output: log each line, raise on an error, find the image id."""
    image_id = None
    for chunk in stream:
        if "error" in chunk:
            tail.append(str(chunk["error"]).rstrip())
            raise RunnerError(
                f"Building the image of {spec.name!r} version {spec.version!r} failed; read "
                "the build log, fix the package or its requirements and publish a new version.",
                log_tail="\n".join(tail[-TAIL_LINES:]),
            )
        if isinstance(chunk.get("aux"), dict) and chunk["aux"].get("ID"):
            image_id = chunk["aux"]["ID"]
        for line in str(chunk.get("stream", "")).splitlines():
            if line.strip():
                tail.append(line)
                log(line)
                if match := re.match(r"Successfully built ([0-9a-f]{12,64})$", line.strip()):
                    image_id = image_id or match.group(1)
    return image_id


def matching(objects: list, labels: dict[str, str]) -> list:
    """The images or containers that carry every one of `labels` (the engine filters on one label
    only: Podman 4.3 answers nothing to several, quirk 15)."""
    return [o for o in objects if all((o.labels or {}).get(k) == v for k, v in labels.items())]


def remove(container) -> None:
    """Remove `container`, running or not; a no-op when it is gone."""
    with contextlib.suppress(Exception):
        container.remove(force=True)


def _unanswered(error: Exception) -> bool:
    """Whether `error` says the engine did not answer (rather than answering with an error)."""
    import docker
    import requests
    import urllib3

    unanswered = (
        ConnectionError,  # refused, reset, broken pipe
        requests.exceptions.ConnectionError,  # also: the socket file is gone
        requests.exceptions.Timeout,
        requests.exceptions.ChunkedEncodingError,  # the engine died mid-stream (a build's output)
        urllib3.exceptions.ProtocolError,
        urllib3.exceptions.TimeoutError,
    )
    if isinstance(error, docker.errors.DockerException) and not isinstance(error, docker.errors.APIError):
        return any(isinstance(e, unanswered) for e in _causes(error))  # connecting: the API version
    return isinstance(error, unanswered)


def _reason(error: Exception) -> str:
    """The operating system's word for why the engine did not answer ("Connection refused"), else
    the error's first line."""
    for cause in _causes(error):
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _causes(error: BaseException) -> list[BaseException]:
    """`error` and what it wraps: its cause, its context and the exceptions among its args."""
    found, todo = [], [error]
    while todo and len(found) < 20:
        current = todo.pop(0)
        if any(current is seen for seen in found):
            continue
        found.append(current)
        todo += [a for a in current.args if isinstance(a, BaseException)]
        todo += [c for c in (current.__cause__, current.__context__) if c is not None]
    return found


def _cdi_specs() -> list[Path]:
    found = []
    for folder in (folder for folder in CDI_DIRS if folder.is_dir()):
        found += [*folder.glob("*.yaml"), *folder.glob("*.json")]
    return found


def _names_nvidia_gpu(path: Path) -> bool:
    try:
        return "nvidia.com/gpu" in path.read_text(errors="replace")
    except OSError:
        return False


def _number(value) -> float:
    return value if isinstance(value, int | float) else 0.0
