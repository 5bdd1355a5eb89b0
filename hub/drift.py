"""Drift runs of a version: its recent logged inputs and outputs against its reference, compared by
Evidently in a child process (`python -m monitor.driftworker --serve`, kept up between runs), so that
neither the web process nor the build workers ever import it. The run, its per-column verdicts and
its HTML report (a blob) are stored.

The reference is the package's `reference_data` when it has one, else the version's first N logged
calls (which the window then leaves out). Outputs are compared with the model's answers on the reference
rows (asked of the serving version in one batched call), else with its first N logged answers.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from hub import present
from hub.errors import HubError, Invalid, NotFound
from monitor import driftruns
from monitor.tables import DriftRun
from registry.blobs import BlobStore
from registry.models import VersionRow
from vocab.states import DriftRunStatus
from vocab.times import parse_duration, utcnow

PACKAGE, FIRST_CALLS = "package", "first predictions"
Answer = Callable[[dict], dict]
TIMEOUT_S = 600


def parse_window(text: str) -> timedelta:
    """'24h' -> 24 hours; minutes (m), hours (h) or days (d)."""
    try:
        return parse_duration(text)
    except ValueError as e:
        message = f"Window {text!r} is not a duration; write minutes, hours or days, e.g. 90m, 24h or 7d."
        raise Invalid(message) from e


class DriftRunner:
    def __init__(self, blobs: BlobStore, reference_rows: int, max_rows: int, min_rows: int, log: Path):
        self.blobs = blobs
        self.worker = DriftWorker(log)
        self.reference_rows = reference_rows  # the first N calls, when a package has no reference
        self.max_rows = max_rows  # the newest calls of the window at most
        self.min_rows = min_rows  # fewer calls than this: no run

    def run(self, version: VersionRow, package_dir: Path, window: timedelta, answer: Answer) -> DriftRun:
        """Compare the calls of the last `window` with the reference; the stored run (done or failed).
        `answer(inputs)` calls the version (for its answers on the reference rows)."""
        until = utcnow()
        span = (until - window, until)
        reference = self._reference_csv(version, package_dir)
        first = [] if reference else driftruns.first_calls(version.id, self.reference_rows)
        after = first[-1][0] if first else None
        current = driftruns.recent_calls(version.id, *span, self.max_rows, after)
        self._check_enough(version, len(current), len(first), reference, window)
        job = self._job(version, reference)
        calls = {"current_calls": current}
        if reference:
            job["reference_outputs"] = _answers(reference, version.inputs, answer)
        else:
            calls["reference_calls"] = first
        return self._compare(version.id, span, PACKAGE if reference else FIRST_CALLS, job, calls)

    def _reference_csv(self, version: VersionRow, package_dir: Path) -> Path | None:
        name = version.manifest.get("reference_data")
        return package_dir / name if name and (package_dir / name).is_file() else None

    def _check_enough(self, version, current: int, first: int, reference, window: timedelta) -> None:
        name = f"{version.model.name}@{version.version}"
        if reference is None and first < self.reference_rows:
            raise Invalid(
                f"{name} has no reference data and {first} logged calls; its first "
                f"{self.reference_rows} become the reference. Send more calls, or publish a version with "
                "reference_data."
            )
        if current < self.min_rows:
            raise Invalid(
                f"{name} has {current} logged calls in the last {_say(window)}; at least "
                f"{self.min_rows} are needed for a drift run. Widen --window or send more calls."
            )

    def _job(self, version: VersionRow, csv_path: Path | None) -> dict:
        return {
            **({"reference_csv": str(csv_path)} if csv_path else {}),
            "inputs": version.inputs, "outputs": version.outputs,
            "labels": version.manifest.get("labels") or [], "min_rows": self.min_rows,
        }  # fmt: skip

    def _compare(self, version_id: int, span, reference: str, job: dict, calls: dict) -> DriftRun:
        """Run `job` in the worker, the logged `calls` beside it as JSON lines of their stored text:
        parsing and re-encoding 10,000 image inputs here took seconds of the hub's CPU."""
        with tempfile.TemporaryDirectory(prefix="aidhub-drift-") as folder:
            out = Path(folder)
            for key, rows in calls.items():
                _write_calls(out / f"{key}.jsonl", rows)
                job[key] = f"{key}.jsonl"
            (out / "job.json").write_text(json.dumps(job), encoding="utf-8")
            error = self.worker.run(out / "job.json", out)
            if error:
                return driftruns.record_run(
                    version_id, span, reference, status=DriftRunStatus.FAILED, error=error
                )
            result = json.loads((out / "result.json").read_text(encoding="utf-8"))
            report = self._store_report(out / "report.html")
        inputs = result["inputs"]
        return driftruns.record_run(
            version_id, span, reference, status=DriftRunStatus.DONE, share=inputs["share"],
            drifted=inputs["drifted"], result=result, report=report,
        )  # fmt: skip

    def _store_report(self, path: Path) -> str | None:
        if not path.is_file():
            return None
        with path.open("rb") as f:
            return self.blobs.put_stream(f)[0]

    def report(self, run: DriftRun) -> str:
        """The run's Evidently HTML report."""
        return self.blobs.path(run.report).read_text(encoding="utf-8")


