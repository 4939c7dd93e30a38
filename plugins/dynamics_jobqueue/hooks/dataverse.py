"""Hook to the Dataverse Web API v9.2 (Dynamics 365 Sales, the CRM side).

Follows api-contracts.md: ``<org>/api/data/v9.2/``, OData 4.0 headers, upsert by id or alternate key with
``If-Match``/``If-None-Match`` rules, ``@odata.bind`` lookups, multipart ``$batch`` (at most 1,000 requests,
``Prefer: odata.continue-on-error``), change tracking with ``@odata.deltaLink``.

Connection (conn type ``dynamics_dataverse``): ``host`` the organisation URL (``https://contoso.crm.dynamics.com``),
``login``/``password`` client id/secret of the application user, ``extra.tenant_id``, plus the fields of
:class:`~dynamics_jobqueue.hooks.microsoft.MicrosoftApiHook`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar, Literal

from dynamics_jobqueue.hooks.batch import BatchOperation, BatchResult, decode_multipart, encode_multipart
from dynamics_jobqueue.hooks.microsoft import MicrosoftApiHook, odata_params

API_PATH = "api/data/v9.2/"
#: Dataverse accepts at most 1,000 requests per $batch.
MAX_BATCH = 1_000

UpsertMode = Literal["upsert", "update", "create"]


@dataclass
class ChangePage:
    """One page of a change-tracking read.

    :param records: created or changed rows (dicts as the API returns them).
    :param deleted_ids: ids of rows deleted since the previous delta link.
    :param delta_link: set on the last page only: store it and pass it to the next read.
    """

    records: list[dict[str, Any]] = field(default_factory=list)
    deleted_ids: list[str] = field(default_factory=list)
    delta_link: str | None = None


def key_segment(key: str | Mapping[str, Any]) -> str:
    """The key part of a record URL: ``<guid>`` or an alternate key ``accountnumber='10000'``.

    Strings are quoted with OData's doubled single quotes; numbers are written bare.
    """
    if isinstance(key, str):
        return key
    parts = []
    for name, value in key.items():
        if isinstance(value, str):
            value = "'" + value.replace("'", "''") + "'"
        parts.append(f"{name}={value}")
    return ",".join(parts)


def record_path(entity_set: str, key: str | Mapping[str, Any]) -> str:
    """``<entity_set>(<key>)`` relative to the API root."""
    return f"{entity_set}({key_segment(key)})"


def upsert_headers(mode: UpsertMode, etag: str | None = None) -> dict[str, str]:
    """Conditional headers for a PATCH: ``upsert`` none, ``update`` ``If-Match`` (``etag`` or ``*``),
    ``create`` ``If-None-Match: *`` (Web API docs, "Upsert a table row")."""
    if mode == "update":
        return {"If-Match": etag or "*"}
    if mode == "create":
        return {"If-None-Match": "*"}
    return {"If-Match": etag} if etag else {}


class DataverseHook(MicrosoftApiHook):
    """Reads and writes Dataverse tables over the Web API.

    :param dataverse_conn_id: the Airflow connection id (default ``dataverse_default``).
    """

    default_conn_name = "dataverse_default"
    conn_type = "dynamics_dataverse"
    hook_name = "Dynamics 365 Dataverse"
    max_page_size: ClassVar[int] = 5_000

    def __init__(self, dataverse_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(dataverse_conn_id or self.default_conn_name, **kwargs)

    def default_headers(self) -> dict[str, str]:
        return {
            "Accept": "application/json",
            "Content-Type": "application/json",
            "OData-MaxVersion": "4.0",
            "OData-Version": "4.0",
        }

    @cached_property
    def web_api_root(self) -> str:
        """Absolute URL of ``/api/data/v9.2/``."""
        return self.url(API_PATH)

    def who_am_i(self) -> str:
        """The ``systemuserid`` of the application user this connection signs in as (``WhoAmI``)."""
        return str(self.request("GET", f"{API_PATH}WhoAmI").json()["UserId"])

    def probe(self) -> str:
        """``WhoAmI``: proves the application user exists in the organisation (the "Test" button)."""
        return f"signed in to {self.api_root} as application user {self.who_am_i()}"

    def iter_pages(
        self,
        entity_set: str,
        *,
        filter: str | None = None,
        select: list[str] | None = None,
        orderby: str | None = None,
        page_size: int = 5_000,
    ) -> Iterator[list[dict[str, Any]]]:
        """Yield the rows of ``entity_set`` page by page (``@odata.nextLink``; ``$skip`` is not supported).

        :param filter: OData ``$filter``, e.g. ``modifiedon gt 2026-01-01T00:00:00Z``.
        :param page_size: rows per page (``Prefer: odata.maxpagesize``, max 5,000).
        :raises ApiError: typed, on any error answer after retries.
        """
        params = odata_params(filter=filter, select=select, orderby=orderby)
        yield from self.iter_collection(
            f"{API_PATH}{entity_set}", params=params, page_size=page_size, entity_set=entity_set
        )

    def iter_changes(
        self, entity_set: str, *, delta_link: str | None = None, select: list[str] | None = None
    ) -> Iterator[ChangePage]:
        """Read changes with change tracking (``Prefer: odata.track-changes``).

        Without ``delta_link`` the first read returns every row; with it, the rows created or changed since and
        the ids of deleted rows. The last page carries the new delta link.

        :raises ApiError: typed; an expired delta link answers with an error and needs a full read.
        """
        headers = {"Prefer": f"odata.track-changes,odata.maxpagesize={self.max_page_size}"}
        url: str | None = delta_link or f"{API_PATH}{entity_set}"
        params: dict[str, str] | None = None if delta_link else odata_params(select=select)
        while url:
            body = self.request("GET", url, entity_set=entity_set, headers=headers, params=params).json()
            params = None
            page = ChangePage()
            for row in body.get("value", []):
                if str(row.get("@odata.context", "")).endswith("$deletedEntity") or row.get("reason") == "deleted":
                    page.deleted_ids.append(str(row["id"]))
                else:
                    page.records.append(row)
            url = body.get("@odata.nextLink")
            if not url:
                page.delta_link = body.get("@odata.deltaLink")
            yield page

    def get(self, entity_set: str, key: str | Mapping[str, Any], *, select: list[str] | None = None) -> dict:
        """Read one row by id or alternate key. :raises NotFoundError: when it does not exist."""
        response = self.request(
            "GET",
            API_PATH + record_path(entity_set, key),
            entity_set=entity_set,
            record_id=key_segment(key),
            params=odata_params(select=select),
        )
        return dict(response.json())

    def create(self, entity_set: str, body: dict[str, Any]) -> str:
        """Create a row (POST, 204 + ``OData-EntityId``). :return: the new row's GUID."""
        response = self.request("POST", f"{API_PATH}{entity_set}", entity_set=entity_set, json=body)
        result = BatchResult("create", response.status_code, None, dict(response.headers))
        return result.record_id or ""

    def upsert(
        self,
        entity_set: str,
        key: str | Mapping[str, Any],
        body: dict[str, Any],
        *,
        mode: UpsertMode = "upsert",
        etag: str | None = None,
    ) -> None:
        """Create or update a row by id or alternate key (PATCH); repeating it is harmless, so it is retried.

        :param mode: ``upsert`` (create or update), ``update`` (404 when missing), ``create`` (412 when present).
        :param etag: with ``update``, the row's ETag for optimistic concurrency (412 when stale).
        :raises NotFoundError: ``update`` of a missing row. :raises ConflictError: a stale ETag or an existing row.
        """
        self.request(
            "PATCH",
            API_PATH + record_path(entity_set, key),
            entity_set=entity_set,
            record_id=key_segment(key),
            idempotent=mode != "create",
            json=body,
            headers=upsert_headers(mode, etag),
        )

    def delete(self, entity_set: str, key: str | Mapping[str, Any]) -> None:
        """Delete a row. :raises NotFoundError: when it does not exist."""
        self.request(
            "DELETE", API_PATH + record_path(entity_set, key), entity_set=entity_set, record_id=key_segment(key)
        )

    def batch(
        self,
        ops: Sequence[BatchOperation],
        *,
        continue_on_error: bool = True,
        atomic: bool = False,
        idempotent: bool = False,
    ) -> list[BatchResult]:
        """Send operations as multipart ``$batch`` requests of at most 1,000.

        :param ops: operations whose ``path`` is relative to the API root (``accounts(<guid>)``).
        :param continue_on_error: ``Prefer: odata.continue-on-error`` so one bad record does not stop the rest.
        :param atomic: one change set per request: all or nothing.
        :param idempotent: every operation is a keyed upsert, so a dropped batch may be sent again.
        :return: one result per operation, in order; operations the server did not reach get status 424.
        :raises ApiError: when a whole batch request fails (auth, throttling after retries).
        """
        results: list[BatchResult] = []
        for start in range(0, len(ops), MAX_BATCH):
            chunk = list(ops[start : start + MAX_BATCH])
            content_type, payload = encode_multipart(chunk, self.web_api_root, atomic=atomic)
            headers = {"Content-Type": content_type, "Accept": "application/json"}
            if continue_on_error and not atomic:
                headers["Prefer"] = "odata.continue-on-error"
            response = self.request(
                "POST",
                f"{API_PATH}$batch",
                headers=headers,
                data=payload,
                idempotent=idempotent,
                expected=(200, 400),
            )
            parts = decode_multipart(response.headers.get("Content-Type", ""), response.content)
            for index, op in enumerate(chunk):
                if index < len(parts):
                    status, part_headers, body = parts[index]
                    results.append(BatchResult(op.id, status, body, part_headers))
                else:
                    not_run = {"error": {"message": "not run: an earlier request in the batch failed"}}
                    results.append(BatchResult(op.id, 424, not_run))
        return results
