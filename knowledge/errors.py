"""Errors shared by every hybridesk package.

Each error carries a stable machine-readable ``code`` and a ``message`` a person can act on.
They are mapped to HTTP responses in exactly one place (``bot.web.errors``) and to CLI
messages in another (``bot.cli``).  ``knowledge`` is the lowest package in the import
graph, so the base class lives here and ``bot`` / ``models`` import it.
"""

from __future__ import annotations


class HybrideskError(Exception):
    """Base class: ``code`` names the problem, ``message`` says how to fix it."""

    code = "error"
    http_status = 400

    def __init__(self, message: str, *, code: str | None = None, **fields: object) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.fields = fields

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {"code": self.code, "message": self.message}
        if self.fields:
            data["fields"] = {k: v for k, v in self.fields.items() if v is not None}
        return data


class InvalidInput(HybrideskError):
    code = "invalid_input"
    http_status = 422


class NotFound(HybrideskError):
    code = "not_found"
    http_status = 404


class Forbidden(HybrideskError):
    code = "forbidden"
    http_status = 403


class Conflict(HybrideskError):
    code = "conflict"
    http_status = 409


class TooLarge(HybrideskError):
    code = "too_large"
    http_status = 413


class Unavailable(HybrideskError):
    """A dependency (database, model, index) is not reachable right now."""

    code = "unavailable"
    http_status = 503


class ConfigurationError(HybrideskError):
    code = "configuration"
    http_status = 500
