"""Batch Post: find a category's open documents in Business Central and queue them for posting.

Mirrors the reference's Batch Post reports (Batch Post Sales Orders / Invoices / Credit Memos / Return Orders
and their purchase twins; dynamics-semantics.md section 2, item 6): the document types, a filter, Ship/Receive,
Invoice, Posting Date, Replace Posting Date, Replace Document Date, Calc. Inv. Discount and Print. The options
travel with each job queue entry; the runner applies Replace Posting/Document Date just before posting.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

from dynamics_jobqueue.hooks.microsoft import and_filters, eq_filter
from dynamics_jobqueue.posting.categories import SHORT_NAMES, DocumentType, PostedEvidence, for_category
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
    :param ship: Ship (sales) / Receive (purchases) for orders.
    :param invoice: Invoice for orders.
    :param posting_date: the Posting Date used by the replace options.
    :param replace_posting_date: write ``posting_date`` as each document's posting date before posting.
    :param replace_document_date: write ``posting_date`` as each document's document date too.
    :param calc_inv_discount: Calc. Inv. Discount; the API recalculates invoice discounts on every change of a
        document, so only ``True`` can be honoured.
    :param print: Post & Print.
    """

    document_types: tuple[str, ...] = SHORT_NAMES
    filter: str | None = None
    ship: bool = True
    invoice: bool = True
    posting_date: date | None = None
    replace_posting_date: bool = False
    replace_document_date: bool = False
    calc_inv_discount: bool = True
    print: bool = False

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> BatchPostOptions:
        """Build from DAG params (JSON values: dates as ``YYYY-MM-DD``, empty strings as not set)."""
        raw_date = params.get("posting_date") or None
        return cls(
            document_types=tuple(params.get("document_types") or SHORT_NAMES),
            filter=params.get("filter") or None,
            ship=bool(params.get("ship", True)),
            invoice=bool(params.get("invoice", True)),
            posting_date=date.fromisoformat(raw_date) if isinstance(raw_date, str) else raw_date,
            replace_posting_date=bool(params.get("replace_posting_date", False)),
            replace_document_date=bool(params.get("replace_document_date", False)),
            calc_inv_discount=bool(params.get("calc_inv_discount", True)),
            print=bool(params.get("print", False)),
        )

    def validate(self) -> None:
        """Refuse combinations the reference or the API cannot post.

        :raises ValueError: with the reason.
        """
        unknown = set(self.document_types) - set(SHORT_NAMES)
        if unknown:
            raise ValueError(f"unknown document types {sorted(unknown)}; choose from {list(SHORT_NAMES)}")
        if (self.replace_posting_date or self.replace_document_date) and self.posting_date is None:
            raise ValueError("Enter the posting date.")  # the reference's message on the request page
        orders = {"Order", "Return Order"} & set(self.document_types)
        if orders and not (self.ship and self.invoice):
            raise ValueError(
                "Business Central's API posts orders only with Ship/Receive and Invoice together "
                "(shipAndInvoice / receiveAndInvoice); set both, or leave orders out of document_types."
            )
        if not self.calc_inv_discount:
            raise ValueError("The API always calculates invoice discounts; Calc. Inv. Discount cannot be off.")

    def posting_options(self) -> dict[str, Any]:
        """The options stored on each entry (JSON)."""
        return {
            "posting_date": self.posting_date.isoformat() if self.posting_date else None,
            "replace_posting_date": self.replace_posting_date,
            "replace_document_date": self.replace_document_date,
        }


@dataclass
class BatchPostResult:
    """What a Batch Post queued: per document type the number found, the number queued, and the refusals."""

    found: dict[str, int] = field(default_factory=dict)
    queued: int = 0
    refused: list[str] = field(default_factory=list)


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
    result = BatchPostResult()
    requests: list[EnqueueRequest] = []
    for short_name in options.document_types:
        doc_type = for_category(category_code, short_name)
        found = 0
        for page in bc.iter_pages(
            doc_type.entity_set, filter=open_filter(doc_type, options.filter), select=["id", doc_type.number_field]
        ):
            for record in page:
                found += 1
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
                        posting_options=options.posting_options(),
                    )
                )
        result.found[doc_type.name] = found
    result.queued, result.refused = enqueue_many(store, requests)
    log.info(
        "Batch Post %s: found %s, queued %d, already scheduled %d",
        category_code,
        result.found,
        result.queued,
        len(result.refused),
    )
    return result


__all__: Sequence[str] = ["BatchPostOptions", "BatchPostResult", "batch_post", "open_filter"]
