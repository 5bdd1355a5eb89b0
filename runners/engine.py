"""One container engine behind the Docker Engine API: the connection, what it can run (Podman or
Docker, a GPU runtime), building an image from a context, and the garbage Podman's builds leave.

The same code drives Docker Engine and Podman's Docker-compatible service (docs/podman-notes.md;
the quirk numbers below refer to that file).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
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


class Engine:
    """The engine at `docker_host`, connected on first use."""

    def __init__(self, docker_host: str):
        self.docker_host = docker_host
        self._client = None
        self._podman: bool | None = None

    @property
    def client(self):
        """A docker SDK client for `docker_host`; RunnerError when no engine answers there."""
        if self._client is None:
            import docker

            try:
                client = docker.DockerClient(base_url=self.docker_host, timeout=120)
                client.ping()
            except Exception as e:  # docker.errors.DockerException, requests errors
                raise RunnerError(
                    f"No container engine answers at DOCKER_HOST={self.docker_host} ({e}). Start one "
                    "(scripts/container-engine.sh starts Podman's service) or use the process runner."
                ) from e
            self._client = client
        return self._client

    def close(self) -> None:
        """Close the engine connection (Podman's service waits for open clients, quirk 12)."""
        if self._client is not None:
            self._client.close()
            self._client = None

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
