"""Typed errors of the remote APIs (Business Central, Dataverse, Microsoft Graph, the identity platform).

Each error says which API call failed and, when known, which entity set and record, with the API's own error
code and message, so a task alert can tell the user what to fix.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An API answered with an error (or could not be reached).

    :param message: the API's error message (``error.message`` of the body) or a description.
    :param status: HTTP status code, ``None`` when no answer came (connection failure).
    :param code: the API's error code (e.g. ``Request_EntityChanged``, ``0x80040217``).
    :param entity_set: the entity set of the call, when known.
    :param record_id: the record key of the call, when known.
    :param detail: the error's instance annotations as the API sent them, e.g. Dataverse's
        ``@Microsoft.PowerApps.CDS.TraceText`` and ``@Microsoft.PowerApps.CDS.ErrorDetails.*`` (Web API docs,
        "Include more details with errors"); empty when there were none.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        entity_set: str | None = None,
        record_id: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        self.message = message
        self.status = status
        self.code = code
        self.entity_set = entity_set
        self.record_id = record_id
        self.detail = dict(detail or {})
        super().__init__(str(self))

    @property
    def detail_text(self) -> str:
        """The annotations as ``name: value`` lines (``@Microsoft.PowerApps.CDS.`` left out), for a log entry."""
        return "\n".join(f"{k.removeprefix('@Microsoft.PowerApps.CDS.')}: {v}" for k, v in self.detail.items())

    def __str__(self) -> str:
        where = self.entity_set or ""
        if self.record_id:
            where = f"{where}({self.record_id})"
        parts = [f"HTTP {self.status}" if self.status else "no answer"]
        if self.code:
            parts.append(self.code)
        prefix = " ".join(parts)
        return f"{prefix} on {where}: {self.message}" if where else f"{prefix}: {self.message}"

    @property
    def is_systemic(self) -> bool:
        """True when the error is not about one record (auth, throttling, outage): retrying records won't help."""
        return False


class MissingEndpointError(ValueError):
    """An option needs an entity set that the standard API v2.0 lacks and the connection's ``extra.endpoints``
    does not route to a custom API page; the message names the entity set, what needs it and how to set it."""


class AuthenticationError(ApiError):
    """401/403 from an API, or the token endpoint refused the client credentials."""

    @property
    def is_systemic(self) -> bool:
        return True


class MalformedResponseError(ApiError):
    """The API answered with a body that is not what its contract promises (not JSON, no ``value``, a batch
    answer that cannot be split into its parts)."""


class NotFoundError(ApiError):
    """404: the record (or entity set) does not exist."""


class ConflictError(ApiError):
    """409/412: a stale ETag (the record changed since it was read) or a duplicate key."""


class ThrottledError(ApiError):
    """429 still answered after every retry (service protection limits)."""

    @property
    def is_systemic(self) -> bool:
        return True


class TransientError(ApiError):
    """5xx or a connection failure still there after every retry."""

    @property
    def is_systemic(self) -> bool:
        return True


def error_for_status(status: int | None, body: Any, **context: Any) -> ApiError:
    """Build the typed error for an HTTP status and an API error body.

    :param status: HTTP status, or ``None`` for a connection failure.
    :param body: the decoded JSON body (``{"error": {"code", "message"}}``), text, or ``None``.
    :param context: ``entity_set`` / ``record_id`` to name in the message.
    :return: an :class:`ApiError` subclass matching the status.
    """
    code: str | None = None
    message = ""
    detail: dict[str, Any] = {}
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            code = str(err["code"]) if err.get("code") is not None else None
            message = str(err.get("message") or "")
            detail = {k: v for k, v in err.items() if k.startswith("@")}
        elif isinstance(err, str):  # identity platform: {"error": "invalid_client", "error_description": ...}
            code = err
            message = body.get("error_description") or ""
    elif isinstance(body, str | bytes):
        message = body.decode(errors="replace") if isinstance(body, bytes) else body
        message = message[:500]
    message = message or f"HTTP {status}"
    cls: type[ApiError]
    if status in (401, 403):
        cls = AuthenticationError
    elif status == 404:
        cls = NotFoundError
    elif status in (409, 412):
        cls = ConflictError
    elif status == 429:
        cls = ThrottledError
    elif status is None or status >= 500:
        cls = TransientError
    else:
        cls = ApiError
    return cls(message, status=status, code=code, detail=detail, **context)
