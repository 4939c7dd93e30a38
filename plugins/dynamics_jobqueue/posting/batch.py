"""Batch Post: find a category's open documents in Business Central and queue them for posting.

Mirrors Business Central's Batch Post reports (reports "Batch Post Sales Orders" / "... Invoices" / "... Credit
Memos" / "... Return Orders" and their purchase twins, with codeunit "Sales Batch Post Mgt."): the document
types, a filter, Ship/Receive, Invoice, Posting Date, VAT Date, Replace Posting Date, Replace Document Date,
Replace VAT Date, Calc. Inv. Discount and Print.

As Business Central prepares each document when it queues it (codeunits "Sales Batch Post Mgt." and "Sales Post
via Job Queue"), Batch Post releases an Open document and, with Calc. Inv. Discount, calculates its invoice
discount before queueing it; a document that cannot be released is not queued and is reported with Business
Central's message. Both need the posting page (:data:`~dynamics_jobqueue.posting.categories.POSTING_DOCUMENTS`);
without it the document is queued as it stands (Business Central's posting releases it, and API v2.0 applies the
customer's invoice discount whenever a line changes). The other options travel with each job queue entry and the
runner applies them just before posting: Replace Posting/Document Date through API v2.0, an order's
Ship/Receive-only or Invoice-only and Replace VAT Date through the posting page, which they need.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

from dynamics_jobqueue.hooks.errors import ApiError
from dynamics_jobqueue.hooks.microsoft import and_filters, eq_filter
from dynamics_jobqueue.posting import queries
from dynamics_jobqueue.posting.categories import (
    POSTING_DOCUMENTS,
    SHORT_NAMES,
    DocumentType,
    PostedEvidence,
    for_category,
)
from dynamics_jobqueue.posting.entries import DEFAULT_POSTING_TIMEOUT_S
from dynamics_jobqueue.posting.queue import EnqueueRequest, enqueue_many

if TYPE_CHECKING:
    from dynamics_jobqueue.hooks.business_central import BusinessCentralHook
    from dynamics_jobqueue.hooks.state import StateStoreHook

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchPostOptions:
    """The request page of a Batch Post report.

    :param document_types: short names: ``Order``, ``Invoice``, ``Credit Memo``, ``Return Order``.
    :param filter: an OData ``$filter`` on the documents, e.g. ``customerNumber eq '10000'``.
    :param ship: Ship (sales) / Receive (purchases) for orders and return orders.
    :param invoice: Invoice for orders and return orders. Either may be off (an order shipped but not invoiced
        stays open, its quantities shipped), not both; invoices and credit memos always post in full.
    :param posting_date: the Posting Date used by the replace options.
    :param vat_date: the VAT Date Replace VAT Date writes; default ``posting_date`` (as the report fills it).
    :param replace_posting_date: write ``posting_date`` as each document's posting date before posting.
    :param replace_document_date: write ``posting_date`` as each document's document date too.
    :param replace_vat_date: write ``vat_date`` as each document's VAT date; only with Replace Posting Date, as
        Business Central replaces the VAT date only while replacing the posting date (table "Sales Header",
        ``BatchConfirmUpdatePostingDate``).
    :param calc_inv_discount: Calc. Inv. Discount: calculate each document's invoice discount when queueing it.
    :param print: Post & Print.
    """

    document_types: tuple[str, ...] = SHORT_NAMES
    filter: str | None = None
    ship: bool = True
    invoice: bool = True
    posting_date: date | None = None
    vat_date: date | None = None
    replace_posting_date: bool = False
    replace_document_date: bool = False
    replace_vat_date: bool = False
    calc_inv_discount: bool = True
    print: bool = False

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> BatchPostOptions:
        """Build from DAG params (JSON values: dates as ``YYYY-MM-DD``, empty strings as not set)."""

        def day(name: str) -> date | None:
            raw = params.get(name) or None
            return date.fromisoformat(raw) if isinstance(raw, str) else raw

        return cls(
            document_types=tuple(params.get("document_types") or SHORT_NAMES),
            filter=params.get("filter") or None,
            ship=bool(params.get("ship", True)),
            invoice=bool(params.get("invoice", True)),
            posting_date=day("posting_date"),
            vat_date=day("vat_date"),
            replace_posting_date=bool(params.get("replace_posting_date", False)),
            replace_document_date=bool(params.get("replace_document_date", False)),
            replace_vat_date=bool(params.get("replace_vat_date", False)),
            calc_inv_discount=bool(params.get("calc_inv_discount", True)),
            print=bool(params.get("print", False)),
        )

    def validate(self) -> None:
        """Refuse combinations Business Central refuses, or that this package cannot post.

        :raises ValueError: with the reason.
        """
        unknown = set(self.document_types) - set(SHORT_NAMES)
        if unknown:
            raise ValueError(f"unknown document types {sorted(unknown)}; choose from {list(SHORT_NAMES)}")
        if (self.replace_posting_date or self.replace_document_date) and self.posting_date is None:
            raise ValueError("Enter the posting date.")  # the reference's message on the request page
        if self.replace_vat_date and not self.replace_posting_date:
            raise ValueError(
                "Replace VAT Date takes effect only with Replace Posting Date: Business Central replaces the VAT "
                "date while it replaces the posting date."
            )
        orders = {"Order", "Return Order"} & set(self.document_types)
        if orders and not (self.ship or self.invoice):
            # Sales-Post's refusal (label ShipInvoiceReceiveErr), given before anything is queued.
            raise ValueError('Please enter "Yes" in Ship and/or Invoice and/or Receive.')
        if "Return Order" in orders and not (self.ship and self.invoice):
            raise ValueError(
                "Return orders post received (shipped) and credited together only; leave Return Order out of "
                "document_types to post orders shipped or invoiced only."
            )

    def uses_posting_page(self, doc_type: DocumentType) -> bool:
        """Whether ``doc_type`` posts through the posting page: an order shipped or invoiced only, or Replace
        VAT Date (API v2.0 offers only ``shipAndInvoice`` / ``receiveAndInvoice`` and no VAT date)."""
        return self.replace_vat_date or (doc_type.is_order and not (self.ship and self.invoice))

    def require_endpoints(self, bc: BusinessCentralHook, category_code: str) -> None:
        """:raises MissingEndpointError: an option needs the posting page and the connection does not route it."""
        needed = [
            what
            for what, needs in (
                ("Posting orders shipped (received) or invoiced only", not (self.ship and self.invoice)),
                ("Replace VAT Date", self.replace_vat_date),
            )
            if needs
        ]
        if needed and ({"Order", "Return Order"} & set(self.document_types) or self.replace_vat_date):
            bc.require_endpoint(POSTING_DOCUMENTS[category_code], " and ".join(needed))

    def posting_options(self, doc_type: DocumentType | None = None) -> dict[str, Any]:
        """The options stored on each entry of ``doc_type`` (JSON)."""
        vat_date = (self.vat_date or self.posting_date) if self.replace_vat_date else None
        return {
            "posting_date": self.posting_date.isoformat() if self.posting_date else None,
            "replace_posting_date": self.replace_posting_date,
            "replace_document_date": self.replace_document_date,
            "vat_date": vat_date.isoformat() if vat_date else None,
            "replace_vat_date": self.replace_vat_date,
            "ship": self.ship,
            "invoice": self.invoice,
            "posting_page": doc_type is not None and self.uses_posting_page(doc_type),
        }


@dataclass
class BatchPostResult:
    """What a Batch Post queued: per document type the number found, the number queued, the documents left
    alone because they are already scheduled (``refused``), and the documents Business Central could not release
    (``not_released``: "<type> <no.>: <its message>"; not queued, as Batch Post skips them)."""

    found: dict[str, int] = field(default_factory=dict)
    queued: int = 0
    refused: list[str] = field(default_factory=list)
    not_released: list[str] = field(default_factory=list)


def open_filter(doc_type: DocumentType, user_filter: str | None) -> str | None:
    """The ``$filter`` selecting open documents: drafts for invoices/credit memos, every order (posted orders
    are deleted), combined with the user's filter."""
    drafts = eq_filter("status", "Draft") if doc_type.evidence is PostedEvidence.STATUS else None
    return and_filters(drafts, user_filter)


