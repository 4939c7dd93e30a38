"""Server-side paging, sorting and filtering of the console's lists, with the total of every list.

A :class:`Listing` is one list's SQL: a ``SELECT ... FROM ...`` without ``WHERE``, the filters it accepts (each a
condition with psycopg parameters), and the columns it sorts by. :func:`fetch_page` adds the filters given, the
sort asked for (only a name from :attr:`Listing.sorts`, so no user text reaches the SQL text), ``LIMIT`` and
``OFFSET``, and counts the matching rows with the same filters. A page is :class:`PageOf`: its rows, ``total``
(every matching row), ``offset`` and ``limit``, so a client shows "51-100 of 10,000".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Generic, Literal, TypeVar

from fastapi import HTTPException, Query, status
from psycopg.rows import dict_row
from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from dynamics_jobqueue.hooks.state import StateStoreHook

#: Rows per page unless asked otherwise, and the most a page may hold.
DEFAULT_LIMIT = 50
MAX_LIMIT = 500


@dataclass(frozen=True)
class Listing:
    """One list's SQL.

    :param select: ``SELECT <columns> FROM <tables>`` (no ``WHERE``); a derived table when it needs grouping.
    :param filters: filter name -> SQL condition reading ``%(<name>)s`` (applied only when the value is given).
    :param sorts: sort name -> SQL expression. :param default_sort: ``name`` or ``-name`` (descending).
    :param tiebreak: appended to every ``ORDER BY`` so pages never overlap (a unique column list).
    """

    select: str
    filters: dict[str, str]
    sorts: dict[str, str]
    default_sort: str
    tiebreak: str
    always: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class PageRequest:
    """What a client asks of a list: ``offset`` (rows to skip), ``limit`` (1..500) and ``sort`` (a name of the
    list's sorts, ``-name`` for descending; empty: the list's default)."""

    offset: int = 0
    limit: int = DEFAULT_LIMIT
    sort: str = ""


def page_request(
    offset: Annotated[int, Query(ge=0, description="rows to skip")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="rows per page (at most 500)")] = DEFAULT_LIMIT,
    sort: Annotated[str, Query(description="a sort name of the list, `-name` for descending")] = "",
) -> PageRequest:
    """Dependency: the paging parameters of a list request (422 when out of range)."""
    return PageRequest(offset, limit, sort)


T = TypeVar("T")


class PageOf(BaseModel, Generic[T]):
    """One page of a list: ``items``, and ``total`` (rows matching the filters), ``offset``, ``limit``, ``sort``."""

    items: list[T]
    total: int = Field(description="rows matching the filters, on every page")
    offset: int
    limit: int
    sort: str


def _order(listing: Listing, sort: str) -> tuple[str, str]:
    name = sort or listing.default_sort
    descending = name.startswith("-")
    key = name.removeprefix("-")
    if key not in listing.sorts:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_ENTITY, f"cannot sort by {key!r}; sorts: {', '.join(sorted(listing.sorts))}"
        )
    direction = "DESC NULLS LAST" if descending else "ASC NULLS FIRST"
    return f"{listing.sorts[key]} {direction}, {listing.tiebreak}", name


def fetch_page(
    store: StateStoreHook, listing: Listing, request: PageRequest, filters: dict[str, Any]
) -> tuple[list[dict[str, Any]], int, str]:
    """One page of ``listing`` with the filters given (``None`` or ``""``: not filtered).

    :return: the page's rows (dicts by column name), the total of matching rows, the sort applied.
    :raises HTTPException: 422 for an unknown sort name.
    """
    given = {name: value for name, value in filters.items() if value is not None and value != ""}
    unknown = set(given) - set(listing.filters)
    if unknown:  # a programming error: the endpoint passed a filter the listing does not define
        raise KeyError(f"filters {sorted(unknown)} are not defined")
    conditions = [*listing.always, *(listing.filters[name] for name in given)]
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    order, sort = _order(listing, request.sort)
    params = {**given, "limit": request.limit, "offset": request.offset}
    with store.transaction() as cur:
        cur.row_factory = dict_row  # type: ignore[assignment]
        cur.execute(f"{listing.select}{where} ORDER BY {order} LIMIT %(limit)s OFFSET %(offset)s", params)
        rows = list(cur.fetchall())
        if request.offset == 0 and len(rows) < request.limit:
            total = len(rows)  # the whole list is on this page
        else:
            cur.execute(f"SELECT count(*) AS n FROM ({listing.select}{where}) matching", params)
            total = int(cur.fetchone()["n"])  # type: ignore[index,call-overload]
    return rows, total, sort  # type: ignore[return-value]


# -- trends ----------------------------------------------------------------------------------------------------
#: The most buckets one trend request may span (a year of days, or 31 days of hours).
MAX_BUCKETS = 744


@dataclass(frozen=True)
class Period:
    """The period a trend covers, ``[start, end)`` in UTC, counted per ``bucket`` (``hour`` or ``day``)."""

    start: datetime
    end: datetime
    bucket: str


def period(
    date_from: Annotated[
        date | None, Query(description="first UTC day; default: 13 days (day) or 1 day (hour) ago")
    ] = None,
    date_to: Annotated[date | None, Query(description="last UTC day, included; default today")] = None,
    bucket: Annotated[Literal["hour", "day"], Query(description="count per hour or per day (UTC)")] = "day",
) -> Period:
    """Dependency: the period of a trend request.

    :raises HTTPException: 422 when ``date_to`` is before ``date_from`` or the period spans over 744 buckets.
    """
    last = date_to or datetime.now(UTC).date()
    first = date_from or last - timedelta(days=13 if bucket == "day" else 1)
    if last < first:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, "date_to is before date_from")
    start = datetime.combine(first, time(), UTC)
    end = datetime.combine(last + timedelta(days=1), time(), UTC)
    buckets = (end - start) / (timedelta(hours=1) if bucket == "hour" else timedelta(days=1))
    if buckets > MAX_BUCKETS:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_ENTITY, f"the period spans {buckets:.0f} {bucket}s; at most {MAX_BUCKETS}"
        )
    return Period(start, end, bucket)
