"""The Hub: one object holding the use cases that the CLI and the web layer call (roles: `Hub`)."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta

import monitor.migrations  # noqa: F401 - registers the monitor's schema steps
import registry.migrations  # noqa: F401 - registers the registry's schema steps
from database import connection, migrations
from database.connection import close_quietly
from hub import present
from hub.alerts import AlertUseCases
from hub.aliases import AliasUseCases
from hub.auth import AuthUseCases
from hub.buildhistory import BuildHistoryUseCases
from hub.buildqueue import make_huey
from hub.catalog import Catalog
from hub.collector import report_token
from hub.config import Config
from hub.datasets import DatasetUseCases
from hub.deployments import Deployments
from hub.drift import DriftRunner, DriftUseCases
from hub.driftschedule import DriftSchedule
from hub.errors import Invalid, NotFound, translated
from hub.files import FileUseCases
from hub.housekeeping import Housekeeping
from hub.lineage import LineageUseCases
from hub.listing import ListingUseCases
from hub.packages import Packages
from hub.processes import collector_for, routes_for, wait_for_prediction
from hub.review import ReviewUseCases
from hub.routes import Route
from hub.runner_choice import choose_runner
from hub.scrape import GaugeRefresh, seed_counters, version_states
from hub.serving import ModelClient, native_thread, predict, smoke_test
from hub.shadow import ShadowUseCases
from hub.specs import spec_for
from hub.watcher import Watcher
from hub.windows import scorecard_span
from monitor import driftruns, scorecard
from monitor import feedback as feedback_store
from monitor.metrics import Metrics
from monitor.predlog import PredictionLog
from registry.blobs import BlobStore
from registry.files import Limits
from registry.models import VersionRow
from runners.base import Runner
from runners.flavors.calls import PAYLOAD_CAP_ENV, TOKEN_ENV
from vocab.names import normalise_task

log = logging.getLogger(__name__)


class Hub(AlertUseCases, AliasUseCases, AuthUseCases, BuildHistoryUseCases, DatasetUseCases, DriftUseCases,
          FileUseCases, LineageUseCases, ListingUseCases, ReviewUseCases, ShadowUseCases):  # fmt: skip
    """`background=True` (the server, or the supervisor of its web workers: hub/processes.py) adopts
    running servers, runs builds and the watcher; `seed`: counters start from the database. A web
    worker of several, and `aid worker` (it runs the build queue), make one with background=False."""

    def __init__(self, config: Config, runner: Runner | None = None, background=True, seed=True):
        self.config, self.background, self.seed = config, background, seed
        self.db = open_database(config.database_url)
        blobs = BlobStore(config.blobs_dir)
        packages = Packages(blobs, config.packages_dir, _limits(config), config.min_free_disk_bytes)
        self.catalog = Catalog(packages)
        self.catalog.packages.list_archived_versions()
        self._open_auth(first_start=background)
        self.drift_runner = DriftRunner(
            blobs, config.drift_reference_rows, config.drift_max_rows, config.drift_min_rows,
            config.home / "logs" / "drift-worker.log",
        )  # fmt: skip
        self.runner, self.runner_reason = (runner, "given") if runner else choose_runner(config)
        self.client = ModelClient(token=report_token(config.home))
        self.deployments = Deployments(
            self.runner,
            self._spec,
            lambda version, url, log: smoke_test(self.client, version, url, log),
            make_huey(config.queue_url, config.home),
        )
        self.deployments.on_ready = self._move_alias
        self.predlog = PredictionLog(self.db, config.log_flush_seconds, payload_cap=config.log_payload_bytes,
                                     offload=native_thread())  # fmt: skip
        self.routes = routes_for(config)
        self.deployments.on_change = self.routes.clear
        self.metrics = self._metrics()
        self._open_alerts()  # rules, their schedule, webhooks and aidhub_alerts_firing (hub/alerts.py)
        self.collector = collector_for(background, self.client, self.predlog, self.metrics)
        self.watcher = Watcher(self.deployments, config.watch_seconds)
        self.drift_schedule = DriftSchedule(
            lambda v: self.drift(v.model.name, v.version),
            timedelta(seconds=config.drift_every_seconds),
            config.drift_after_calls,
        )
        self.housekeeping = Housekeeping(self.db, config.retention_days, config.drift_reference_rows)
        self.housekeeping.also(lambda: self.catalog.packages.remove_stale_uploads(config.upload_ttl_seconds))
        self._open_review()  # the review queue's selection pass (hub/review.py)
        if background:
            self._start_background()

    def _metrics(self) -> Metrics:
        metrics = Metrics(shared=self.config.metrics_dir)
        metrics.watch_log(lambda: self.predlog.queued, lambda: self.predlog.dropped)
        metrics.watch_versions(version_states)
        self.client.on_batch = metrics.observe_batch
        self.gauge_refresh = GaugeRefresh.started_if_shared(metrics)
        self.deployments.on_finished = lambda build, status, seconds: metrics.observe_build(
            build.version.model.name, build.version.version, status, seconds
        )
        return metrics

    def _start_background(self) -> None:
        """Adopt what runs, run builds, watch the servers and, unless switched off, drift."""
        self.catalog.packages.blobs.remove_stale_uploads()  # not in a web worker: another may upload
        if self.seed:
            seed_counters(self.metrics)
        self.metrics.watch_direct_calls(self.collector.dropped_total)
        self.deployments.reconcile(sole_worker=not self.config.queue_url)
        self.deployments.queue.start(self.config.build_workers)
        self.collector.start()
        if self.config.watch_seconds > 0:
            self.watcher.start()
        if self.config.drift_every_seconds > 0:
            self.drift_schedule.start()
        self.housekeeping.start()
        self._start_alerts()

    def _spec(self, version: VersionRow):
        spec = spec_for(version, self.catalog.packages.folder(version))
        return replace(spec, env={**spec.env, **self._server_env()})

    def _server_env(self) -> dict[str, str]:
        """What every server is told: the token it knows the hub by, and the payload cap of the log."""
        token = report_token(self.config.home)
        return {TOKEN_ENV: token, PAYLOAD_CAP_ENV: str(self.config.log_payload_bytes)}

    def release_connection(self) -> None:
        """Close this thread's (or greenlet's) database connection, if a request opened one."""
        if not self.db.is_closed():
            close_quietly()

    def close(self) -> None:
        self.gauge_refresh.stop()
        self.watcher.stop()
        self.collector.stop()
        self.drift_schedule.stop()
        self.housekeeping.stop()
        self.review_selection.stop()
        self._close_alerts()
        self.drift_runner.worker.close()
        self.deployments.close()
        self.predlog.close()

    # --- catalog ------------------------------------------------------------------------

    def model(self, name: str) -> dict:
        model = self.catalog.model(name)
        versions = self.catalog.versions(model)
        deployments = self.deployments.rows(versions)
        pairs = [(v, deployments.get(v.id)) for v in versions]
        card = present.model(model, self.catalog.aliases(model), pairs, self._alerts_firing(model.name))
        return {**card, "weights": self.catalog.alias_weights(model)}  # the aliases that split calls

    def version(self, name: str, ref: str | None = None) -> dict:
        row = self.catalog.resolve(name, ref)
        return {**self._version(row, detail=True), **self.version_lineage(row)}  # hub/lineage.py

    def model_metadata(self, name: str, ref: str | None = None) -> dict:
        """Schema, versions and readiness of the version calls to NAME[@REF] go to (for protocols)."""
        version = self.target(name, ref)
        numbers = [v.version for v in self.catalog.versions(version.model)]
        return present.model_metadata(version, numbers, self.deployments.serves(version))

    def _version(self, version: VersionRow, detail: bool = False) -> dict:
        aliases = self.catalog.aliases(version.model)
        return present.version(version, aliases, self.deployments.row(version), detail)

    # --- deployments --------------------------------------------------------------------

    def deploy(self, name: str, ref: str | None = None) -> dict:
        version = self.catalog.resolve(name, ref)
        build = self.deployments.deploy(version)
        return {**self._version(version), "build": self._build(build)}

    def undeploy(self, name: str, ref: str | None = None) -> dict:
        version = self.catalog.resolve(name, ref)
        self.collector.collect()  # what its server holds of the calls made straight to it
        self.deployments.undeploy(version)
        return self._version(version)

    def build(self, build_id: int) -> dict:
        return present.build(self.deployments.build(build_id), with_log=True)

    def cancel_build(self, build_id: int) -> dict:
        self.deployments.build(build_id)  # 404 for an unknown id
        self.deployments.cancel(build_id)
        return self.build(build_id)

    def _build(self, row) -> dict | None:
        """A build row the deployments just wrote, re-read with its version and model."""
        return present.build(self.deployments.build(row.id)) if row else None

    def logs(self, name: str, ref: str | None = None) -> dict:
        version = self.catalog.resolve(name, ref)
        build = self.deployments.latest_build(version)
        return present.logs(version, build, self.deployments.server_log(version))

    def status(self) -> dict:
        threads = len(self.deployments.queue.threads)  # a web worker's builds run in the supervisor
        return {
            "runner": self.runner.kind,
            "runner_reason": self.runner_reason,
            "database": self.config.database_url.split("://")[0],
            "home": str(self.config.home),
            "deployments": self.deployments.counts(),
            "storage": self.storage(),
            "queue": {
                "storage": (self.config.queue_url or "sqlite").split("://")[0],
                "pending": self.deployments.queue.pending(),
                "workers": threads if self.background else self.config.build_workers,
            },
        }

    def metrics_text(self) -> tuple[bytes, str]:
        """The Prometheus exposition of the hub's metrics: (body, content type)."""
        return self.metrics.render()

    def run_worker(self, workers: int) -> None:
        """`aid worker`: run builds from the queue on `workers` threads until `stop_worker()` or
        Ctrl-C; then close the hub."""
        self.deployments.queue.start(workers)
        try:
            while not self.deployments.queue.stopping.wait(1.0):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            self.close()

    def stop_worker(self) -> None:
        self.deployments.queue.stop()

    # --- predictions and feedback ---------------------------------------------------------

    def predict(
        self, name: str, ref: str | None, inputs, source: str = "hub", body: bytes | None = None,
        client: str = "", route: Route | None = None,
    ) -> dict:  # fmt: skip
        """Inputs are checked first (422), then whether the version serves (503). `body`: the request's
        JSON text when it is exactly {"inputs": ...}, which lets numpy check it (hub/serving.py).
        `client`: the caller's key, which keeps them on one version of a split alias (hub/aliases.py);
        `route`: the one `self.route` already picked for this call, when the caller needed its version."""
        route = route or self.route(name, ref, client)
        mirror = self._mirror_call  # copies the call to a shadow version (hub/shadow.py)
        return predict(self.client, self.predlog, self.metrics, route, inputs, source, body, mirror)

    def feedback(self, prediction_id: str, fields: dict, client: str = "") -> dict:
        """Feedback on one prediction; `client` (an address, a token's owner) gives one per prediction."""
        row = self._find_prediction(prediction_id)
        version = VersionRow.get_or_none(VersionRow.id == row.version_id)
        labels = tuple(version.manifest.get("labels") or ()) if version else ()
        target = {"version_id": row.version_id, "client": client, "labels": labels}
        reply = _record_feedback(prediction_id, row.model, fields, **target)
        self.metrics.observe_feedback(row.model, row.version, reply["correct"])
        return reply

    def model_feedback(self, name: str, fields: dict, ref: str | None = None, client: str = "") -> dict:
        """Feedback on a model generally (or a version): kept and shown, not counted toward accuracy."""
        version = self.catalog.resolve(name, ref) if ref else None
        model = self.catalog.model(name)
        labels = tuple(version.manifest.get("labels") or ()) if version else ()
        target = {"version_id": version.id if version else None, "client": client, "labels": labels}
        reply = _record_feedback(None, model.name, fields, **target)
        self.metrics.observe_feedback(model.name, version.version if version else None, reply["correct"])
        return reply

    def _find_prediction(self, prediction_id: str):
        if self.predlog.find_pending(prediction_id):
            self.predlog.flush()  # it was served moments ago and is still queued
        row = feedback_store.find_prediction(prediction_id)
        if row is None:  # a direct call, not collected yet (or stored by the round this one waited for)
            self.collector.collect()
            row = feedback_store.find_prediction(prediction_id)
        if row is None and not self.background:  # served by another web worker: in its queue still
            row = wait_for_prediction(prediction_id, self.config.log_flush_seconds)
        if row is None:
            raise NotFound(
                f"Prediction {prediction_id!r} does not exist. Use the id a predict call returned."
            )
        return row

    def leaderboard(self, task: str) -> dict:
        """Every version of every model for `task`, best first by the Wilson lower bound of accuracy."""
        versions = self.catalog.versions_for_task(normalise_task(task))
        deployments = self.deployments.rows(versions)
        rows = [
            present.leaderboard_row(
                version,
                scorecard.scorecard(version.id),
                deployments.get(version.id),
                driftruns.latest_run(version.id, done_only=True),
            )  # fmt: skip
            for version in versions
        ]
        rows.sort(key=present.leaderboard_key)
        return {"task": normalise_task(task), "versions": [{"rank": i, **r} for i, r in enumerate(rows, 1)]}

    def scorecard(
        self, name: str, ref: str | None = None, window: str = "24h", step: str | None = None
    ) -> dict:
        """NAME[@REF]'s scorecard over the last `window` ('24h'; 'all': all time) in steps of `step`
        (default: 48-96 points)."""
        span, every = scorecard_span(window, step)
        version = self.catalog.resolve(name, ref)
        card = scorecard.scorecard(version.id, window=span, step=every)
        latest = driftruns.latest_run(version.id, done_only=True)
        drift = present.drift_summary(latest, driftruns.result_of(latest)) if latest else None
        asked = {"window": window.strip()} if span else {}  # as written: 24h, not 1d
        return {"model": version.model.name, "version": version.version, **card, **asked, "drift": drift}


def _record_feedback(prediction_id: str | None, model: str, fields, **target) -> dict:
    """`target`: version_id, client and the model's labels."""
    with translated():
        row = feedback_store.record_feedback(prediction_id, model=model, **target, **_feedback_fields(fields))
    return present.feedback(row)


def _feedback_fields(fields: dict) -> dict:
    if not isinstance(fields, dict):
        raise Invalid('Feedback must be a JSON object such as {"correct": true, "rating": 5}.')
    known = {"correct", "label", "rating", "comment"}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise Invalid(f"Unknown feedback field(s) {', '.join(unknown)}; use {', '.join(sorted(known))}.")
    return {k: fields.get(k) for k in known}


def open_database(url: str):
    """Connect the one database, bind every table to it and bring its schema up to date."""
    with translated():
        db = connection.connect(url)
    connection.database.initialize(db)
    migrations.migrate(db)
    return db


def _limits(config: Config) -> Limits:
    return Limits(
        config.max_file_bytes, config.max_version_bytes, config.max_files, config.max_compression_ratio
    )
