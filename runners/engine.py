"""One container engine behind the Docker Engine API: the connection, what it can run (Podman or
Docker, a GPU runtime), building an image from a context, and the garbage Podman's builds leave.

The same code drives Docker Engine and Podman's Docker-compatible service (docs/podman-notes.md;
the quirk numbers below refer to that file).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
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
# Garbage is looked for at most this often per Engine (one per hub process): a leak younger than
# GARBAGE_AGE_S stays anyway, and each look costs a `podman ps` and a container listing, which a
# new version's build would wait for.
GARBAGE_EVERY_S = 120
# A context at most this large is packed in this process (a few ms for a version's model and
# service); a larger one (a wheelhouse, big weights) in a child process (`_packed`).
PACK_HERE_MAX_BYTES = 8 * 1024**2
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
        self._garbage_checked_at: float | None = None  # time.monotonic() of the last look

    @property
    def client(self):
        """A docker SDK client for `docker_host`; EngineAway when no engine answers there."""
        if self._client is None:
            with self.answering():
                client, podman = _connect(self.docker_host)
            self._client = client
            self._podman = podman or None  # None: asked when needed (`is_podman`)
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
        GARBAGE_AGE_S when no aidhub build on this engine is in flight, looking at most every
        GARBAGE_EVERY_S. Dangling images are kept: buildah's layer cache (the dependency stage)
        lives in them."""
        now = time.monotonic()
        if self._garbage_checked_at is not None and now - self._garbage_checked_at < GARBAGE_EVERY_S:
            return
        self._garbage_checked_at = now
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

    def labelled_image(self, reference: str, labels: dict[str, str]) -> dict | None:
        """The engine's inspection of the image `reference` (an id or a tag) when it carries every
        one of `labels`; None when there is no such image or its labels differ (a tag moved to
        another image, quirk 11). One inspect: listing images by label costs ten times more."""
        import docker

        try:
            attrs = self.client.api.inspect_image(reference)
        except docker.errors.NotFound:
            return None
        found = (attrs.get("Config") or {}).get("Labels") or {}
        return attrs if all(found.get(k) == v for k, v in labels.items()) else None

    def _leaked_build_containers(self) -> list[str]:
        listed = subprocess.run(
            ["podman", "ps", "-a", "--external", "--format", "json"],
            capture_output=True, text=True, timeout=30,
        ).stdout  # fmt: skip
        known = {c["Id"] for c in self.client.api.containers(all=True)}  # ids only: no inspect each
        return [
            c["Id"] for c in json.loads(listed or "[]")
            # builds by other tools on this engine take no lock: leave their young ones
            if c.get("Id") not in known and time.time() - _number(c.get("Created")) > GARBAGE_AGE_S
        ]  # fmt: skip


def _connect(docker_host: str):
    """(a docker SDK client for `docker_host`, whether the engine is Podman), from one ping.

    The ping's reply headers give the engine's API version (the SDK would ask /version for it)
    and name Podman: asking /version costs a quarter of a second on Podman 4.3, twice, which a
    hub's first build used to wait for."""
    import docker

    probe = docker.APIClient(base_url=docker_host, version=docker.constants.DEFAULT_DOCKER_API_VERSION)
    try:
        reply = probe.get(f"{probe.base_url}/_ping", timeout=120)  # not versioned: any engine answers
    finally:
        probe.close()
    if reply.status_code != 200:
        raise EngineAway(docker_host, f"its ping answered HTTP {reply.status_code}: {reply.text[:200]}")
    version = reply.headers.get("Api-Version") or "auto"
    client = docker.DockerClient(base_url=docker_host, version=version, timeout=120)
    return client, "Libpod-Api-Version" in reply.headers


@contextlib.contextmanager
def _packed(context: Path) -> Iterator[BinaryIO]:
    """The build context as a tar archive, open for reading.

    A small context (a version's model and service, PACK_HERE_MAX_BYTES at most) is packed in
    memory here. A larger one is written beside the context by a child process and removed
    afterwards: given a folder, the docker SDK would tar it in this process, seconds of blocking
    file reads for a large wheelhouse during which a hub under gevent answers nothing, and waiting
    for the child yields to the hub's other greenlets. (The child's start-up, about 0.2 s of CPU,
    was most of a small context's packing.)"""
    if _context_bytes(context, PACK_HERE_MAX_BYTES) <= PACK_HERE_MAX_BYTES:
        from docker.utils.build import tar

        try:
            archive = tar(str(context), fileobj=io.BytesIO())
        except OSError as e:  # a file that cannot be read
            raise RunnerError(f"Packing the build context {context} failed: {e}") from e
        yield archive
        return
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


def _context_bytes(context: Path, limit: int) -> int:
    """The size of the files under `context`, counted until it passes `limit`."""
    total = 0
    for path in context.rglob("*"):
        total += path.stat().st_size if path.is_file() else 0
        if total > limit:
            break
    return total


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
