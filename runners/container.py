"""The container backend: one image per version, built and run through the Docker Engine API.

The same code drives Docker Engine and Podman's Docker-compatible service (docs/podman-notes.md;
the quirk numbers below refer to that file). Images are built from `write_build_context`
(offline: the wheelhouse is filled on this host and installed with `--no-index`), tagged
`aidhub/<name>:<version>-<digest12>` and found again by their `aidhub.*` labels, never by
comparing tag strings (quirk 11). Containers run as a non-root user, read-only with a /tmp tmpfs,
without capabilities, with the memory and cpu limits of the manifest's `resources` (a version
asking more than the hub's maximum is refused before anything is built), on a port published
to `host` only. The runtime base is chosen per version (`choose_base_image`): the manifest's
`base_image`, the hub's overrides, the CUDA table, the hub's CPU default.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from .base import Instance, LogFn, RunnerError, ServeSpec, format_size
from .buildcontext import (
    DEFAULT_UID,
    PORT,
    check_base_image_overrides,
    choose_base_image,
    openapi_label,
    write_build_context,
)
from .environment import combined_requirements, environment_key, fill_wheelhouse
from .flavors.serving import SETUP_FAILED_BEGIN, SETUP_FAILED_END, SETUP_FAILED_LOG_ENV
from .service import device_for

log = logging.getLogger(__name__)

TAIL_LINES = 40
STOP_GRACE_S = 10
GARBAGE_AGE_S = 600  # leaked build containers younger than this may belong to a build in flight
WAITING_NOTE_S = 5.0  # a "still waiting" log line this often while a server starts
NOT_RUNNING = {"created", "stopped", "exited", "dead", "removing", "configured"}  # quirk 7
PORT_KEY = f"{PORT}/tcp"
CDI_DIRS = (Path("/etc/cdi"), Path("/var/run/cdi"))


class ContainerRunner:
    """Builds an image per version and runs it as a container on `host`.

    `base_image` is the hub's CPU base; `base_images` the hub's other bases by key ("gpu",
    "torch-gpu", "onnx-cpu", ...). `max_memory_bytes` and `max_cpus` are the most a version
    may ask for in its manifest's `resources` (None: no maximum).
    """

    kind = "container"

    def __init__(
        self,
        docker_host: str,
        wheelhouse: Path,
        contexts_dir: Path,
        base_image: str,
        host: str = "127.0.0.1",
        ready_timeout: float = 120.0,
        base_images: dict | None = None,
        max_memory_bytes: int | None = None,
        max_cpus: float | None = None,
        workers: int = 1,
        threads: int = 4,
        uid: int = DEFAULT_UID,
        owner: str = "default",
    ):
        self.docker_host = docker_host
        self.owner = owner  # label aidhub.hub: which hub's containers these are, when engines are shared
        self.wheelhouse = Path(wheelhouse)
        self.contexts_dir = Path(contexts_dir)
        self.base_image = base_image
        self.base_images = check_base_image_overrides({"cpu": base_image, **(base_images or {})})
        self.host = host
        self.ready_timeout = ready_timeout
        self.max_memory_bytes = max_memory_bytes
        self.max_cpus = max_cpus
        self.workers = workers
        self.threads = threads
        self.uid = uid
        self._client = None
        self._podman: bool | None = None

    # --- engine ---------------------------------------------------------------------------

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
            for folder in CDI_DIRS:
                for path in [*folder.glob("*.yaml"), *folder.glob("*.json")] if folder.is_dir() else []:
                    with contextlib.suppress(OSError):
                        if "nvidia.com/gpu" in path.read_text(errors="replace"):
                            return "cdi"
            return None
        return "nvidia" if "nvidia" in (self.client.info().get("Runtimes") or {}) else None

    # --- Runner ---------------------------------------------------------------------------

    def requirements(self, spec: ServeSpec) -> list[str]:
        return combined_requirements(spec.framework, spec.requirements, _gpus(spec) > 0)

    def env_key(self, spec: ServeSpec) -> str:
        return environment_key(spec.python, spec.framework, self.requirements(spec), spec.gpu)

    def base_image_of(self, spec: ServeSpec) -> tuple[str, str]:
        """(image, why): the runtime base `spec` grows from, and the rule that chose it."""
        return choose_base_image(spec.framework, spec.gpu, self.base_images, spec.base_images, spec.python)

    def build(self, spec: ServeSpec, log: LogFn) -> str:
        """Build (unless an image with this version's labels exists) and return the env key."""
        return self._build(spec, log)[0]

    def start(self, spec: ServeSpec, log: LogFn) -> Instance:
        """Build if needed, run the container, wait for /readyz; RunnerError if it does not."""
        env_key, image_id = self._build(spec, log)
        self._clear_leftovers(spec)
        log(f"Limits: {spec.cpus:g} CPU(s), memory {format_size(spec.memory_bytes)} (resources in aid.yaml)")
        container = self.client.containers.run(image_id, detach=True, **self._run_options(spec, env_key))
        try:
            port = self._published_port(container)
        except RunnerError:
            _remove(container)
            raise
        url = f"http://{_url_host(self.host)}:{port}"
        instance = Instance(spec.key, url, env_key, None, port, None, self.kind, container.id)
        log(f"Started {spec.name} {spec.version} as container {container.short_id} on {url}")
        try:
            self._wait_ready(spec, container, instance, log)
        except BaseException:  # not ready, or the build was cancelled meanwhile: leave nothing running
            _remove(container)
            raise
        log(f"{spec.name} {spec.version} is ready at {url}")
        return instance

    def stop(self, instance: Instance) -> None:
        """Stop and remove the container (found by id, else by labels); a no-op when gone."""
        for container in self._containers_of(instance):
            with contextlib.suppress(Exception):
                container.stop(timeout=STOP_GRACE_S)
            _remove(container)

    def alive(self, instance: Instance) -> bool:
        """Whether the instance's container is running."""
        return any(c.status == "running" for c in self._containers_of(instance))

    def instances(self) -> list[Instance]:
        """This hub's containers (label aidhub.hub), running or not."""
        found = self.client.containers.list(all=True, filters={"label": f"aidhub.hub={self.owner}"})
        return [
            Instance(
                c.labels["aidhub.key"],
                "",
                c.labels.get("aidhub.env", ""),
                runner=self.kind,
                container_id=c.id,
            )  # fmt: skip
            for c in _matching(found, {"aidhub.hub": self.owner, "aidhub.runner": self.kind})
            if c.labels.get("aidhub.key")
        ]

    # --- building -------------------------------------------------------------------------

    def _build(self, spec: ServeSpec, log: LogFn) -> tuple[str, str]:
        self._check_limits(spec)
        self._check_gpu(spec, log)
        reqs, env_key = self.requirements(spec), self.env_key(spec)
        base, why = self.base_image_of(spec)
        labels = _labels(spec, env_key, base)
        found = _matching(self.client.images.list(filters={"label": f"aidhub.env={env_key}"}), labels)
        if found:  # a tagged image before an intermediate one that carries the same labels
            return env_key, sorted(found, key=lambda image: not image.tags)[0].id
        fill_wheelhouse(self.wheelhouse, reqs, log, spec.python)
        self.contexts_dir.mkdir(parents=True, exist_ok=True)
        context = self.contexts_dir / f"{spec.key.replace('/', '--')}-{uuid.uuid4().hex[:8]}"
        try:
            write_build_context(
                spec, context, base, env_key, reqs, self.wheelhouse, self.uid,
                workers=self.workers, threads=self.threads,
            )  # fmt: skip
            log(f"Building image {image_tag(spec)} FROM {base} ({why})")
            with _flock(self.builds_lock, fcntl.LOCK_SH):
                image_id = self._engine_build(spec, context, log)
        finally:
            shutil.rmtree(context, ignore_errors=True)
        self._collect_build_garbage()
        return env_key, image_id

    def _engine_build(self, spec: ServeSpec, context: Path, log: LogFn) -> str:
        tag = image_tag(spec)
        began, tail, image_id = time.monotonic(), [], None
        stream = self.client.api.build(
            path=str(context), tag=tag, rm=True, forcerm=True, network_mode="none",
            decode=True, pull=False,  # labels: the Dockerfile has them (render_dockerfile)
        )  # fmt: skip
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
        if image_id is None:  # quirk 19: a build killed from outside can end its stream without an error
            raise RunnerError(
                f"Building the image of {spec.name!r} version {spec.version!r} ended without an image; "
                "another build on the engine may have interfered. Deploy again.",
                log_tail="\n".join(tail[-TAIL_LINES:]),
            )
        log(f"Built image {tag} ({image_id[:19]}) in {time.monotonic() - began:.1f} s")
        return image_id

    @property
    def builds_lock(self) -> Path:
        """One lock per engine on this machine, shared by every hub that builds on it: a build
        holds it shared, garbage collection exclusive (it cannot tell whose leftovers are whose)."""
        engine = hashlib.sha256(self.docker_host.encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"aidhub-builds-{engine}.lock"

    def _collect_build_garbage(self) -> None:
        """Podman API builds leak buildah working containers (quirk 2): remove those older than
        GARBAGE_AGE_S when no aidhub build on this engine is in flight. Dangling images are kept:
        buildah's layer cache (the dependency stage) lives in them."""
        if not self.is_podman() or not shutil.which("podman"):
            return
        try:
            with _flock(self.builds_lock, fcntl.LOCK_EX | fcntl.LOCK_NB):
                listed = subprocess.run(
                    ["podman", "ps", "-a", "--external", "--format", "json"],
                    capture_output=True, text=True, timeout=30,
                ).stdout  # fmt: skip
                known = {c.id for c in self.client.containers.list(all=True)}
                leaked = [
                    c["Id"] for c in json.loads(listed or "[]")
                    # builds by other tools on this engine take no lock: leave their young ones
                    if c.get("Id") not in known and time.time() - _number(c.get("Created")) > GARBAGE_AGE_S
                ]  # fmt: skip
                if leaked:
                    subprocess.run(
                        ["podman", "rm", "--storage", "-f", *leaked], capture_output=True, timeout=60
                    )
        except (BlockingIOError, OSError, subprocess.SubprocessError) as e:
            log.debug("Skipped build garbage collection: %s", e)
        except Exception as e:  # an engine error must not fail a finished build
            log.warning("Build garbage collection failed: %s", e)

    def _check_limits(self, spec: ServeSpec) -> None:
        over = []
        if self.max_memory_bytes is not None and spec.memory_bytes > self.max_memory_bytes:
            over.append(f"resources.memory {format_size(spec.memory_bytes)} is over the maximum "
                        f"{format_size(self.max_memory_bytes)} (AIDHUB_MAX_MEMORY)")  # fmt: skip
        if self.max_cpus is not None and spec.cpus > self.max_cpus:
            over.append(
                f"resources.cpu {spec.cpus:g} is over the maximum {self.max_cpus:g} (AIDHUB_MAX_CPUS)"
            )
        if over:
            raise RunnerError(
                f"Model {spec.name!r} version {spec.version!r} asks for more than this hub allows: "
                f"{'; '.join(over)}. Publish a version whose aid.yaml asks for less, or ask the "
                "hub's admin to raise the maximum."
            )

    def _check_gpu(self, spec: ServeSpec, log: LogFn) -> None:
        count = _gpus(spec)
        if count == 0 and device_for(spec.gpu) == "auto":
            log(f"WARNING: {spec.name} {spec.version} asks for an optional GPU; running on CPU "
                "(the container runner starts gpu: optional versions without GPUs).")  # fmt: skip
        if count > 0 and self.gpu_runtime() is None:
            raise RunnerError(
                f"Model {spec.name!r} version {spec.version!r} requires {count} GPU(s) but the "
                f"container engine at DOCKER_HOST={self.docker_host} has no GPU runtime; install "
                "the NVIDIA container toolkit (Docker: the nvidia runtime; Podman: a CDI spec for "
                "nvidia.com/gpu), or deploy a version with gpu: 0 or gpu: optional."
            )

    # --- running --------------------------------------------------------------------------

    def _run_options(self, spec: ServeSpec, env_key: str) -> dict:
        environment = {str(k): str(v) for k, v in spec.env.items()}
        environment.update(
            BENTOML_HOME="/tmp/bentoml", BENTOML_DO_NOT_TRACK="true", HOME="/tmp",
            **{SETUP_FAILED_LOG_ENV: "1"},
        )  # fmt: skip
        options = dict(
            ports={PORT_KEY: (self.host, None)},
            user=f"{self.uid}:{self.uid}",  # quirk 9
            read_only=True,
            tmpfs={"/tmp": "rw,mode=1777"},
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            privileged=False,
            pids_limit=512,
            labels={
                **_labels(spec, env_key, self.base_image_of(spec)[0]),
                "aidhub.key": spec.key,
                "aidhub.runner": self.kind,
                "aidhub.hub": self.owner,
            },
            environment=environment,
            mem_limit=spec.memory_bytes,
            nano_cpus=round(spec.cpus * 1e9),
        )
        count = _gpus(spec)
        if count == 0:
            environment["CUDA_VISIBLE_DEVICES"] = ""
        elif self.gpu_runtime() == "cdi":
            options["devices"] = ["nvidia.com/gpu=all"]
        else:
            import docker

            options["device_requests"] = [docker.types.DeviceRequest(count=count, capabilities=[["gpu"]])]
        return options

    def _published_port(self, container) -> int:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            container.reload()
            bindings = (container.attrs.get("NetworkSettings", {}).get("Ports") or {}).get(PORT_KEY)
            if bindings and bindings[0].get("HostPort"):
                return int(bindings[0]["HostPort"])
            time.sleep(0.1)
        raise RunnerError(f"The engine published no host port for container {container.short_id}.")

    def _wait_ready(self, spec: ServeSpec, container, instance: Instance, log: LogFn) -> None:
        began = time.monotonic()
        deadline, next_check, said = began + self.ready_timeout, 0.0, began
        with httpx.Client(timeout=2.0, trust_env=False) as http:
            while time.monotonic() < deadline:
                if time.monotonic() - said >= WAITING_NOTE_S:
                    said = time.monotonic()
                    log(f"waiting for {spec.name} {spec.version} to be ready ({said - began:.0f} s)")
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + 0.5
                    container.reload()
                    if SETUP_FAILED_BEGIN.encode() in container.logs():
                        self._fail(spec, container, "loading the model raised an exception")
                    if container.status in NOT_RUNNING:
                        self._fail(spec, container, "the server exited before it was ready")
                if _answers_ready(http, instance.url):
                    return
                time.sleep(0.1)
        self._fail(spec, container, f"the server was not ready after {self.ready_timeout:.0f} s")

    def _fail(self, spec: ServeSpec, container, what: str) -> None:
        try:
            logs = container.logs().decode("utf-8", errors="replace")
        except Exception as e:
            logs = f"(could not read the container's log: {e})"
        _remove(container)
        tail = "\n".join(logs.splitlines()[-TAIL_LINES:])
        failure = _setup_failure(logs)
        if failure and failure not in tail:
            tail = f"{tail}\n{failure}"
        raise RunnerError(
            f"Model {spec.name!r} version {spec.version!r} did not start: {what}. Read the "
            f"container's log (below), fix the package, publish a new version and deploy it.",
            log_tail=tail,
        )

    def _clear_leftovers(self, spec: ServeSpec) -> None:
        """Remove stopped containers of this version; refuse when one still runs."""
        for container in self._containers_by_key(spec.key):
            if container.status == "running":
                raise RunnerError(
                    f"Model {spec.name!r} version {spec.version!r} already runs here (container "
                    f"{container.short_id}); stop that instance before starting it again."
                )
            _remove(container)

    def _containers_of(self, instance: Instance) -> list:
        import docker

        if instance.container_id:
            try:
                return [self.client.containers.get(instance.container_id)]
            except docker.errors.NotFound:
                return []
        return self._containers_by_key(instance.key)

    def _containers_by_key(self, key: str) -> list:
        # One label filter only: Podman 4.3 answers nothing to several (quirk 15), so match the
        # rest here.
        found = self.client.containers.list(all=True, filters={"label": f"aidhub.key={key}"})
        return _matching(found, {"aidhub.key": key, "aidhub.runner": self.kind})


def image_tag(spec: ServeSpec) -> str:
    """`aidhub/<name>:<version>-<digest12>`, with characters a tag cannot hold replaced by '_'."""
    tag = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{spec.version}-{spec.digest[:12]}")[:128]
    return f"aidhub/{spec.name.lower()}:{tag}"


def _labels(spec: ServeSpec, env_key: str, base: str) -> dict[str, str]:
    # the same labels render_dockerfile writes into the image
    return {
        "aidhub.model": spec.name,
        "aidhub.version": spec.version,
        "aidhub.digest": spec.digest,
        "aidhub.env": env_key,
        "aidhub.base": base,
        "aidhub.openapi": openapi_label(spec),
    }


def _matching(objects: list, labels: dict[str, str]) -> list:
    """The images or containers that carry every one of `labels`."""
    return [o for o in objects if all((o.labels or {}).get(k) == v for k, v in labels.items())]


def _gpus(spec: ServeSpec) -> int:
    """How many GPUs `spec` requires: 0 for none and for 'optional'."""
    if device_for(spec.gpu) != "cuda":
        return 0
    try:
        return max(1, int(str(spec.gpu).strip()))
    except ValueError:
        return 1


def _number(value) -> float:
    return value if isinstance(value, int | float) else 0.0


def _setup_failure(logs: str) -> str:
    begin = logs.find(SETUP_FAILED_BEGIN)
    if begin < 0:
        return ""
    end = logs.find(SETUP_FAILED_END, begin)
    return logs[begin + len(SETUP_FAILED_BEGIN) : end if end >= 0 else None].strip()


def _remove(container) -> None:
    with contextlib.suppress(Exception):
        container.remove(force=True)


def _answers_ready(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(f"{url}/readyz").status_code == 200
    except httpx.HTTPError:
        return False


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@contextlib.contextmanager
def _flock(path: Path, operation: int):
    with open(path, "a+b") as handle:
        fcntl.flock(handle, operation)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
