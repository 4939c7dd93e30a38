"""Batch requests: operations in, per-record results out.

Business Central takes JSON batches (``{"requests": [...]}``, at most 100 operations); Dataverse takes
``multipart/mixed`` batches (at most 1,000 requests, optional atomic change sets). Both hooks accept the same
:class:`BatchOperation` list and return one :class:`BatchResult` per operation, in order, so callers handle each
record's outcome on its own (api-contracts.md, "$batch").
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from dynamics_jobqueue.hooks.errors import ApiError, error_for_status

_ENTITY_ID = re.compile(r"\(([0-9a-fA-F-]{36})\)\s*$")


@dataclass(frozen=True)
class BatchOperation:
    """One request inside a batch.

    :param id: the caller's id for the operation (a record key); results carry it back.
    :param method: ``GET``, ``POST``, ``PATCH`` or ``DELETE``.
    :param path: relative to the entity root: BC the company (``customers(<id>)``), Dataverse the API root
        (``accounts(accountnumber='10000')``).
    :param body: JSON body, or ``None``.
    :param headers: extra headers (``If-Match``, ``If-None-Match``, ``Prefer``).
    """

    id: str
    method: str
    path: str
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BatchResult:
    """The outcome of one :class:`BatchOperation`: HTTP ``status``, decoded ``body`` and ``headers``."""

    id: str
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True for a 2xx status."""
        return 200 <= self.status < 300

    @property
    def error(self) -> ApiError | None:
        """The typed error of a failed operation (naming the operation id as the record), else ``None``."""
        if self.ok:
            return None
        return error_for_status(self.status, self.body, record_id=self.id)

    @property
    def record_id(self) -> str | None:
        """The written record's GUID: from ``OData-EntityId``/``Location`` or the body's ``id``/primary key."""
        for name, value in self.headers.items():
            if name.lower() in ("odata-entityid", "location"):
                match = _ENTITY_ID.search(value)
                if match:
                    return match.group(1).lower()
        if isinstance(self.body, dict) and self.body.get("id"):
            return str(self.body["id"])
        return None

    @property
    def etag(self) -> str | None:
        """The record's new ETag, when the answer carried one."""
        for name, value in self.headers.items():
            if name.lower() == "etag":
                return value
        if isinstance(self.body, dict):
            return self.body.get("@odata.etag")
        return None


def encode_multipart(operations: list[BatchOperation], api_root: str, *, atomic: bool) -> tuple[str, bytes]:
    """Encode a Dataverse ``$batch`` body (Web API docs, "Execute batch operations").

    :param operations: at most 1,000 operations.
    :param api_root: absolute URL of ``/api/data/v9.2/``; each part addresses ``api_root + path``.
    :param atomic: put every operation in one change set (all or nothing); GETs are not allowed then.
    :return: ``(content type, body bytes)``.
    """
    batch = f"batch_{uuid.uuid4()}"
    lines: list[str] = []

    def part(op: BatchOperation, content_id: int | None) -> None:
        lines.append("Content-Type: application/http")
        lines.append("Content-Transfer-Encoding: binary")
        if content_id is not None:
            lines.append(f"Content-ID: {content_id}")
        lines.append("")
        lines.append(f"{op.method} {api_root}{op.path} HTTP/1.1")
        headers = {"Content-Type": "application/json; type=entry", **op.headers}
        lines.extend(f"{k}: {v}" for k, v in headers.items())
        lines.append("")
        lines.append(json.dumps(op.body) if op.body is not None else "")

    if atomic:
        changeset = f"changeset_{uuid.uuid4()}"
        lines.append(f"--{batch}")
        lines.append(f"Content-Type: multipart/mixed; boundary={changeset}")
        lines.append("")
        for n, op in enumerate(operations, start=1):
            lines.append(f"--{changeset}")
            part(op, n)
        lines.append(f"--{changeset}--")
    else:
        for op in operations:
            lines.append(f"--{batch}")
            part(op, None)
    lines.append(f"--{batch}--")
    lines.append("")
    return f"multipart/mixed; boundary={batch}", "\r\n".join(lines).encode()


_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)
_STATUS_LINE = re.compile(r"^HTTP/1\.[01] (\d{3})")


def decode_multipart(content_type: str, payload: bytes) -> list[tuple[int, dict[str, str], Any]]:
    """Decode a Dataverse ``$batch`` answer into ``(status, headers, body)`` per part, in order.

    Change sets nested in the answer are flattened in place.

    :raises ValueError: when the content type carries no boundary.
    """
    match = _BOUNDARY.search(content_type)
    if not match:
        raise ValueError(f"batch answer without a multipart boundary: {content_type!r}")
    text = payload.decode("utf-8", errors="replace")
    results: list[tuple[int, dict[str, str], Any]] = []
    for chunk in text.split(f"--{match.group(1)}"):
        chunk = chunk.strip("\r\n")
        if not chunk or chunk == "--":
            continue
        head, _, rest = chunk.partition("\r\n\r\n")
        nested = _BOUNDARY.search(head) if "multipart/mixed" in head.lower() else None
        if nested:
            results.extend(decode_multipart(head, rest.encode()))
            continue
        status_line, _, after = rest.partition("\r\n")
        status_match = _STATUS_LINE.match(status_line)
        if not status_match:
            continue
        header_text, _, body_text = after.partition("\r\n\r\n")
        headers: dict[str, str] = {}
        for line in header_text.split("\r\n"):
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip()] = value.strip()
        body_text = body_text.strip()
        body: Any = None
        if body_text:
            try:
                body = json.loads(body_text)
            except ValueError:
                body = body_text
        results.append((int(status_match.group(1)), headers, body))
    return results
