"""Why the hub could not start, carried from the process that tried to the one that prints it.

A web worker writes it to an unnamed file it shares with gunicorn's master (`StartFailure`); the
supervisor of several web workers writes it as one JSON line on a pipe (cli/supervisor.py). Either
way `aid` prints it as one line; the traceback goes to the log file only."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hub.errors import HubError, database_errors, public


def failure_fields(error: Exception, log_file: Path) -> dict:
    """The error as a HubError's fields: a bug, or a failure the hub does not name yet, gets a
    message that says where the traceback is."""
    if isinstance(error, database_errors()):
        error = public(error)
    if not isinstance(error, HubError):
        what = f"{error.__class__.__name__}: {error}"
        error = HubError(f"The hub did not start: {what}. The traceback is in {log_file}.")
    return {"message": error.message, "errors": error.errors, "status": error.status}


def error_from(fields: dict) -> HubError:
    error = HubError(fields["message"], fields["errors"])
    error.status = fields["status"]
    return error


class StartFailure:
    """Why the worker could not open the hub, in an unnamed file that master and worker share."""

    def __init__(self, log_file: Path) -> None:
        self.file = tempfile.TemporaryFile()
        self.log_file = log_file

    def record(self, error: Exception) -> None:
        """One line; several web workers that failed at once each add theirs (the file's offset is
        shared, so the lines do not overlap) and the first is told."""
        self.file.write(json.dumps(failure_fields(error, self.log_file)).encode() + b"\n")
        self.file.flush()

    def error(self) -> HubError | None:
        self.file.seek(0)
        lines = self.file.read().splitlines()
        return error_from(json.loads(lines[0])) if lines else None
