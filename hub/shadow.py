"""Shadow versions (roles: `ShadowUseCases`, `Mirror`): a share of the serving version's calls is
copied to a candidate version, off the request path, and the two are compared on the same inputs.

The caller's call is answered as before; `Hub.predict` only tells `ShadowUseCases._mirror_call` of it
(hub/serving.py `predict(mirror=...)`), which decides from a two-second cache whether to copy it and
puts the copy on a bounded queue. A few workers (threads; greenlets under `aid serve`, whose process
is gevent-patched) make the shadow calls and log the answers as source 'shadow' (monitor/shadows.py).
A full queue drops the copy and counts it: a slow or failing shadow never slows or fails the caller.
The counts (copied, failed, dropped) are this hub process's since it started.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from database.connection import UNAVAILABLE
from hub.errors import Conflict, Invalid, NotFound, Unavailable, translated
from hub.periodic import after_callers
from hub.serving import shadow_call
from hub.windows import scorecard_span
from monitor import shadows
from registry.models import VersionRow
from vocab.times import utcnow

log = logging.getLogger(__name__)
WORKERS = 4  # shadow calls in flight at once, per hub process
QUEUE_SIZE = 1000  # copies waiting beyond which new ones are dropped
QUEUE_BYTES = 64 * 1024 * 1024  # or beyond this many bytes of their bodies (3 MB images add up)
IDLE_SECONDS = 30.0  # a worker with nothing to do for this long ends (another starts when needed)
TTL = 2.0  # seconds a model's shadow setting is cached, like its routes (hub/routes.py)


class Mirror:
    """A bounded queue and up to `workers` workers running its tasks; `offer` never blocks."""

    def __init__(
        self,
        workers: int = WORKERS,
        size: int = QUEUE_SIZE,
        idle: float = IDLE_SECONDS,
        most_bytes=QUEUE_BYTES,
    ):
        self.tasks: queue.Queue = queue.Queue(size)
        self.workers, self.idle, self.running = workers, idle, 0
        self.most_bytes, self.queued_bytes = most_bytes, 0
        self.lock = threading.Lock()
        self.counts: Counter[tuple[str, str]] = Counter()  # (model, 'copied' | 'failed' | 'dropped')
        self.after_task: Callable[[], None] = lambda: None

    def offer(self, model: str, task: Callable[[], bool], size: int = 0) -> bool:
        """Queue `task` (True when it succeeded) holding `size` bytes; False, counted as dropped, when
        the queue is full."""
        try:
            if self.queued_bytes + size > self.most_bytes:
                raise queue.Full
            self.tasks.put_nowait((model, task, size))
        except queue.Full:
            self._count(model, "dropped")
            return False
        with self.lock:
            self.queued_bytes += size
        if self.running < self.workers:
            self._start_worker()
        return True

    def counts_of(self, model: str) -> dict[str, int]:
        return {kind: self.counts[(model, kind)] for kind in ("copied", "failed", "dropped")}

    def _count(self, model: str, kind: str) -> None:
        with self.lock:
            self.counts[(model, kind)] += 1

    def _start_worker(self) -> None:
        with self.lock:
            if self.running >= self.workers:
                return
            self.running += 1
        threading.Thread(target=self._work, name="aidhub-shadow", daemon=True).start()

    def _work(self) -> None:
        try:
            while True:
                try:
                    model, task, size = self.tasks.get(timeout=self.idle)
                except queue.Empty:
                    return
                with self.lock:
                    self.queued_bytes -= size
                after_callers()  # callers first: when they keep the process busy, copies are dropped
                self._count(model, "copied" if self._run(task) else "failed")
        finally:
            with self.lock:
                self.running -= 1
            if not self.tasks.empty():  # a task queued while this worker was ending
                self._start_worker()

    def _run(self, task: Callable[[], bool]) -> bool:
        try:
            return task()
        except Exception:  # a worker never dies of one call
            log.exception("a shadow call failed")
            return False
        finally:
            self.after_task()


@dataclass(frozen=True)
class Setting:
    """A model's shadow as cached: calls to `serving_id` are copied to `ref` at `share`."""

    serving_id: int
    ref: str
    share: float


class ShadowState:
    """Per hub process: the cached settings, the sampling credit of each model and the mirror."""

    def __init__(self) -> None:
        self.settings: dict[str, Setting | None] = {}
        self.expires: dict[str, float] = {}
        self.credit: Counter[str] = Counter()
        self.mirror = Mirror()

    def take(self, model: str, share: float) -> bool:
        """Every 1/share-th call: exactly `share` of the calls, spread evenly."""
        self.credit[model] += share
        if self.credit[model] < 1.0 - 1e-9:
            return False
        self.credit[model] -= 1.0
        return True


_STATE_LOCK = threading.Lock()