def batch_post(
    store: StateStoreHook,
    bc: BusinessCentralHook,
    category_code: str,
    options: BatchPostOptions,
    *,
    user_id: str,
    max_attempts: int = 3,
    rerun_delay_s: int = 60,
    timeout_s: int = DEFAULT_POSTING_TIMEOUT_S,
) -> BatchPostResult:
    """Queue every open document of the category matching ``options``; documents already scheduled are left.

    :param user_id: who runs the batch (named in alerts of its entries).
    :raises ValueError: invalid options (see :meth:`BatchPostOptions.validate`).
    :raises ApiError: when Business Central cannot be read.
    """
    options.validate()
    options.require_endpoints(bc, category_code)
    result = BatchPostResult()
    requests: list[EnqueueRequest] = []
    for short_name in options.document_types:
        doc_type = for_category(category_code, short_name)
        found = [
            record
            for page in bc.iter_pages(
                doc_type.entity_set,
                filter=open_filter(doc_type, options.filter),
                select=["id", doc_type.number_field],
            )
            for record in page
        ]
        result.found[doc_type.name] = len(found)
        for record in _prepare(store, bc, doc_type, options, found, result):
            requests.append(
                EnqueueRequest(
                    document_type=doc_type.name,
                    document_id=uuid.UUID(record["id"]),
                    document_number=str(record[doc_type.number_field]),
                    user_id=user_id,
                    category_code=category_code,
                    max_attempts=max_attempts,
                    rerun_delay_s=rerun_delay_s,
                    timeout_s=timeout_s,
                    post_and_print=options.print and doc_type.posted_entity_set is not None,
                    posting_options=options.posting_options(doc_type),
                )
            )
    result.queued, result.refused = enqueue_many(store, requests)
    log.info(
        "Batch Post %s: found %s, queued %d, already scheduled %d, not released %d",
        category_code,
        result.found,
        result.queued,
        len(result.refused),
        len(result.not_released),
    )
    return result


