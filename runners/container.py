"""The container backend: one image per version, built and run through the Docker Engine API
(the engine itself: runners/engine.py).

Two images per environment and version (runners/buildcontext.py). The environment image
(`aidhub-env:<env key>-<base hash>`, label `aidhub.role=environment`) is built once per requirement
set, python and base: offline, the wheelhouse is filled on this host with binary wheels only and
installed with `--no-index`; a requirement without a wheel travels as its source archive and is
built into a wheel by that install, inside the build container. Each version image is built FROM
it with a context of the package and the generated service only, tagged
`aidhub/<name>:<version>-<digest12>`. When the environment image exists, a new version resolves,
downloads and sends no wheels at all. Large weights get a third image between the two
(runners/weights.py): `aidhub-weights:<key>` FROM the environment image, built once per environment
image and set of weight files by digest; a version whose weights image exists sends no weights.
A second build rather than running the environment image
with the package mounted: the version image stays one immutable, self-contained artifact (no bind
mount of the hub's store, which a remote engine or a hub in a container could not see), and the
COPY layers cost about a second. Images are found again by their `aidhub.*` labels, never by
comparing tag strings (docs/podman-notes.md quirk 11). Containers run as a non-root user, read-only with a
/tmp tmpfs, without capabilities, with the memory and cpu limits of the manifest's `resources` (a
version asking more than the hub's maximum is refused before anything is built), on a port
published to `host` only. The runtime base is chosen per version (`choose_base_image`): the
manifest's `base_image`, the hub's overrides, the CUDA table, the hub's CPU default.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import time
import uuid
from pathlib import Path

from vocab.sizes import format_size

from .base import Instance, LogFn, RunnerError, ServeSpec
from .buildcontext import (
    DEFAULT_UID,
    PORT,
    check_base_image_overrides,
    choose_base_image,
    environment_labels,
    environment_tag,
    openapi_label,
)
from .contextfiles import context_summary, write_environment_context, write_version_context
from .engine import Engine, matching, remove, through_engine
from .environment import combined_requirements, environment_key, fill_wheelhouse
from .flavors.serving import SETUP_FAILED_LOG_ENV
from .launch import launched
from .service import device_for
from .sources import copy_sources
from .startup import server_url, wait_until_ready
from .weights import find_image, weights_image

log = logging.getLogger(__name__)

STOP_GRACE_S = 10
PORT_KEY = f"{PORT}/tcp"


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
        workers: int | None = None,  # None: sized to each version's CPU limit (service.serving_plan)
        threads: int = 4,
        uid: int = DEFAULT_UID,
        owner: str = "default",
    ):
        self.docker_host = docker_host
        self.engine = Engine(docker_host)
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
        self._built: dict[str, str] = {}  # version key -> id of the image this runner built for it

    @property
    def client(self):
        """The engine's docker SDK client; EngineAway (a RunnerError) when no engine answers."""
        return self.engine.client

    def close(self) -> None:
        """Close the engine connection; the containers keep running."""
        self.engine.close()

    # --- Runner: each engine call inside fails with EngineAway when the engine does not answer -----

    def requirements(self, spec: ServeSpec) -> list[str]:
        return combined_requirements(spec.framework, spec.requirements, _gpus(spec) > 0)

    def env_key(self, spec: ServeSpec) -> str:
        return environment_key(spec.python, spec.framework, self.requirements(spec), spec.gpu)

    def base_image_of(self, spec: ServeSpec) -> tuple[str, str]:
        """(image, why): the runtime base `spec` grows from, and the rule that chose it."""
        return choose_base_image(spec.framework, spec.gpu, self.base_images, spec.base_images, spec.python)

    @through_engine
    def build(self, spec: ServeSpec, log: LogFn) -> str:
        """Build (unless an image with this version's labels exists) and return the env key."""
        return self._build(spec, log)[0]

    @through_engine
    def start(self, spec: ServeSpec, log: LogFn) -> Instance:
        """Build if needed, run the container, wait for /readyz; RunnerError if it does not."""
        env_key, image_id = self._build(spec, log)
        self._clear_leftovers(spec)
        log(f"Limits: {spec.cpus:g} CPU(s), memory {format_size(spec.memory_bytes)} (resources in aid.yaml)")
        container = self.client.containers.run(image_id, detach=True, **self._run_options(spec, env_key))
        try:
            port = self._published_port(container)
        except RunnerError:
            remove(container)
            raise
        url = server_url(self.host, port)
        instance = Instance(spec.key, url, env_key, None, port, None, self.kind, container.id)
        log(f"Started {spec.name} {spec.version} as container {container.short_id} on {url}")
        wait_until_ready(spec, launched(container, url), self.ready_timeout, log)
        return instance

    @through_engine
    def stop(self, instance: Instance) -> None:
        """Stop and remove the container (found by id, else by labels); a no-op when gone."""
        for container in self._containers_of(instance):
            with contextlib.suppress(Exception):
                container.stop(timeout=STOP_GRACE_S)
            remove(container)

    @through_engine
    def alive(self, instance: Instance) -> bool:
        """Whether the instance's container is running."""
        return any(c.status == "running" for c in self._containers_of(instance))

    @through_engine
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
            )
            for c in matching(found, {"aidhub.hub": self.owner, "aidhub.runner": self.kind})
            if c.labels.get("aidhub.key")
        ]

    # --- building -------------------------------------------------------------------------

    def _build(self, spec: ServeSpec, log: LogFn) -> tuple[str, str]:
        self._check_limits(spec)
        self._check_gpu(spec, log)
        env_key = self.env_key(spec)
        base, why = self.base_image_of(spec)
        found = self._version_image_of(spec, env_key, base)
        if found:
            return env_key, found
        env_image = self._environment_image(spec, env_key, base, why, log)
        weights = weights_image(self.engine, spec, (env_image, env_key, base), self._context, log)
        image_id = self._version_image(spec, weights or env_image, weights is None, env_key, base, log)
        self._built[spec.key] = image_id
        self.engine.collect_build_garbage()
        return env_key, image_id

    def _version_image_of(self, spec: ServeSpec, env_key: str, base: str) -> str | None:
        """The id of an image with this version's labels: the one this runner built last for it
        (one inspect: `start` right after `build`), else any the engine lists by label."""
        labels = _labels(spec, env_key, base)
        if (built := self._built.get(spec.key)) and self.engine.labelled_image(built, labels):
            return built
        found = matching(self.client.images.list(filters={"label": f"aidhub.env={env_key}"}), labels)
        # a tagged image before an intermediate one that carries the same labels
        return sorted(found, key=lambda image: not image.tags)[0].id if found else None

    def _version_image(
        self, spec: ServeSpec, from_image: str, with_weights: bool, env_key: str, base: str, log: LogFn
    ) -> str:
        """Build the version image FROM `from_image` (the weights image, or the environment image
        with the weights in the context: `with_weights`); its id."""
        tag = image_tag(spec)
        with self._context(spec) as context:
            write_version_context(
                spec, context, from_image, env_key, base, self.uid, with_weights=with_weights,
                workers=self.workers, threads=self.threads,
            )  # fmt: skip
            log(f"Building image {tag} FROM {from_image} (context {context_summary(context)})")
            return self.engine.build_image(spec, context, tag, log)

    def _environment_image(self, spec: ServeSpec, env_key: str, base: str, why: str, log: LogFn) -> str:
        """The reference of the environment image `env_key` grown from `base`, built first when the
        engine lacks it. When it exists, nothing is resolved or downloaded: the wheelhouse is not
        read, so a hub with a fresh home (empty wheelhouse, no network) builds versions as fast."""
        tag = environment_tag(env_key, base)
        found = self._find_environment(env_key, base)
        if found:
            log(f"The environment image {tag} exists: building FROM it (no wheels to fetch or send)")
            return found
        reqs = self.requirements(spec)
        sources = fill_wheelhouse(self.wheelhouse, reqs, log, spec.python, sources=True)
        with self._context(spec) as context:
            write_environment_context(context, base, spec.python, env_key, reqs, self.wheelhouse)
            _add_sources(sources, context, log)
            log(f"Building environment image {tag} FROM {base} ({why})")
            self.engine.build_image(spec, context, tag, log)
        found = self._find_environment(env_key, base)
        if not found:
            raise RunnerError(
                f"The environment image {tag} was built but the engine does not list it; deploy again."
            )
        return found

    def _find_environment(self, env_key: str, base: str) -> str | None:
        """A tag of the environment image (found by its labels, quirk 11), as the engine spells it."""
        tag, labels = environment_tag(env_key, base), environment_labels(env_key, base)
        # by its tag first, checked by its labels (one inspect); else listed by label
        if found := self.engine.labelled_image(tag, labels):
            return sorted(found.get("RepoTags") or [tag])[0]
        return find_image(self.engine, labels, tag, "aidhub.env")

    @contextlib.contextmanager
    def _context(self, spec: ServeSpec):
        """A new build context folder for `spec`, removed afterwards whatever happens."""
        self.contexts_dir.mkdir(parents=True, exist_ok=True)
        context = self.contexts_dir / f"{spec.key.replace('/', '--')}-{uuid.uuid4().hex[:8]}"
        try:
            yield context
        finally:
            shutil.rmtree(context, ignore_errors=True)

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
        if count > 0 and self.engine.gpu_runtime() is None:
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
        labels = {
            **_labels(spec, env_key, self.base_image_of(spec)[0]),
            "aidhub.key": spec.key,
            "aidhub.runner": self.kind,
            "aidhub.hub": self.owner,
        }
        options = dict(
            ports={PORT_KEY: (self.host, None)},
            user=f"{self.uid}:{self.uid}",  # quirk 9
            read_only=True,
            tmpfs={"/tmp": "rw,mode=1777"},
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            privileged=False,
            pids_limit=512,
            labels=labels,
            environment=environment,
            mem_limit=spec.memory_bytes,
            nano_cpus=round(spec.cpus * 1e9),
        )
        return options | self._gpu_options(_gpus(spec), environment)

    def _gpu_options(self, count: int, environment: dict) -> dict:
        """The run options that give a container `count` GPUs (none: hide them from CUDA)."""
        if count == 0:
            environment["CUDA_VISIBLE_DEVICES"] = ""
            return {}
        if self.engine.gpu_runtime() == "cdi":
            return {"devices": ["nvidia.com/gpu=all"]}
        import docker

        return {"device_requests": [docker.types.DeviceRequest(count=count, capabilities=[["gpu"]])]}

    def _published_port(self, container) -> int:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            container.reload()
            bindings = (container.attrs.get("NetworkSettings", {}).get("Ports") or {}).get(PORT_KEY)
            if bindings and bindings[0].get("HostPort"):
                return int(bindings[0]["HostPort"])
            time.sleep(0.1)
        raise RunnerError(f"The engine published no host port for container {container.short_id}.")

    def _clear_leftovers(self, spec: ServeSpec) -> None:
        """Remove stopped containers of this version; refuse when one still runs."""
        for container in self._containers_by_key(spec.key):
            if container.status == "running":
                raise RunnerError(
                    f"Model {spec.name!r} version {spec.version!r} already runs here (container "
                    f"{container.short_id}); stop that instance before starting it again."
                )
            remove(container)

    def _containers_of(self, instance: Instance) -> list:
        import docker

        if instance.container_id:
            try:
                return [self.client.containers.get(instance.container_id)]
            except docker.errors.NotFound:
                return []
        return self._containers_by_key(instance.key)

    def _containers_by_key(self, key: str) -> list:
        found = self.client.containers.list(all=True, filters={"label": f"aidhub.key={key}"})
        return matching(found, {"aidhub.key": key, "aidhub.runner": self.kind})


def _add_sources(sources: list[Path], context: Path, log: LogFn) -> None:
    """Put the source archives beside the wheels: the build stage's offline `uv pip install`
    builds each into a wheel inside the build container, never on this host."""
    if sources:
        copy_sources(sources, context / "wheelhouse")
        names = ", ".join(path.name for path in sources)
        log(f"Source archives to build inside the build container (no wheel for them): {names}")


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


def _gpus(spec: ServeSpec) -> int:
    """How many GPUs `spec` requires: 0 for none and for 'optional'."""
    if device_for(spec.gpu) != "cuda":
        return 0
    try:
        return max(1, int(str(spec.gpu).strip()))
    except ValueError:
        return 1
