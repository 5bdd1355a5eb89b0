"""User-facing errors, and the one place where the lower packages' exceptions become them.

Each error carries an HTTP status; only cli/ and web/ catch them. The registry, the runners, the
monitor and the database raise their own exceptions; `public()` maps them, and use cases that call
into those packages do so inside `with translated():`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class HubError(Exception):
    status = 500
    retry_after: int | None = None  # seconds, sent as Retry-After when set

    def __init__(self, message: str, errors: list[str] | None = None):
        super().__init__(message)
        self.message = message
        self.errors = errors or []

    def to_dict(self) -> dict:
        return {"ok": False, "error": self.message, "errors": self.errors, "status": self.status}


class Invalid(HubError):
    status = 400


class SettingInvalid(Invalid, ValueError):
    """A bad AIDHUB_* setting or flag; the message names the variable and a valid value."""


class Unauthorized(HubError):
    """No credentials, or ones the hub does not know."""

    status = 401


class Forbidden(HubError):
    """Known credentials without the right to do this."""

    status = 403


class NotFound(HubError):
    status = 404


class Conflict(HubError):
    status = 409


class TooLarge(HubError):
    status = 413


class Busy(Conflict):
    """Someone else is doing the same thing right now; try again shortly."""

    retry_after = 1


class InsufficientStorage(HubError):
    status = 507


class BadInput(HubError):
    """A prediction input that does not fit the model's schema."""

    status = 422


class Unavailable(HubError):
    status = 503


class DatabaseUnavailable(Unavailable):
    """The hub's database does not answer; what does not need it (predictions) goes on."""

    retry_after = 5


class ModelFailed(HubError):
    """The model's server answered with an error or did not answer."""

    status = 502


LIMIT_SETTINGS = {
    "file": "AIDHUB_MAX_FILE_SIZE",
    "version": "AIDHUB_MAX_VERSION_SIZE",
    "files": "AIDHUB_MAX_FILES",
    "ratio": "AIDHUB_MAX_COMPRESSION_RATIO",
}


def lower_errors() -> tuple[type[Exception], ...]:
    """The base exceptions of the lower packages (imported here, not at the top, so that the CLI,
    which catches HubErrors, does not load the database layer with them)."""
    from database.connection import DatabaseUrlInvalid
    from monitor.errors import MonitorError
    from registry.errors import RegistryError
    from runners.base import RunnerError

    return RegistryError, MonitorError, RunnerError, DatabaseUrlInvalid, *database_errors()


def database_errors() -> tuple[type[Exception], ...]:
    """What the database layer raises when the database does not answer (see `public`)."""
    from database.connection import UNAVAILABLE

    return UNAVAILABLE


def public(error: Exception) -> HubError:
    """The user-facing error for an exception of a lower package."""
    from database.connection import DatabaseUrlInvalid
    from monitor.errors import MonitorError
    from monitor.feedback import FeedbackInvalid, LabelUnknown, PredictionNotFound
    from registry.blobs import BlobTooLarge, DiskFull
    from registry.errors import RegistryError
    from registry.files import LimitExceeded
    from registry.manifest import PackageInvalid
    from registry.uploads import BlobCorrupt, OffsetMismatch, UploadBusy
    from runners.base import RunnerError

    match error:
        case HubError():
            return error
        case _ if isinstance(error, database_errors()):
            return _database_unavailable(error)
        case PackageInvalid():
            return Invalid("The package is invalid.", [str(p) for p in error.problems])
        case BlobTooLarge() | LimitExceeded() | UploadBusy() | OffsetMismatch() | BlobCorrupt():
            return _upload_error(error)
        case FeedbackInvalid():
            return Invalid(str(error))
        case LabelUnknown():
            return BadInput(str(error))
        case PredictionNotFound():
            return NotFound(str(error))
        case DatabaseUrlInvalid():
            return SettingInvalid(f"AIDHUB_DATABASE_URL: {error}")
        case RunnerError():
            return Unavailable(str(error), [error.log_tail] if error.log_tail else [])
        case DiskFull():
            return InsufficientStorage(f"The hub's disk is full ({error}); free space on it, then try again.")
        case RegistryError() | MonitorError():
            return Invalid(str(error))
    raise TypeError(f"{error!r} is not an error of a lower package")


def _database_unavailable(error: Exception) -> DatabaseUnavailable:
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return DatabaseUnavailable(
        f"The hub's database does not answer ({first}). Try again in a few seconds; if it lasts, "
        "check the database that AIDHUB_DATABASE_URL names (its server, or its file)."
    )


def _upload_error(error: Exception) -> HubError:
    from registry.files import LimitExceeded
    from registry.uploads import BlobCorrupt, OffsetMismatch, UploadBusy

    match error:
        case LimitExceeded():
            return TooLarge(f"{error} Shrink the package, or raise {LIMIT_SETTINGS[error.kind]} on the hub.")
        case UploadBusy():
            return Busy(str(error))
        case BlobCorrupt():
            return BadInput(str(error))
        case OffsetMismatch():
            return Conflict(str(error))
    return TooLarge(f"{error} Shrink the file or raise AIDHUB_MAX_FILE_SIZE on the hub.")


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Raise the lower packages' exceptions inside the block as their user-facing errors."""
    try:
        yield
    except lower_errors() as e:
        raise public(e) from e
