"""What both emulated APIs share: the request/response objects, errors, paging and ETag checks.

The HTTP layer (:mod:`sandbox.app`) turns a real HTTP request into an :class:`ApiRequest`; the
``$batch`` endpoints build the same objects from their parts, so a batched operation runs exactly the
code a single request runs.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from sandbox.odata import (
    Preferences,
    QueryError,
    format_datetime,
    parse_filter,
    parse_orderby,
    parse_prefer,
    parse_top,
    to_sql,
)

if TYPE_CHECKING:
    from sandbox.schema import EntitySet
    from sandbox.store import Row, Store


@dataclass(frozen=True)
class Caller:
    """The authenticated client of a request.

    :param client_id: the app registration's client id.
    :param systemuserid: the caller's Dataverse systemuser, when it has one.
    """

    client_id: str
    systemuserid: str | None


@dataclass
class ApiRequest:
    """One API operation, from HTTP or from a ``$batch`` part.

    :param path: the path below the API root, e.g. ``companies(<id>)/customers``; not URL-decoded
        inside key predicates (``accounts(accountnumber='10%2000')`` is decoded by the handler).
    :param query: query options, last value wins.
    :param headers: header names in lower case.
    :param root: the absolute URL of the API root, ending in ``/`` (used for links).
    """

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    caller: Caller
    root: str
    prefer_values: list[str] = field(default_factory=list)

    @property
    def prefer(self) -> Preferences:
        return parse_prefer(self.prefer_values or ([self.headers["prefer"]] if "prefer" in self.headers else []))

    def json_body(self) -> Any:
        """The request body parsed as JSON.

        :raises ValueError: when it is not JSON.
        """
        return json.loads(self.body or b"null")


@dataclass
class ApiResponse:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class ApiError(Exception):
    """An error answer in the API's own shape (rendered by the API module that raised it)."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def now() -> datetime:
    return datetime.now(UTC)


def correlation_id() -> str:
    return str(uuid.uuid4())


# -- ETags -----------------------------------------------------------------------------------


def bc_etag(version: int) -> str:
    """A BC-style weak ETag: base64 of ``'<len>;<number>;00;'`` as Business Central emits them."""
    number = str(10**19 + version)
    raw = f"'{len(number)};{number};00;'".encode()
    return 'W/"' + base64.b64encode(raw).decode() + '"'


def dataverse_etag(version: int) -> str:
    """Dataverse's weak ETag: the row's versionnumber."""
    return f'W/"{version}"'


def etag_matches(header: str, current: str) -> bool:
    """Whether an ``If-Match`` value (``*`` or a list of ETags, weak or not) matches ``current``."""

    def bare(tag: str) -> str:
        tag = tag.strip()
        if tag.startswith("W/"):
            tag = tag[2:]
        return tag.strip('"')

    if header.strip() == "*":
        return True
    return any(bare(part) == bare(current) for part in header.split(","))


# -- paging ----------------------------------------------------------------------------------


def encode_token(state: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(state, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_token(token: str) -> dict[str, Any]:
    """Decode an opaque ``$skiptoken``/``$deltatoken``.

    :raises QueryError: when the token was not issued by the sandbox.
    """
    try:
        state = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except ValueError as exc:
        raise QueryError(f"The skip token '{token}' is not valid.") from exc
    if not isinstance(state, dict):
        raise QueryError(f"The skip token '{token}' is not valid.")
    return state


def link(root: str, path: str, query: dict[str, str], **extra: str) -> str:
    """An absolute URL below ``root`` with the given query options (``$`` kept readable)."""
    params = {k: v for k, v in query.items() if k not in ("$skiptoken", "$deltatoken", "$skip")}
    params.update(extra)
    qs = urlencode(params, quote_via=quote, safe="$,'()*:")
    return f"{root}{path}" + (f"?{qs}" if qs else "")


@dataclass
class Page:
    rows: list[Row]
    next_link: str | None
    count: int | None = None


def query_page(
    store: Store,
    entity: EntitySet,
    request: ApiRequest,
    *,
    default_page: int,
    max_page: int,
    allow_skip: bool,
) -> Page:
    """Run a collection GET: ``$filter``, ``$orderby``, ``$top``, ``$skip``, ``$count``, ``$skiptoken``
    and ``Prefer: odata.maxpagesize`` as the OData v4 protocol (part 1, 11.2.6.7 server-driven paging)
    describes them.

    The page size is the ``odata.maxpagesize`` preference of *this* request, capped at ``max_page``,
    as on the real services (a client following a next link must send the preference again).

    :raises QueryError: on an invalid query option.
    """
    q = request.query
    where, params = "", list[Any]()
    if q.get("$filter"):
        where, params = to_sql(parse_filter(q["$filter"]), entity, lambda n: store.column(entity, n))
    order = parse_orderby(q.get("$orderby"), entity)
    top = parse_top(q.get("$top"))
    skip = parse_top(q.get("$skip"), "$skip")
    if skip is not None and not allow_skip:
        raise QueryError("The query parameter $skip is not supported")
    prefs = request.prefer
    size = min(prefs.maxpagesize or default_page, max_page)
    if size <= 0:
        size = max_page
    after = None
    remaining = top
    offset = skip or 0
    token = q.get("$skiptoken")
    if token:
        state = decode_token(token)
        after = state.get("a")
        remaining = state.get("r")
        offset = 0
    limit = size if remaining is None else min(size, remaining)
    rows = store.page(entity, where, params, order, after, limit + 1, offset) if limit > 0 else []
    more = len(rows) > limit
    rows = rows[:limit]
    next_link = None
    if remaining is not None and remaining <= len(rows):
        more = False
    if more and rows:
        last = rows[-1]
        state = {"a": [*last.order_values, last.seq]}
        if remaining is not None:
            state["r"] = remaining - len(rows)
        next_link = link(request.root, request.path, q, **{"$skiptoken": encode_token(state)})
    count = store.count(entity, where, params) if q.get("$count", "").lower() == "true" else None
    return Page(rows, next_link, count)


def project(body: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """The record's public properties (hidden ``__`` keys dropped), in ``names`` order."""
    return {name: body.get(name) for name in names}


def timestamp(value: datetime | None = None) -> str:
    return format_datetime(value or now())