class DriftWorker:
    """One long-lived child process, `python -m monitor.driftworker --serve`, that runs the drift jobs
    one at a time: Evidently is imported once, not for every run. Started at the first job; started
    again when it died; killed when a job takes longer than TIMEOUT_S. Its stderr goes to `log`."""

    def __init__(self, log: Path):
        self.log = log
        self.proc: subprocess.Popen | None = None
        self.lock = threading.Lock()

    def run(self, job: Path, out: Path) -> str | None:
        """Run one job; None when it is done, else what went wrong."""
        request = json.dumps({"job": str(job), "out": str(out)}) + "\n"
        with self.lock:
            for _ in range(2):  # a worker that died since the last job is replaced once
                reply = self._ask(request)
                if reply is not None:
                    return None if reply.get("ok") else str(reply.get("error"))
                self.close()
        return f"The drift worker stopped or took longer than {TIMEOUT_S} s; see {self.log}."

    def _ask(self, request: str) -> dict | None:
        proc = self._started()
        timer = threading.Timer(TIMEOUT_S, proc.kill)
        timer.start()
        try:
            proc.stdin.write(request)
            proc.stdin.flush()
            line = proc.stdout.readline()
        except OSError:
            line = ""
        finally:
            timer.cancel()
        return json.loads(line) if line.strip() else None

    def _started(self) -> subprocess.Popen:
        if self.proc is None or self.proc.poll() is not None:
            self.log.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log, "ab") as err:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "monitor.driftworker", "--serve"], stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, stderr=err, text=True, env={**os.environ, "DO_NOT_TRACK": "1"},
                )  # fmt: skip
        return self.proc

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


def _write_calls(path: Path, calls: list[driftruns.Call]) -> None:
    """One `{"inputs": ..., "outputs": ...}` line per call, from the stored JSON as it is (the stored
    payloads hold no raw newline; a line that does not parse is left out by the worker)."""
    with path.open("w", encoding="utf-8") as f:
        f.writelines(f'{{"inputs":{inputs},"outputs":{outputs or "{}"}}}\n' for _, inputs, outputs in calls)


def _answers(reference: Path, schema: dict, answer: Answer) -> list[dict]:
    """The model's answers on the reference rows ([] when it cannot be asked: an input without a batch
    dimension, or a version that does not serve)."""
    inputs = reference_inputs(reference, schema)
    if inputs is None:
        return []
    try:
        return [answer(inputs)]
    except HubError:
        return []


def reference_inputs(path: Path, schema: dict) -> dict | None:
    """The rows of a reference CSV (columns <input> / <input>.<i>) as one batched call's inputs; None
    when an input is not a batch of scalars ([-1]) or of small vectors ([-1, k])."""
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    inputs = {}
    for name, spec in schema.items():
        shape, kind = spec.get("shape") or [], _parser(spec.get("dtype"))
        if shape == [-1] and rows and name in rows[0]:
            inputs[name] = [kind(row[name]) for row in rows]
        elif len(shape) == 2 and shape[0] == -1 and shape[1] > 0 and rows and f"{name}.0" in rows[0]:
            inputs[name] = [[kind(row[f"{name}.{i}"]) for i in range(shape[1])] for row in rows]
        else:
            return None
    return inputs


def _parser(dtype: str | None):
    if dtype and dtype.startswith(("int", "uint")):
        return lambda text: int(float(text))
    return float if dtype and dtype.startswith("float") else str


def _say(window: timedelta) -> str:
    """24 hours -> '1 day', 25 hours -> '25 hours', 90 minutes -> '90 minutes'."""
    minutes = int(window.total_seconds() // 60)
    unit, size = next((u, n) for u, n in (("day", 1440), ("hour", 60), ("minute", 1)) if minutes % n == 0)
    count = minutes // size
    return f"{count} {unit}{'' if count == 1 else 's'}"


class DriftUseCases:
    """The Hub's drift use cases (a mixin: it uses the Hub's catalog, log, routes, runner and metrics)."""

    def drift(self, name: str, ref: str | None = None, window: str = "24h") -> dict:
        """Run drift now for NAME[@REF] over the last `window` (e.g. 24h); the stored run."""
        version = self.catalog.resolve(name, ref)
        span = parse_window(window)
        self.predlog.flush()  # the calls served until now, some of them still queued, count

        def answer(inputs: dict) -> dict:
            route = self.route(name, version.version)
            if route.error:
                raise route.error
            return self.client.predict(route.url, inputs)

        run = self.drift_runner.run(version, self.catalog.packages.folder(version), span, answer)
        reply = present.drift_run(version, run, driftruns.result_of(run))
        if run.status == DriftRunStatus.DONE:
            drifted = sum(1 for c in reply["inputs"]["columns"] if c["drifted"])
            self.metrics.observe_drift(version.model.name, version.version, run.share, drifted)
        return reply

    def drift_history(self, name: str, ref: str | None = None) -> dict:
        """The latest drift run of NAME[@REF] (None before the first) and the runs before it."""
        version = self.catalog.resolve(name, ref)
        runs = [present.drift_run(version, r, driftruns.result_of(r)) for r in driftruns.runs(version.id)]
        return {"model": version.model.name, "version": version.version, "latest": runs[0] if runs else None,
                "runs": runs}  # fmt: skip

    def drift_report(self, name: str, run_id: int) -> str:
        """The Evidently HTML report of drift run `run_id` of model NAME (any version)."""
        model = self.catalog.model(name)
        for version in self.catalog.versions(model):
            run = driftruns.run_by_id(version.id, run_id)
            if run is not None and run.report:
                return self.drift_runner.report(run)
        raise NotFound(
            f"Model {name!r} has no drift report {run_id}. 'aid drift {name} --json' lists its runs."
        )