class ShadowUseCases:
    """The Hub's shadow use cases (a mixin of hub.hub.Hub: it uses its catalog, deployments, client,
    prediction log and routes)."""

    @property
    def shadow_state(self) -> ShadowState:
        state = self.__dict__.get("_shadow_state")
        if state is None:
            with _STATE_LOCK:
                state = self.__dict__.setdefault("_shadow_state", ShadowState())
                state.mirror.after_task = self.release_connection
        return state

    def set_shadow(self, name: str, ref: str | None, share: float = 0.2) -> dict:
        """Copy `share` of the calls the serving version of `name` answers to version `ref`."""
        share = checked_share(share)
        if not ref:
            raise Invalid(f"Name the version to shadow: aid shadow {name} VERSION [--share 0.2].")
        version, serving = self.catalog.resolve(name, ref), self.target(name)
        label = f"{name}@{version.version}"
        if version.id == serving.id:
            raise Invalid(f"{label} is the version serving {name}'s calls; shadow another version of it.")
        try:
            self.deployments.endpoint(version)
        except Unavailable as e:
            raise Conflict(f"{e.message} A shadow must serve before calls are copied to it.") from e
        with translated():
            shadows.set_shadow(name, version.id, share)
        self.shadow_state.settings.pop(name, None)
        self.shadow_state.credit.pop(name, None)
        return self.shadow(name)

    def stop_shadow(self, name: str) -> dict:
        """Stop copying calls; the setting it had, with this process's counts."""
        before = self.shadow(name)  # 404 for an unknown model
        with translated():
            stopped = shadows.clear_shadow(name)
        if not stopped:
            raise NotFound(f"{name} has no shadow version. Start one with 'aid shadow {name} VERSION'.")
        self.shadow_state.settings.pop(name, None)
        return before

    def shadow(self, name: str) -> dict:
        """The model's shadow: its version, share, since when, and this process's counts."""
        self.catalog.model(name)
        row = shadows.shadow_of(name)
        version = VersionRow.get_or_none(VersionRow.id == row.version_id) if row else None
        if version is None:
            return {"model": name, "shadow": None}
        found = {"version": version.version, "share": row.share, "since": row.created_at.isoformat() + "Z"}
        counts = self.shadow_state.mirror.counts_of(name)
        return {"model": name, "serving": self.target(name).version, "shadow": {**found, **counts}}

    def compare_versions(self, name: str, a: str, b: str, window: str = "24h") -> dict:
        """Two versions of `name` on the same inputs: the calls one answered live and the other in
        shadow, over the last `window` ('all': all time)."""
        span, _ = scorecard_span(window, None)
        first, second = self.catalog.resolve(name, a), self.catalog.resolve(name, b)
        if first.id == second.id:
            raise Invalid(f"{name}@{first.version} is compared with itself; name two different versions.")
        self.predlog.flush(timeout=5.0)  # shadow calls of the last moments are still queued
        with translated():
            found = shadows.pairs(first.id, second.id, utcnow() - span if span else None)
            given = shadows.feedback_on([shadows.live_of(p).id for p in found])
        figures = shadows.comparison(found, given, (_labels(first), _labels(second)))
        for side, version in zip(figures["sides"], (first, second), strict=True):
            side["version"] = version.version
        return {"model": name, "window": window.strip(), **figures}

    def _mirror_call(self, route, inputs, body, pid: str) -> None:
        """hub/serving.py `predict`'s hook, on the request path: cheap, and never raises."""
        try:
            name = route.version.model.name
            setting = self._shadow_setting(name)
            if setting is None or setting.serving_id != route.version.id:
                return
            if self.shadow_state.take(name, setting.share):
                task = partial(self._shadow_task, name, setting.ref, inputs, body, pid)
                self.shadow_state.mirror.offer(name, task, _size(inputs, body))
        except Exception:
            log.exception("copying a call to its shadow failed; the call itself was answered")

    def _shadow_task(self, name: str, ref: str, inputs, body, pid: str) -> bool:
        route = self.route(name, ref)  # resolved here, on the worker, from the route cache
        return shadow_call(self.client, self.predlog, route, inputs, body, pid)

    def _shadow_setting(self, name: str) -> Setting | None:
        state, now = self.shadow_state, time.monotonic()
        if name in state.settings and state.expires.get(name, 0.0) > now:
            return state.settings[name]
        try:
            state.settings[name] = self._load_setting(name)
        except UNAVAILABLE:
            log.warning("the database does not answer; %s's shadow stays as last known", name)
        except Exception:
            log.exception("reading %s's shadow failed; no calls are copied for %s s", name, TTL)
            state.settings[name] = None
        state.expires[name] = now + TTL
        return state.settings.get(name)

    def _load_setting(self, name: str) -> Setting | None:
        row = shadows.shadow_of(name)
        version = VersionRow.get_or_none(VersionRow.id == row.version_id) if row else None
        if version is None:
            return None
        serving = self.target(name)
        if serving.id == version.id:  # an alias moved to the shadow since: nothing to copy it to
            return None
        return Setting(serving.id, version.version, row.share)


def checked_share(share) -> float:
    """A share in (0, 1]; Invalid naming the value otherwise."""
    try:
        value = float(share)
    except (TypeError, ValueError):
        value = float("nan")
    if isinstance(share, bool) or not 0.0 < value <= 1.0:
        raise Invalid(f"share {share!r} is not in (0, 1]; give the fraction of calls to copy, e.g. 0.2.")
    return value


def _size(inputs, body: bytes | None) -> int:
    """The bytes a queued copy holds: the request's body, else its arrays (binary inputs)."""
    if body is not None:
        return len(body)
    return sum(v.nbytes for v in inputs.values() if hasattr(v, "nbytes")) if isinstance(inputs, dict) else 0


def _labels(version: VersionRow) -> tuple[str, ...]:
    return tuple(version.manifest.get("labels") or ())
