"""Batch requests: operations in, per-record results out.

Business Central takes JSON batches (``{"requests": [...]}``, at most 100 operations); Dataverse takes
``multipart/mixed`` batches (at most 1,000 requests, optional atomic change sets). Both hooks accept the same
:class:`BatchOperation` list and return one :class:`BatchResult` per operation, in order, so callers handle each
record's outcome on its own (docs/reference/api-contracts.md, "$batch").
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from dynamics_jobqueue.hooks.errors import ApiError, MalformedResponseError, error_for_status

_ENTITY_ID = re.compile(r"\(([0-9a-fA-F-]{36})\)\s*$")
_GUID_KEY = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


@dataclass(frozen=True)
class BatchOperation:
    """One request inside a batch.

    :param id: the caller's id for the operation (a record key); results carry it back.
    :param method: ``GET``, ``POST``, ``PATCH`` or ``DELETE``.
    :param path: relative to the entity root: BC the company (``customers(<id>)``), Dataverse the API root
        (``accounts(accountnumber='10000')``).
    :param body: JSON body, or ``None``.
    :param headers: extra headers (``If-Match``, ``If-None-Match``, ``Prefer``).
    :param id_field: the record's primary key column (Dataverse ``accountid``); lets the hook read the id
        back when a write is answered without ``OData-EntityId`` (an upsert by alternate key).
    """

    id: str
    method: str
    path: str
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    id_field: str | None = None

    @property
    def entity_set(self) -> str:
        """The entity set the operation addresses (``accounts`` of ``accounts(accountnumber='1')``)."""
        return self.path.split("(", 1)[0].split("/", 1)[0].split("?", 1)[0]

    @property
    def key(self) -> str | None:
        """The key segment of the path (``accountnumber='1'``), ``None`` for a collection."""
        head = self.path.split("/", 1)[0]
        if "(" not in head or not head.endswith(")"):
            return None
        return head[head.index("(") + 1 : -1]

    @property
    def key_guid(self) -> str | None:
        """The record GUID when the operation addresses the record by id, else ``None``."""
        key = self.key
        return key.lower() if key and _GUID_KEY.match(key) else None


@dataclass(frozen=True)
class BatchResult:
    """The outcome of one :class:`BatchOperation`: HTTP ``status``, decoded ``body`` and ``headers``."""

    id: str
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    entity_set: str | None = None

    @property
    def ok(self) -> bool:
        """True for a 2xx status."""
        return 200 <= self.status < 300

    @property
    def error(self) -> ApiError | None:
        """The typed error of a failed operation (naming the operation id as the record), else ``None``."""
        if self.ok:
            return None
        return error_for_status(self.status, self.body, entity_set=self.entity_set, record_id=self.id)

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


_BOUNDARY = re.compile(r'boundary="?([^";\s]+)"?', re.IGNORECASE)
_STATUS_LINE = re.compile(r"^HTTP/1\.[01] (\d{3})")
_LINE_BREAK = re.compile(r"\r?\n")


@dataclass(frozen=True)
class ResponsePart:
    """One HTTP response inside a multipart ``$batch`` answer.

    :param status: the part's HTTP status. :param headers: the part's HTTP headers.
    :param body: decoded JSON, text, or ``None``. :param content_id: the ``Content-ID`` of a change set's part.
    """

    status: int
    headers: dict[str, str]
    body: Any
    content_id: str | None = None


def batch_boundary(content_type: str | None, payload: bytes) -> str | None:
    """The multipart boundary of a ``$batch`` answer: from ``Content-Type``, else from the body's first
    delimiter line (Microsoft's documented answers show no ``Content-Type``); ``None`` when there is none."""
    match = _BOUNDARY.search(content_type or "")
    if match:
        return match.group(1)
    first = payload.lstrip(b"\r\n").split(b"\n", 1)[0].rstrip(b"\r")
    if first.startswith(b"--") and len(first) > 2 and b" " not in first:
        return first[2:].decode("ascii", errors="replace")
    return None


def decode_multipart(content_type: str | None, payload: bytes) -> list[ResponsePart]:
    """Decode a Dataverse ``$batch`` answer into its response parts, in order (Web API docs, "Execute batch
    operations using the Web API"; OData 4.0 "Batch Requests").

    Lines may end in CRLF (the service) or LF (the documentation); change sets nested in the answer are
    flattened in place, each part keeping its ``Content-ID``.

    :raises MalformedResponseError: when the answer has no multipart boundary or no part can be read.
    """
    boundary = batch_boundary(content_type, payload)
    if boundary is None:
        raise MalformedResponseError(f"batch answer without a multipart boundary: {content_type!r}")
    parts = _decode_lines(_LINE_BREAK.split(payload.decode("utf-8", errors="replace")), boundary)
    if not parts and payload.strip():
        raise MalformedResponseError(f"batch answer with no readable part (boundary {boundary!r})")
    return parts


def _decode_lines(lines: list[str], boundary: str) -> list[ResponsePart]:
    delimiter, close = f"--{boundary}", f"--{boundary}--"
    chunks: list[list[str]] = []
    current: list[str] | None = None
    for line in lines:
        stripped = line.rstrip()
        if stripped == close:
            if current is not None:
                chunks.append(current)
            current = None
            break
        if stripped == delimiter:
            if current is not None:
                chunks.append(current)
            current = []
        elif current is not None:
            current.append(line)
    if current is not None:
        chunks.append(current)
    parts: list[ResponsePart] = []
    for chunk in chunks:
        mime_headers, rest = _split_headers(chunk)
        content_type = mime_headers.get("content-type", "")
        if content_type.lower().startswith("multipart/"):
            nested = _BOUNDARY.search(content_type)
            if nested:
                parts.extend(_decode_lines(rest, nested.group(1)))
            continue
        while rest and not rest[0].strip():
            rest = rest[1:]
        if not rest:
            continue
        status_match = _STATUS_LINE.match(rest[0])
        if not status_match:
            continue
        http_headers, body_lines = _split_headers(rest[1:], keep_case=True)
        body_text = "\n".join(body_lines).strip()
        body: Any = None
        if body_text:
            try:
                body = json.loads(body_text)
            except ValueError:
                body = body_text
        parts.append(
            ResponsePart(int(status_match.group(1)), http_headers, body, mime_headers.get("content-id") or None)
        )
    return parts


def _split_headers(lines: list[str], *, keep_case: bool = False) -> tuple[dict[str, str], list[str]]:
    """Header lines up to the first empty line, and the lines after it."""
    headers: dict[str, str] = {}
    for index, line in enumerate(lines):
        if not line.strip():
            return headers, lines[index + 1 :]
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip() if keep_case else name.strip().lower()] = value.strip()
    return headers, []


def failure(op: BatchOperation, status: int, message: str, *, code: str | None = None) -> BatchResult:
    """A per-record failure of ``op`` that the client decided (not run, rolled back, no id in the answer)."""
    error: dict[str, Any] = {"message": message}
    if code:
        error["code"] = code
    return BatchResult(op.id, status, {"error": error}, entity_set=op.entity_set)


def roll_back(ops: list[BatchOperation], results: list[BatchResult]) -> list[BatchResult]:
    """An all-or-nothing batch in which something failed: every success was rolled back, so report each as
    a failure (424, naming the operation that failed) and keep the failures as they are."""
    first = next((r for r in results if not r.ok), None)
    if first is None:
        return results
    reason = f"rolled back: operation {first.id} of the same atomic batch failed ({first.error})"
    return [failure(op, 424, reason, code="RolledBack") if r.ok else r for op, r in zip(ops, results, strict=True)]
