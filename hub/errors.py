"""User-facing errors. Each carries an HTTP status; only cli/ and web/ catch them."""

from __future__ import annotations


class HubError(Exception):
    status = 500

    def __init__(self, message: str, errors: list[str] | None = None):
        super().__init__(message)
        self.message = message
        self.errors = errors or []

    def to_dict(self) -> dict:
        return {"ok": False, "error": self.message, "errors": self.errors, "status": self.status}


class Invalid(HubError):
    status = 400


class NotFound(HubError):
    status = 404


class Conflict(HubError):
    status = 409


class TooLarge(HubError):
    status = 413


class BadInput(HubError):
    """A prediction input that does not fit the model's schema."""

    status = 422


class Unavailable(HubError):
    status = 503


class ModelFailed(HubError):
    """The model's server answered with an error or did not answer."""

    status = 502
