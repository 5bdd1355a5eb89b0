"""The Hub's dataset use cases: export a version's logged predictions with their feedback as a snapshot
(a content-addressed, immutable file in a blob store of its own, recorded with its rows, labels, schema and
filter), list a model's snapshots, send one back as stored or as reference data (docs/datasets.md).

Who may: exporting and reading snapshots expose the logged inputs, so every use case here needs the
`publish` scope (web/datasets.py) and the model's owner (or an admin)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from hub.auth import Principal
from hub.errors import HubError, Invalid, NotFound, translated
from monitor import datasetfiles
from monitor.datasets import DatasetSnapshot, Plan, find_snapshots, save_snapshot, snapshots
from registry.blobs import DISK_FULL, BlobStore, disk_full_raised
from registry.models import VersionRow
from vocab.datasets import FORMATS, SUFFIXES
from vocab.times import isoformat, parse_duration, utcnow

log = logging.getLogger(__name__)
EXPORT_TIMEOUT_S = 3600
MEDIA_TYPES = datasetfiles.MEDIA_TYPES
DIGEST_RE = re.compile(r"(?:sha256:)?([0-9a-f]{8,64})")


def parse_format(fmt: object) -> str:
    if fmt not in FORMATS:
        raise Invalid(f"format {fmt!r} is not one of {', '.join(FORMATS)}; e.g. --format parquet.")
    return str(fmt)


def parse_since(since: object) -> datetime | None:
    """The start of the `since` window (e.g. '7d': seven days ago); None for all predictions."""
    if since in (None, "", "all"):
        return None
    try:
        return utcnow() - parse_duration(str(since))
    except ValueError as e:
        raise Invalid(f"since {since!r} is not a duration; use e.g. 90m, 24h, 7d, or all.") from e


def parse_digest(digest: str) -> str:
    """'sha256:<hex>' or '<hex>' (at least 8 digits) -> the hex part."""
    match = DIGEST_RE.fullmatch(str(digest).strip().lower())
    if match is None:
        raise Invalid(
            f"{digest!r} is not a snapshot digest; give sha256:<hex digits> (8 or more) as "
            "'aid dataset list NAME' shows it."
        )
    return match.group(1)


def snapshot_dict(row: DatasetSnapshot, version: VersionRow) -> dict:
    digest = f"sha256:{row.digest}"
    return {
        "digest": digest, "model": version.model.name, "version": version.version, "format": row.format,
        "rows": row.rows, "labels": row.labels, "size": row.size, "columns": row.columns,
        "filter": row.filter, "created_at": isoformat(row.created_at),
        "filename": f"{version.model.name.replace('/', '-')}-{version.version}-{row.digest[:12]}"
        f"{SUFFIXES[row.format]}",
        "url": f"/api/v1/datasets/{digest}", "reference_url": f"/api/v1/datasets/{digest}/reference.csv",
    }  # fmt: skip


def run_export(job: dict) -> dict:
    """Run one export job in `python -m monitor.datasetexport` (under gevent, waiting on it yields)."""
    done = subprocess.run(
        [sys.executable, "-m", "monitor.datasetexport"], input=json.dumps(job), capture_output=True,
        text=True, timeout=EXPORT_TIMEOUT_S, env={**os.environ, "DO_NOT_TRACK": "1"},
    )  # fmt: skip
    try:
        reply = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        reply = {"error": f"the export process ended with status {done.returncode} and no answer"}
    if "error" in reply:
        log.error("dataset export failed: %s\n%s", reply["error"], done.stderr[-3000:])
        if reply.get("errno") in DISK_FULL:
            raise OSError(reply["errno"], os.strerror(reply["errno"]))  # DiskFull, by disk_full_raised
        raise HubError(f"The dataset export failed: {reply['error']}. The hub's log has the details.")
    return reply


def remove_abandoned(folder: Path) -> None:
    """Delete temp files of exports older than any export may run: a hub killed mid-export left them."""
    cutoff = time.time() - EXPORT_TIMEOUT_S
    for path in folder.glob("upload-dataset-*"):
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_mtime < cutoff:
                path.unlink()


class DatasetUseCases:
    """Mixed into Hub: uses its config, catalog and prediction log."""

    @property
    def dataset_blobs(self) -> BlobStore:
        """Snapshot files, content-addressed like the package blobs but in a store of their own
        ($AIDHUB_HOME/datasets): the package blobs' clean-up (blobs no version holds) never sees them."""
        return BlobStore(Path(self.config.home) / "datasets")

    def export_dataset(
        self, name: str, ref: str | None = None, since: object = None, labelled_only: object = False,
        fmt: object = "parquet",
    ) -> tuple[dict, bool]:  # fmt: skip
        """Snapshot NAME[@REF]'s predictions (from `since` ago, only those with a label when
        `labelled_only`); (the snapshot, whether it is new: the same content has the same digest)."""
        fmt, start = parse_format(fmt), parse_since(since)
        if not isinstance(labelled_only, bool):
            raise Invalid(f"labelled_only must be true or false, not {labelled_only!r}.")
        version = self.catalog.resolve(name, ref)
        self.predlog.flush()  # calls served until now, some still queued, belong in the export
        with translated():
            plan = Plan.of(version.inputs, version.outputs)  # a layout that cannot be: said before the child
            job = {"database_url": self.config.database_url, "version_id": version.id,
                   "inputs": version.inputs, "outputs": version.outputs, "since": start and start.isoformat(),
                   "labelled_only": labelled_only, "format": fmt}  # fmt: skip
            written = self._write_blob(job)
            filter_ = {"version": version.version, "since": since or "all", "from": isoformat(start),
                       "labelled_only": labelled_only}  # fmt: skip
            row, created = save_snapshot(
                version.id, written["sha256"], format=fmt, rows=written["rows"], labels=written["labels"],
                size=written["size"], columns=[c.to_dict() for c in plan.columns()], filter=filter_,
            )  # fmt: skip
        return snapshot_dict(row, version), created

    def _write_blob(self, job: dict) -> dict:
        """Have a child process write the file beside the blobs (monitor/datasetexport.py), then adopt it
        under its sha256; the child's {"rows", "labels", "sha256", "size"}."""
        blobs = self.dataset_blobs
        with disk_full_raised(blobs.root):
            blobs.tmp.mkdir(parents=True, exist_ok=True)
            remove_abandoned(blobs.tmp)
            with tempfile.NamedTemporaryFile(dir=blobs.tmp, prefix="upload-dataset-", delete=False) as f:
                path = Path(f.name)
            try:
                written = run_export({**job, "path": str(path)})
                blobs.adopt(path, written["sha256"])
            finally:
                path.unlink(missing_ok=True)
        return written

    def datasets(self, name: str) -> dict:
        """The snapshots of every version of model NAME, newest first."""
        model = self.catalog.model(name)
        versions = {v.id: v for v in self.catalog.versions(model)}
        with translated():
            rows = snapshots(list(versions))
        return {"model": model.name, "datasets": [snapshot_dict(r, versions[r.version_id]) for r in rows]}

    def dataset_file(self, digest: str, principal: Principal) -> tuple[Path, dict]:
        """(where the snapshot's bytes are, the snapshot) for its digest (or a unique prefix of it)."""
        row, version = self._snapshot(digest, principal)
        return self.dataset_blobs.path(row.digest), snapshot_dict(row, version)

    def dataset_reference(self, digest: str, principal: Principal) -> tuple[dict, Iterator[str]]:
        """(the snapshot, its input columns as a reference-data CSV, streamed in pieces)."""
        row, version = self._snapshot(digest, principal)
        path = self.dataset_blobs.path(row.digest)
        return snapshot_dict(row, version), datasetfiles.reference_csv(path, row.format, row.columns)

    def _snapshot(self, digest: str, principal: Principal) -> tuple[DatasetSnapshot, VersionRow]:
        prefix = parse_digest(digest)
        with translated():
            found = find_snapshots(prefix)
        if len({r.digest for r in found}) > 1:
            shown = ", ".join(sorted({f"sha256:{r.digest[:16]}" for r in found}))
            raise Invalid(
                f"The digest {digest!r} is the start of several snapshots ({shown}); give more of it."
            )
        mine = [(r, v) for r in found if (v := VersionRow.get_or_none(id=r.version_id)) is not None]
        mine = [(r, v) for r, v in mine if self._may_read(principal, v)]
        if not mine:
            raise NotFound(
                f"No dataset snapshot {digest!r} of yours. 'aid dataset list NAME' lists a model's snapshots."
            )
        return mine[0]

    def _may_read(self, principal: Principal, version: VersionRow) -> bool:
        model = version.model
        return principal.admin or not model.owner or model.owner == principal.owner
