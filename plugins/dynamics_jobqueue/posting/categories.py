"""Job queue categories and the document types they post.

A job queue category (``SALESPOST``, ``PURCHPOST``) serialises its entries: while one entry of a category is
In Process, the others wait (docs/reference/dynamics-semantics.md section 2). Each document type names the Business
Central API entity set that holds it and the bound action that posts it (docs/reference/api-contracts.md, "Posting
actions"). Return orders are not in the standard API v2.0; they come from a custom API page whose route the connection's
``extra.endpoints`` configures (e.g. ``{"salesReturnOrders": "api/cronus/integration/v1.0"}``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class PostedEvidence(StrEnum):
    """How to tell from the ERP whether a document has been posted (recovery after a lost answer).

    - ``status``: the record stays under the same id and its ``status`` leaves ``Draft`` (invoices, credit
      memos: the API keeps the draft's id for the posted document).
    - ``order``: a fully posted order is deleted; the posted invoice carries ``orderId`` = the order's id.
    - ``gone``: the custom API shows only open return orders; a posted one is no longer there.
    """

    STATUS = "status"
    ORDER = "order"
    GONE = "gone"


@dataclass(frozen=True)
class DocumentType:
    """A postable document type as the reference names it (``Sales Invoice``) and as the API exposes it.

    :param name: the reference's name, stored in the job queue entry.
    :param category_code: the job queue category it posts in by default.
    :param entity_set: the API entity set (``salesInvoices``).
    :param action: the bound posting action (``Microsoft.NAV.post``).
    :param evidence: how a posted document is recognised.
    :param number_field: the field holding the document number (``number``).
    :param party_field: the customer/vendor number field, named in alerts.
    :param posted_entity_set: where the posted document that can be printed lives (``salesInvoices`` for a
        sales order, whose posting creates a posted invoice), ``None`` when the API offers no PDF.
    :param posting_date_field: the field Replace Posting Date writes.
    :param document_date_field: the field Replace Document Date writes.
    """

    name: str
    category_code: str
    entity_set: str
    action: str
    evidence: PostedEvidence
    party_field: str
    posted_entity_set: str | None
    posting_date_field: str
    document_date_field: str
    number_field: str = "number"

    @property
    def is_order(self) -> bool:
        """True for orders and return orders (Ship/Receive applies)."""
        return self.name.endswith("Order")

    @property
    def posting_documents(self) -> str:
        """The entity set of the posting page (:data:`POSTING_DOCUMENTS`) that holds this document."""
        return POSTING_DOCUMENTS[self.category_code]

    @property
    def ship_field(self) -> str:
        """The posting page's field that ships or receives the order: ``ship`` for sales orders and purchase
        return orders, ``receive`` for purchase orders and sales return orders (the Sales/Purchase Header's
        Ship and Receive)."""
        return "ship" if self.name in ("Sales Order", "Purchase Return Order") else "receive"

    @property
    def fully_shipped_field(self) -> str | None:
        """API v2.0's field that shows an order shipped (received) in full: ``fullyShipped`` / ``fullyReceived``."""
        return {"Sales Order": "fullyShipped", "Purchase Order": "fullyReceived"}.get(self.name)


SALESPOST = "SALESPOST"
PURCHPOST = "PURCHPOST"

#: The custom API page that posts with Business Central's options (release, Ship/Invoice, VAT date, invoice
#: discount), per category: one Sales/Purchase Header of any document type by its API v2.0 id. API v2.0 cannot do
#: these; the page's contract is in the README ("Posting with Business Central's options") and its route is set in
#: the connection's ``extra.endpoints``.
POSTING_DOCUMENTS = {SALESPOST: "salesPostingDocuments", PURCHPOST: "purchasePostingDocuments"}

#: The reference's posting document types (section 2, item 5), in the order the Batch Post reports list them.
DOCUMENT_TYPES: dict[str, DocumentType] = {
    t.name: t
    for t in (
        DocumentType(
            "Sales Order",
            SALESPOST,
            "salesOrders",
            "Microsoft.NAV.shipAndInvoice",
            PostedEvidence.ORDER,
            "customerNumber",
            "salesInvoices",
            "postingDate",
            "orderDate",
        ),
        DocumentType(
            "Sales Invoice",
            SALESPOST,
            "salesInvoices",
            "Microsoft.NAV.post",
            PostedEvidence.STATUS,
            "customerNumber",
            "salesInvoices",
            "postingDate",
            "invoiceDate",
        ),
        DocumentType(
            "Sales Credit Memo",
            SALESPOST,
            "salesCreditMemos",
            "Microsoft.NAV.post",
            PostedEvidence.STATUS,
            "customerNumber",
            "salesCreditMemos",
            "postingDate",
            "creditMemoDate",
        ),
        DocumentType(
            "Sales Return Order",
            SALESPOST,
            "salesReturnOrders",
            "Microsoft.NAV.receiveAndCredit",
            PostedEvidence.GONE,
            "customerNumber",
            None,
            "postingDate",
            "documentDate",
        ),
        DocumentType(
            "Purchase Order",
            PURCHPOST,
            "purchaseOrders",
            "Microsoft.NAV.receiveAndInvoice",
            PostedEvidence.ORDER,
            "vendorNumber",
            "purchaseInvoices",
            "postingDate",
            "orderDate",
        ),
        DocumentType(
            "Purchase Invoice",
            PURCHPOST,
            "purchaseInvoices",
            "Microsoft.NAV.post",
            PostedEvidence.STATUS,
            "vendorNumber",
            "purchaseInvoices",
            "postingDate",
            "invoiceDate",
        ),
        DocumentType(
            "Purchase Credit Memo",
            PURCHPOST,
            "purchaseCreditMemos",
            "Microsoft.NAV.post",
            PostedEvidence.STATUS,
            "vendorNumber",
            "purchaseCreditMemos",
            "postingDate",
            "creditMemoDate",
        ),
        DocumentType(
            "Purchase Return Order",
            PURCHPOST,
            "purchaseReturnOrders",
            "Microsoft.NAV.shipAndCredit",
            PostedEvidence.GONE,
            "vendorNumber",
            None,
            "postingDate",
            "documentDate",
        ),
    )
}

#: Document types by the short names the Batch Post params and the CLI accept (``Invoice`` for a category).
SHORT_NAMES = ("Order", "Invoice", "Credit Memo", "Return Order")


def document_type(name: str) -> DocumentType:
    """Look up a document type by its reference name (``Sales Invoice``), case-insensitively.

    :raises ValueError: for an unknown name, listing the known ones.
    """
    for known in DOCUMENT_TYPES.values():
        if known.name.lower() == name.strip().lower():
            return known
    raise ValueError(f"unknown document type {name!r}; known: {', '.join(DOCUMENT_TYPES)}")


def category_document_types(category_code: str) -> list[DocumentType]:
    """The document types a category posts by default (``SALESPOST`` -> the four sales types)."""
    return [t for t in DOCUMENT_TYPES.values() if t.category_code == category_code]


def for_category(category_code: str, short_name: str) -> DocumentType:
    """The document type of ``category_code`` with short name ``Invoice`` / ``Order`` / ... .

    :raises ValueError: for an unknown category or short name.
    """
    prefix = {SALESPOST: "Sales", PURCHPOST: "Purchase"}.get(category_code)
    if prefix is None:
        raise ValueError(f"category {category_code!r} posts no known document types")
    return document_type(f"{prefix} {short_name}")
