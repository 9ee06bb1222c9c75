"""The one application error class every service raises for a domain rule it refuses."""

from __future__ import annotations


class ApplicationError(Exception):
    """A refusal the user can act on: `message` says what and why, `errors` names fields or rows.

    The API turns it into ``{"message": ..., "errors": {...}}`` with `status` (400 by default, 409 for
    a stale plan version); management commands print it and exit non-zero.
    """

    status = 400

    def __init__(self, message: str, errors: dict | None = None, *, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.errors = errors or {}
        if status is not None:
            self.status = status


class StaleVersionError(ApplicationError):
    """The plan changed since the client read it: reload and try again."""

    status = 409
