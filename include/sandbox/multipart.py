"""Reading and writing the multipart/mixed ``$batch`` format of the Dataverse Web API.

Format (OData v4 part 1, section 11.7.7; MicrosoftDocs/powerapps-docs "Execute batch operations
using the Web API"): a ``multipart/mixed`` body whose parts are either ``application/http`` requests
(``Content-Transfer-Encoding: binary``) or change sets, which are themselves ``multipart/mixed`` with
``application/http`` parts carrying a ``Content-ID``. A hand-written splitter is used instead of the
``email`` package because a 1,000-request batch must be answered well within a second.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING

from sandbox.api import ApiError

if TYPE_CHECKING:
    from sandbox.api import ApiResponse

_BOUNDARY_RE = re.compile(r'boundary=(?:"([^"]+)"|([^;\s]+))', re.IGNORECASE)


@dataclass
class PartRequest:
    """One request of a batch. Header names are lower case."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    content_id: str | None = None


@dataclass
class BatchItem:
    """A top-level part: one request, or a change set of several (``changeset`` true)."""

    changeset: bool
    requests: list[PartRequest]
    responses: list[ApiResponse] = field(default_factory=list)


def _bad(message: str) -> ApiError:
    return ApiError(400, "0x80048d19", message)


def boundary_of(content_type: str) -> str:
    """The boundary parameter of a multipart content type.

    :raises ApiError: 400 when the content type is not multipart/mixed with a boundary.
    """
    match = _BOUNDARY_RE.search(content_type)
    if not content_type.lower().startswith("multipart/mixed") or match is None:
        raise _bad("The batch request must have a 'Content-Type: multipart/mixed; boundary=...' header.")
    return match.group(1) or match.group(2)


def _split(text: str, boundary: str) -> list[str]:
    delimiter = f"--{boundary}"
    segments = text.split(delimiter)
    parts = []
    for segment in segments[1:]:
        if segment.startswith("--"):
            break
        parts.append(segment.strip("\n"))
    return parts


def _headers(block: str) -> tuple[dict[str, str], str]:
    head, _, rest = block.partition("\n\n")
    headers: dict[str, str] = {}
    for line in head.split("\n"):
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return headers, rest


def _request(mime_headers: dict[str, str], content: str) -> PartRequest:
    if not mime_headers.get("content-type", "").lower().startswith("application/http"):
        raise _bad("Every batch part must have 'Content-Type: application/http'.")
    request_line, _, rest = content.partition("\n")
    words = request_line.split()
    if len(words) < 2:
        raise _bad(f"The batch part's request line '{request_line}' is not valid.")
    if rest.startswith("\n"):
        headers, body = dict[str, str](), rest[1:]
    elif "\n\n" in rest:
        headers, body = _headers(rest)
    else:
        headers, body = _headers(rest + "\n\n")
    return PartRequest(
        method=words[0].upper(),
        url=words[1],
        headers=headers,
        body=body.strip("\n").encode(),
        content_id=mime_headers.get("content-id"),
    )


def parse_batch(content_type: str, body: bytes) -> list[BatchItem]:
    """Parse a batch request body.

    :raises ApiError: 400 when the body is not a valid multipart batch.
    """
    boundary = boundary_of(content_type)
    text = body.decode("utf-8").replace("\r\n", "\n")
    items: list[BatchItem] = []
    for part in _split(text, boundary):
        mime_headers, content = _headers(part)
        part_type = mime_headers.get("content-type", "")
        if part_type.lower().startswith("multipart/mixed"):
            inner = boundary_of(part_type)
            requests = [_request(*_headers(p)) for p in _split(content, inner)]
            if not requests:
                raise _bad("A change set must contain at least one request.")
            if any(r.method == "GET" for r in requests):
                raise _bad("A change set must not contain GET requests.")
            items.append(BatchItem(True, requests))
        else:
            items.append(BatchItem(False, [_request(mime_headers, content)]))
    return items


def _http_part(response: ApiResponse, content_id: str | None) -> str:
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id:
        lines.append(f"Content-ID: {content_id}")
    lines.append("")
    lines.append(f"HTTP/1.1 {response.status} {HTTPStatus(response.status).phrase}")
    lines.append("OData-Version: 4.0")
    headers = dict(response.headers)
    if response.body is not None:
        headers.setdefault("Content-Type", "application/json; odata.metadata=minimal")
    lines.extend(f"{name}: {value}" for name, value in headers.items())
    lines.append("")
    body = "" if response.body is None else json.dumps(response.body, separators=(",", ":"))
    return "\r\n".join(lines) + "\r\n" + body + "\r\n"


def render_batch(items: list[BatchItem]) -> tuple[str, bytes]:
    """Render the batch answer; returns its content type and body."""
    boundary = f"batchresponse_{uuid.uuid4()}"
    out: list[str] = []
    for item in items:
        if item.changeset:
            changeset = f"changesetresponse_{uuid.uuid4()}"
            out.append(f"--{boundary}\r\nContent-Type: multipart/mixed; boundary={changeset}\r\n\r\n")
            for request, response in zip(item.requests, item.responses, strict=True):
                out.append(f"--{changeset}\r\n{_http_part(response, request.content_id)}")
            out.append(f"--{changeset}--\r\n")
        else:
            out.append(f"--{boundary}\r\n{_http_part(item.responses[0], item.requests[0].content_id)}")
    out.append(f"--{boundary}--\r\n")
    return f"multipart/mixed; boundary={boundary}", "".join(out).encode()
