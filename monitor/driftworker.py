"""The drift worker: the child process in which drift jobs run (`monitor.drift`, Evidently).

`python -m monitor.driftworker JOB.json OUT_DIR` runs one job. `python -m monitor.driftworker --serve`
stays up and runs job after job: one JSON request a line on stdin, {"job": path, "out": folder}, one
JSON reply a line on stdout, {"ok": true} or {"ok": false, "error": "..."}; Evidently is imported once,
at start, instead of for every run (seconds each time). Each job writes OUT/result.json and the reports
(OUT/report.html, OUT/report-outputs.html). A job that is wrong (a reference column that is not an
input, say) is answered with its error; the worker goes on with the next.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path

from monitor.drift import run_job

CALL_FILES = {  # a job's JSON-lines files of logged calls -> the lists of run_job they fill
    "reference_calls": ("reference_inputs", "reference_outputs"),
    "current_calls": ("current_inputs", "current_outputs"),
}


def run(job_path: str, out: str) -> None:
    """Run one job file; ValueError names what is wrong with it."""
    job = json.loads(Path(job_path).read_text(encoding="utf-8"))
    _read_calls(job, Path(job_path).parent)
    result, pages = run_job(job)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    for name, page in pages.items():
        _write(folder / name, page)
    _write(folder / "result.json", json.dumps(result, indent=2) + "\n")


def _read_calls(job: dict, folder: Path) -> None:
    """The logged calls the hub wrote beside the job (one {"inputs", "outputs"} a line, the stored JSON
    as it is: the parsing happens here, not in the hub), into the job's lists; a line that does not
    parse (a model server's record cut short) is left out. Answers already in the job are kept."""
    for key, (inputs_key, outputs_key) in CALL_FILES.items():
        if key not in job:
            continue
        inputs, outputs = [], []
        with (folder / Path(job.pop(key)).name).open(encoding="utf-8") as f:
            for line in f:
                try:
                    call = json.loads(line)
                    pair = call["inputs"], call["outputs"]
                except (ValueError, KeyError, TypeError):
                    continue
                inputs.append(pair[0])
                outputs.append(pair[1])
        job[inputs_key] = inputs
        job.setdefault(outputs_key, outputs)


def _write(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)


def answer(request: str) -> dict:
    """The reply to one request line."""
    try:
        fields = json.loads(request)
        run(fields["job"], fields["out"])
    except (ValueError, KeyError, TypeError) as e:
        return {"ok": False, "error": str(e)}
    except Exception as e:  # a bug or Evidently failing: say so, keep serving
        traceback.print_exc(file=sys.stderr)
        return {"ok": False, "error": f"{e.__class__.__name__}: {e}"}
    return {"ok": True}


def serve(requests=sys.stdin, replies=sys.stdout) -> int:
    import evidently  # noqa: F401 - loaded once, before the first job asks for it

    os.nice(10)  # batch work: the hub and the model servers it shares the cores with come first
    for line in requests:
        if line.strip():
            replies.write(json.dumps(answer(line)) + "\n")
            replies.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--serve"]:
        return serve()
    if len(args) != 2:
        sys.stderr.write("usage: python -m monitor.driftworker JOB.json OUT_DIR | --serve\n")
        return 2
    try:
        run(*args)
    except ValueError as e:
        sys.stderr.write(f"{e}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
