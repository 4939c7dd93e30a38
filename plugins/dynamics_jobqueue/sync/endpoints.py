"""The two sides of a sync as the engine sees them: reads by watermark, by id and by value, and batched writes.

:class:`ErpEndpoint` wraps :class:`~dynamics_jobqueue.hooks.business_central.BusinessCentralHook` and
:class:`CrmEndpoint` wraps :class:`~dynamics_jobqueue.hooks.dataverse.DataverseHook`; both speak OData
(docs/reference/api-contracts.md), so reads share the filter building. Records come back as the APIs return them, with
ids in lower case.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING, Any

from dynamics_jobqueue.hooks.batch import BatchOperation, BatchResult
from dynamics_jobqueue.hooks.business_central import create_operation, update_operation
from dynamics_jobqueue.hooks.dataverse import MAX_BATCH, UpsertMode, upsert_operation
from dynamics_jobqueue.hooks.microsoft import and_filters, compare_filter, in_filter, odata_literal
from dynamics_jobqueue.sync.mapping import EntityEndpoint, Side

if TYPE_CHECKING:
    from dynamics_jobqueue.hooks.business_central import BusinessCentralHook
    from dynamics_jobqueue.hooks.dataverse import DataverseHook

#: Values per ``or`` filter when reading records by id or by value: keeps URLs well under 8 KB.
VALUES_PER_READ = 40
#: Dataverse ``$batch`` requests one write sends at the same time.
BATCHES_IN_FLIGHT = 2

__all__ = ["CrmEndpoint", "ErpEndpoint", "and_filters", "compare_filter", "in_filter", "odata_literal"]


def chunks(values: Sequence[Any], size: int = VALUES_PER_READ) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


class Endpoint:
    """Common reads of one side; subclasses supply the hook, the modified-on field and the write paths.

    :param hook: the API hook. :param page_size: records per page of a read.
    """

    side: Side
    modified_field: str
    #: ``$orderby`` of change reads (see :class:`CrmEndpoint`); ``None`` keeps the service's order.
    change_order: str | None = None

    def __init__(self, hook: Any, page_size: int) -> None:
        self.hook = hook
        self.page_size = page_size

    def pages(
        self,
        entity_set: str,
        *,
        filter: str | None,
        select: list[str] | None,
        count: bool = False,
        orderby: str | None = None,
    ) -> Iterator[tuple[list[dict[str, Any]], int | None]]:
        """Pages of a collection read (server-driven paging, ``@odata.nextLink``) with the total when asked
        (``$count=true`` on the first request: the total comes with the first page, at no extra request).

        :return: ``(records, total)`` per page; ``total`` is ``None`` after the first page or when not given.
        """
        for page in self.hook.query(
            entity_set, filter=filter, select=select, orderby=orderby, count=count, page_size=self.page_size
        ):
            yield page.records, page.count

    def render_filter(self, text: str | None, integration_user: str | None) -> str | None:
        """Substitute ``{integration_user}`` in a mapping filter."""
        if text is None:
            return None
        return text.replace("{integration_user}", odata_literal(integration_user or ""))

    def read_changed(
        self,
        endpoint: EntityEndpoint,
        select: list[str],
        *,
        since: datetime | int | None,
        integration_user: str | None,
        extra: str | None = None,
    ) -> Iterator[tuple[list[dict[str, Any]], int | None]]:
        """Pages of the records in the mapping's filter changed after ``since`` (a modified-on or a version; all
        when ``None``), with the number of records to expect on the first page.

        :param extra: another condition (the CRM side excludes the integration user's own changes).
        """
        flt = and_filters(
            self.render_filter(endpoint.filter, integration_user),
            compare_filter(self.modified_field, "gt", since) if since is not None else None,
            extra,
        )
        pages = self.pages(endpoint.entity_set, filter=flt, select=select, count=True, orderby=self.change_order)
        for page, total in pages:
            yield [self.normalise(endpoint, record) for record in page], total

    def read_where(
        self,
        entity_set: str,
        field: str,
        values: Iterable[Any],
        select: list[str] | None,
        *,
        base_filter: str | None = None,
        id_field: str | None = None,
    ) -> list[dict[str, Any]]:
        """The records whose ``field`` equals one of ``values``, read in ``or`` chunks.

        :param base_filter: a condition every record must meet too (the mapping's filter).
        """
        wanted = sorted({v for v in values if v is not None and v != ""}, key=str)
        found: list[dict[str, Any]] = []
        for chunk in chunks(wanted):
            flt = and_filters(base_filter, in_filter(field, chunk))
            for page, _ in self.pages(entity_set, filter=flt, select=select):
                found.extend(page)
        if id_field:
            for record in found:
                if record.get(id_field):
                    record[id_field] = str(record[id_field]).lower()
        return found

    def read_by_ids(
        self, endpoint: EntityEndpoint, ids: Sequence[str], select: list[str], *, integration_user: str | None
    ) -> list[dict[str, Any]]:
        """The records with these ids that are still in the mapping's filter."""
        records = self.read_where(
            endpoint.entity_set,
            endpoint.id_field,
            ids,
            select,
            base_filter=self.render_filter(endpoint.filter, integration_user),
        )
        return [self.normalise(endpoint, r) for r in records]

    @staticmethod
    def normalise(endpoint: EntityEndpoint, record: dict[str, Any]) -> dict[str, Any]:
        record[endpoint.id_field] = str(record[endpoint.id_field]).lower()
        return record


class ErpEndpoint(Endpoint):
    """Business Central: ``lastModifiedDateTime``, ids ``id``, JSON ``$batch`` of 100.

    :param hook: a :class:`BusinessCentralHook`. :param page_size: at most 20,000 (the API's page limit).
    """

    side = Side.ERP
    modified_field = "lastModifiedDateTime"
    hook: BusinessCentralHook

    def __init__(self, hook: BusinessCentralHook, page_size: int = 20_000) -> None:
        super().__init__(hook, page_size)

    def create_op(self, op_id: str, endpoint: EntityEndpoint, body: dict[str, Any]) -> BatchOperation:
        """POST a new record (201 with the record)."""
        return create_operation(op_id, endpoint.entity_set, body)

    def update_op(self, op_id: str, endpoint: EntityEndpoint, record_id: str, body: dict[str, Any]) -> BatchOperation:
        """PATCH a record whatever its ETag (``If-Match: *``; 404 when it was deleted)."""
        return update_operation(op_id, endpoint.entity_set, record_id, body)

    def write(self, ops: Sequence[BatchOperation]) -> list[BatchResult]:
        return self.hook.batch(ops) if ops else []


class CrmEndpoint(Endpoint):
    """Dataverse: changes by ``versionnumber``, ``<entity>id`` keys, multipart ``$batch`` of 1,000, upserts by key.

    ``versionnumber`` (the row version) marks changes rather than ``modifiedon``, whose one-second resolution
    would let a change made in the same second as the watermark slip by. Changes are read in version order:
    Dataverse pages an ordered read by position in that order (a paging cookie), so a record changed while a
    run pages through the changes gets a version above every record read so far and comes on a later page;
    the highest version read is then a safe watermark (issue 10, case 5).

    :param hook: a :class:`DataverseHook`. :param page_size: at most 5,000 (the API's page limit).
    """

    side = Side.CRM
    modified_field = "versionnumber"
    change_order = "versionnumber asc"
    hook: DataverseHook

    def __init__(self, hook: DataverseHook, page_size: int = 5_000) -> None:
        super().__init__(hook, page_size)

    def upsert_op(
        self,
        op_id: str,
        endpoint: EntityEndpoint,
        key: str | dict[str, Any],
        body: dict[str, Any],
        *,
        mode: UpsertMode,
    ) -> BatchOperation:
        """PATCH by id or alternate key: ``upsert`` (create or update), ``create`` (``If-None-Match: *``, 412
        when it exists) or ``update`` (``If-Match: *``, 404 when it does not) (Web API, "Upsert a table row")."""
        return upsert_operation(op_id, endpoint.entity_set, key, body, mode=mode, id_field=endpoint.id_field)

    def write(self, ops: Sequence[BatchOperation]) -> list[BatchResult]:
        """Send ``ops`` in ``$batch`` requests of 1,000, two in flight, results in the order of ``ops``.

        Each batch goes first as one change set: the service applies 1,000 writes in one transaction, much
        faster than 1,000 (the sandbox: about 40% less time). If anything in it fails, the change set is rolled
        back as a whole and the batch is sent again with ``Prefer: odata.continue-on-error``, so one bad record
        still never blocks the others; it only costs that batch one more request.

        Two requests in flight let the client encode and decode one batch while the service works on the other
        (Dataverse allows 52 concurrent requests per user). Every write of the engine is keyed (an id or an
        alternate key), so a batch cut off by a dropped connection may be sent again without creating twins.
        """
        chunks_of_ops = [list(ops[i : i + MAX_BATCH]) for i in range(0, len(ops), MAX_BATCH)]
        if len(chunks_of_ops) <= 1:
            return self._write_chunk(list(ops)) if ops else []
        with ThreadPoolExecutor(max_workers=BATCHES_IN_FLIGHT, thread_name_prefix="dataverse-batch") as pool:
            return [result for answer in pool.map(self._write_chunk, chunks_of_ops) for result in answer]

    def _write_chunk(self, ops: list[BatchOperation]) -> list[BatchResult]:
        results = self.hook.batch(ops, atomic=True, idempotent=True)
        if all(result.ok for result in results):
            return results
        return self.hook.batch(ops, continue_on_error=True, idempotent=True)
