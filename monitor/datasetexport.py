"""The dataset export's child process: `python -m monitor.datasetexport` reads one job (JSON) on stdin,
writes the dataset file the job names and answers one JSON line on stdout: {"rows", "labels", "sha256",
"size"}, or {"error": "..."} with exit status 1.

An export of a million predictions is most of a minute of CPU (JSON parsing, Parquet encoding). In the
hub's process it would hold a gevent web worker, and every request that worker serves, for that long;
in a child the hub's greenlet only waits on a pipe, and pyarrow never loads in the hub. The database
URL comes in the job on stdin, never on the command line (where `ps` shows it).
"""

from __future__ import annotations

import hashlib
import json
import sys
import traceback
from datetime import datetime
from pathlib import Path

from database.connection import connect, database
from monitor.datasetfiles import write_dataset
from monitor.datasets import Plan, dataset_rows


def run(job: dict) -> dict:
    """Write the job's dataset file; its rows, labelled rows, sha256 and size."""
    db = connect(job["database_url"])
    database.initialize(db)
    try:
        plan = Plan.of(job["inputs"], job["outputs"])
        since = datetime.fromisoformat(job["since"]) if job.get("since") else None
        chunks = dataset_rows(plan, job["version_id"], since, bool(job.get("labelled_only")))
        path = Path(job["path"])
        rows, labels = write_dataset(path, job["format"], plan.columns(), chunks)
    finally:
        db.close()
    with path.open("rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    return {"rows": rows, "labels": labels, "sha256": digest, "size": path.stat().st_size}


def main() -> int:
    try:
        reply = run(json.loads(sys.stdin.read()))
    except Exception as e:  # said on stdout for the hub, with the traceback on stderr for its log
        traceback.print_exc(file=sys.stderr)
        reply = {"error": f"{e.__class__.__name__}: {e}", "errno": getattr(e, "errno", None)}
    sys.stdout.write(json.dumps(reply) + "\n")
    return 1 if "error" in reply else 0


if __name__ == "__main__":
    sys.exit(main())