def _prepare(
    store: StateStoreHook,
    bc: BusinessCentralHook,
    doc_type: DocumentType,
    options: BatchPostOptions,
    found: list[dict[str, Any]],
    result: BatchPostResult,
) -> list[dict[str, Any]]:
    """Release each document that is not already scheduled and calculate its invoice discount (Calc. Inv.
    Discount), as codeunit "Sales Batch Post Mgt." prepares a document before queueing it; returns the documents
    to queue. Documents already scheduled are returned untouched (the queue refuses them with its message).
    Without the posting page nothing is sent and every document is returned."""
    pages = doc_type.posting_documents
    if not found or not bc.has_endpoint(pages):
        return found
    with store.transaction() as cur:
        cur.execute(queries.SELECT_SCHEDULED_DOCUMENTS, (doc_type.name, [uuid.UUID(r["id"]) for r in found]))
        scheduled = {str(row[0]) for row in cur.fetchall()}
    ready: list[dict[str, Any]] = []
    for record in found:
        if record["id"].lower() in scheduled:
            ready.append(record)
            continue
        try:
            bc.post_action(pages, record["id"], "Microsoft.NAV.release")
            if options.calc_inv_discount:
                bc.post_action(pages, record["id"], "Microsoft.NAV.calculateInvoiceDiscount")
        except ApiError as exc:
            if exc.status is None or exc.is_systemic:
                raise  # an outage says nothing about the document: the Batch Post task fails and is retried
            head, _, _ = exc.message.partition("CorrelationId:")
            result.not_released.append(f"{doc_type.name} {record[doc_type.number_field]}: {head.strip()}")
            log.warning("Batch Post left %s", result.not_released[-1])
            continue
        ready.append(record)
    return ready


__all__: Sequence[str] = ["BatchPostOptions", "BatchPostResult", "batch_post", "open_filter"]
