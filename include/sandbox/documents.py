"""Sales and purchase documents of the Business Central sandbox, and their posting actions.

Entity sets (API v2.0, ``api/v2.0/companies(<id>)/...``): ``salesOrders``, ``salesInvoices``,
``salesCreditMemos``, ``purchaseOrders``, ``purchaseInvoices``, ``purchaseCreditMemos`` and their line sets
(``salesInvoiceLines``, ...; each line has ``documentId``). Return orders, which the standard API lacks, are at
the custom API page ``api/cronus/integration/v1.0``: ``salesReturnOrders``, ``purchaseReturnOrders`` (and
lines). Importing this module adds the sets to :data:`sandbox.schema.BC_SETS` / ``BC_CUSTOM_SETS``, so the
generic routes serve GET (paging, ``$filter``, ``$select``), PATCH (``If-Match``) and DELETE; this module
answers what is special to documents:

- ``POST <set>`` creates a draft with its lines in one request (deep insert: ``"salesInvoiceLines": [...]``),
  numbering it from the document's number series;
- ``POST <set>(<id>)/<lineSet>`` / ``GET <set>(<id>)/<lineSet>``: the lines of one document;
- the bound posting actions of docs/reference/api-contracts.md: ``salesInvoices/salesCreditMemos/purchaseInvoices/
  purchaseCreditMemos(<id>)/Microsoft.NAV.post``, ``salesOrders(<id>)/Microsoft.NAV.shipAndInvoice``,
  ``purchaseOrders(<id>)/Microsoft.NAV.receiveAndInvoice``, and on the custom page
  ``salesReturnOrders(<id>)/Microsoft.NAV.receiveAndCredit``, ``purchaseReturnOrders(<id>)/Microsoft.NAV.shipAndCredit``
  (POST, empty body, 204);
- the posting page on the custom API page (``salesPostingDocuments``, ``purchasePostingDocuments``; see
  :meth:`Documents.posting_document`): release, invoice discount, and posting with an order's Ship/Receive and
  Invoice and the header's VAT date, which API v2.0 cannot do;
- ``GET salesInvoices|salesCreditMemos|purchaseInvoices|purchaseCreditMemos(<id>)/pdfDocument`` and
  ``.../pdfDocument/pdfDocumentContent`` (``application/pdf``).

Posting really changes state, as Business Central does: an invoice or credit memo keeps its id, gets the
posted number and leaves status ``Draft`` for ``Open`` (a second post answers "The action can be applied to a
draft invoice only."); a fully posted order is deleted and a posted invoice with ``orderId``/``orderNumber``
appears (a second post answers 404); an order shipped (received) only stays, its lines' ``shippedQuantity``
(``receivedQuantity``) and ``fullyShipped`` (``fullyReceived``) set, and invoicing it later invoices what was
shipped; a return order is deleted and a posted credit memo appears. Every posting
takes the configured latency and is recorded in the posting log. Documents that cannot post answer 400
``Application_DialogException`` with Business Central's message, checked in its order: a blocked
customer/vendor, a posting date outside the allowed posting period, a purchase invoice/order without Vendor
Invoice No., no line with a quantity ("There is nothing to post."). A hanging posting answers 408
``Request_Timeout`` after ``hang_s`` without posting, as the real API's operation timeout does.

Sandbox simplification: the bound actions, line sub-paths and ``pdfDocument`` are answered for single requests
only, not inside ``$batch`` (the job queue posts one document per request anyway).

Admin (loopback, unauthenticated, like the sandbox's other ``/_sandbox`` endpoints; added by :func:`install`):
``POST /_sandbox/posting`` configures posting latency, hangs and the allowed posting period;
``GET /_sandbox/postings`` lists every posting with its start and end timestamps (benchmarks prove from it
that no two postings of one category overlapped); ``DELETE /_sandbox/postings`` clears that list;
``POST /_sandbox/documents/generate`` bulk-creates draft invoices for benchmarks.

Seed (:func:`seed`): the open Orders and Invoices of the CRONUS demo data (sales_documents.json,
purchase_documents.json, ``status_after_demo_generation == "open"``; quotes are not postable and left out),
with dates from the source's ``AdjustDate`` templates, plus documents invented here to fail, named with
``Your Reference`` ``DESIGNED TO FAIL`` (see :data:`FAILING_DOCUMENTS`).
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from calendar import monthrange
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from sandbox.api import ApiError, ApiRequest, ApiResponse, bc_etag, timestamp
from sandbox.business_central import COMPANY_ID, CUSTOM_API, STANDARD_API, error_body, stable_id
from sandbox.schema import BC_CUSTOM_SETS, BC_SETS, EMPTY_GUID, B, C, E, EntitySet, Field, G, N, S, _bc
from sandbox.store import Row

if TYPE_CHECKING:
    import sqlite3

    from sandbox.business_central import BusinessCentral

DEMO_DATA = Path(__file__).resolve().parents[1] / "demo_data" / "cronus"
#: UK standard VAT, the DOMESTIC VAT posting setup of CRONUS UK.
VAT_RATE = 0.2

_SALES_STATUS = ("Draft", "In Review", "Open", "Paid", "Canceled", "Corrective")
_ORDER_STATUS = ("Draft", "In Review", "Open")
_LINE_TYPES = ("Comment", "Account", "Item", "Resource", "Value", "Charge", "Fixed Asset")


def _party(kind: str) -> tuple[Field, ...]:
    return (G(f"{kind}Id"), C(f"{kind}Number", 20), S(f"{kind}Name", 100))


def _totals() -> tuple[Field, ...]:
    return (
        N("discountAmount"),
        N("totalAmountExcludingTax", read_only=True),
        N("totalTaxAmount", read_only=True),
        N("totalAmountIncludingTax", read_only=True),
    )


def _date(name: str) -> Field:
    return Field(name, "date", default="0001-01-01")


def _header(name: str, type_name: str, display: str, party: str, *specs: Field) -> EntitySet:
    return _bc(
        name,
        type_name,
        display,
        "number",
        C("number", 20, default=None),
        S("externalDocumentNumber", 35),
        *specs,
        _date("postingDate"),
        *_party(party),
        C("currencyCode", 10),
        C("paymentTermsCode", 10),
        S("yourReference", 35),
        *_totals(),
    )


def _lines(name: str, type_name: str, display: str, cost_field: str, *specs: Field) -> EntitySet:
    return _bc(
        name,
        type_name,
        display,
        None,
        G("documentId"),
        Field("sequence", "int", default=10000),
        E("lineType", _LINE_TYPES, "Item"),
        C("lineObjectNumber", 20),
        S("description", 100),
        C("unitOfMeasureCode", 10),
        N("quantity"),
        N(cost_field),
        N("amountExcludingTax", read_only=True),
        *specs,
    )


DOCUMENT_SETS: dict[str, EntitySet] = {
    s.name: s
    for s in (
        _header(
            "salesOrders",
            "salesOrder",
            "Sales Header",
            "customer",
            _date("orderDate"),
            _date("requestedDeliveryDate"),
            E("status", _ORDER_STATUS, "Draft"),
            B("fullyShipped"),
        ),
        _header(
            "salesInvoices",
            "salesInvoice",
            "Sales Header",
            "customer",
            _date("invoiceDate"),
            _date("dueDate"),
            G("orderId"),
            C("orderNumber", 20),
            E("status", _SALES_STATUS, "Draft"),
        ),
        _header(
            "salesCreditMemos",
            "salesCreditMemo",
            "Sales Header",
            "customer",
            _date("creditMemoDate"),
            _date("dueDate"),
            G("invoiceId"),
            C("invoiceNumber", 20),
            E("status", _SALES_STATUS, "Draft"),
        ),
        _header(
            "purchaseOrders",
            "purchaseOrder",
            "Purchase Header",
            "vendor",
            _date("orderDate"),
            S("vendorInvoiceNumber", 35),
            E("status", _ORDER_STATUS, "Draft"),
            B("fullyReceived"),
        ),
        _header(
            "purchaseInvoices",
            "purchaseInvoice",
            "Purchase Header",
            "vendor",
            _date("invoiceDate"),
            _date("dueDate"),
            S("vendorInvoiceNumber", 35),
            G("orderId"),
            C("orderNumber", 20),
            E("status", _SALES_STATUS, "Draft"),
        ),
        _header(
            "purchaseCreditMemos",
            "purchaseCreditMemo",
            "Purchase Header",
            "vendor",
            _date("creditMemoDate"),
            _date("dueDate"),
            S("vendorCreditMemoNumber", 35),
            E("status", _SALES_STATUS, "Draft"),
        ),
        # Quantity Shipped / Received and Quantity Invoiced, as API v2.0's order lines name them.
        _lines(
            "salesOrderLines",
            "salesOrderLine",
            "Sales Line",
            "unitPrice",
            N("shippedQuantity", read_only=True),
            N("invoicedQuantity", read_only=True),
        ),
        _lines("salesInvoiceLines", "salesInvoiceLine", "Sales Line", "unitPrice"),
        _lines("salesCreditMemoLines", "salesCreditMemoLine", "Sales Line", "unitPrice"),
        _lines(
            "purchaseOrderLines",
            "purchaseOrderLine",
            "Purchase Line",
            "directUnitCost",
            N("receivedQuantity", read_only=True),
            N("invoicedQuantity", read_only=True),
        ),
        _lines("purchaseInvoiceLines", "purchaseInvoiceLine", "Purchase Line", "directUnitCost"),
        _lines("purchaseCreditMemoLines", "purchaseCreditMemoLine", "Purchase Line", "directUnitCost"),
    )
}

RETURN_ORDER_SETS: dict[str, EntitySet] = {
    s.name: s
    for s in (
        _header(
            "salesReturnOrders",
            "salesReturnOrder",
            "Sales Header",
            "customer",
            _date("documentDate"),
            E("status", _ORDER_STATUS, "Draft"),
        ),
        _header(
            "purchaseReturnOrders",
            "purchaseReturnOrder",
            "Purchase Header",
            "vendor",
            _date("documentDate"),
            S("vendorCreditMemoNumber", 35),
            E("status", _ORDER_STATUS, "Draft"),
        ),
        _lines("salesReturnOrderLines", "salesReturnOrderLine", "Sales Line", "unitPrice"),
        _lines("purchaseReturnOrderLines", "purchaseReturnOrderLine", "Purchase Line", "directUnitCost"),
    )
}

BC_SETS.update(DOCUMENT_SETS)
BC_CUSTOM_SETS.update(RETURN_ORDER_SETS)


@dataclass(frozen=True)
class Kind:
    """A postable document type: its set, lines, action, number series and what posting produces.

    :param posted_set: for orders and return orders, the set of the posted document they produce.
    :param pdf: the posted document offers ``pdfDocument``.
    """

    entity_set: str
    api: str
    display: str
    party: str
    lines: str
    action: str
    draft_series: str
    posted_series: str
    cost_field: str
    posted_set: str | None = None
    pdf: bool = False
    draft_only_message: str = ""
    shipped_field: str | None = None
    fully_field: str | None = None

    @property
    def document_type(self) -> str:
        """The Sales/Purchase Header's Document Type: ``Order``, ``Invoice``, ``Credit Memo``, ``Return Order``."""
        return self.display.split(" ", 1)[1]

    @property
    def ship_flag(self) -> str:
        """The header field that says what an order's posting delivers: ``ship`` (sales orders, purchase return
        orders) or ``receive`` (purchase orders, sales return orders)."""
        return "ship" if self.entity_set in ("salesOrders", "purchaseReturnOrders") else "receive"

    @property
    def category(self) -> str:
        """``sales`` or ``purchase``: postings of one category must never overlap."""
        return "sales" if self.entity_set.startswith("sales") else "purchase"

    @property
    def entity(self) -> EntitySet:
        return (BC_SETS if self.api == STANDARD_API else BC_CUSTOM_SETS)[self.entity_set]

    @property
    def line_entity(self) -> EntitySet:
        return (BC_SETS if self.api == STANDARD_API else BC_CUSTOM_SETS)[self.lines]


_INVOICE_ONLY = "The action can be applied to a draft invoice only."
_CREDIT_MEMO_ONLY = "The action can be applied to a draft credit memo only."

KINDS: dict[str, Kind] = {
    k.entity_set: k
    for k in (
        Kind(
            "salesOrders",
            STANDARD_API,
            "Sales Order",
            "customer",
            "salesOrderLines",
            "Microsoft.NAV.shipAndInvoice",
            "S-ORD",
            "PS-INV",
            "unitPrice",
            posted_set="salesInvoices",
            shipped_field="shippedQuantity",
            fully_field="fullyShipped",
        ),
        Kind(
            "salesInvoices",
            STANDARD_API,
            "Sales Invoice",
            "customer",
            "salesInvoiceLines",
            "Microsoft.NAV.post",
            "S-INV",
            "PS-INV",
            "unitPrice",
            pdf=True,
            draft_only_message=_INVOICE_ONLY,
        ),
        Kind(
            "salesCreditMemos",
            STANDARD_API,
            "Sales Credit Memo",
            "customer",
            "salesCreditMemoLines",
            "Microsoft.NAV.post",
            "S-CR",
            "PS-CR",
            "unitPrice",
            pdf=True,
            draft_only_message=_CREDIT_MEMO_ONLY,
        ),
        Kind(
            "salesReturnOrders",
            CUSTOM_API,
            "Sales Return Order",
            "customer",
            "salesReturnOrderLines",
            "Microsoft.NAV.receiveAndCredit",
            "S-RET",
            "PS-CR",
            "unitPrice",
            posted_set="salesCreditMemos",
        ),
        Kind(
            "purchaseOrders",
            STANDARD_API,
            "Purchase Order",
            "vendor",
            "purchaseOrderLines",
            "Microsoft.NAV.receiveAndInvoice",
            "P-ORD",
            "PP-INV",
            "directUnitCost",
            posted_set="purchaseInvoices",
            shipped_field="receivedQuantity",
            fully_field="fullyReceived",
        ),
        Kind(
            "purchaseInvoices",
            STANDARD_API,
            "Purchase Invoice",
            "vendor",
            "purchaseInvoiceLines",
            "Microsoft.NAV.post",
            "P-INV",
            "PP-INV",
            "directUnitCost",
            pdf=True,
            draft_only_message=_INVOICE_ONLY,
        ),
        Kind(
            "purchaseCreditMemos",
            STANDARD_API,
            "Purchase Credit Memo",
            "vendor",
            "purchaseCreditMemoLines",
            "Microsoft.NAV.post",
            "P-CR",
            "PP-CR",
            "directUnitCost",
            pdf=True,
            draft_only_message=_CREDIT_MEMO_ONLY,
        ),
        Kind(
            "purchaseReturnOrders",
            CUSTOM_API,
            "Purchase Return Order",
            "vendor",
            "purchaseReturnOrderLines",
            "Microsoft.NAV.shipAndCredit",
            "P-RET",
            "PP-CR",
            "directUnitCost",
            posted_set="purchaseCreditMemos",
        ),
    )
}

_LINE_SETS = frozenset(k.lines for k in KINDS.values())
#: Row of the store's ``counters`` table that says the documents were seeded (gone after a reset's wipe).
_SEEDED_MARKER = "documents:seeded"

_DOC_PATH = re.compile(r"^companies\((?P<cid>[^)]*)\)/(?P<set>[A-Za-z]+)(?:\((?P<key>[^)]*)\))?(?:/(?P<rest>.+))?$")


# -- configuration and the posting log ---------------------------------------------------------------------
@dataclass
class PostingConfig:
    """Run-time behaviour of the posting actions (``POST /_sandbox/posting``; ``{}`` resets).

    :param latency_ms: time every posting takes (the ERP's own posting time), milliseconds.
    :param hang_numbers: document numbers whose posting hangs; ``["*"]`` makes every posting hang.
    :param hang_s: how long a hang lasts before the sandbox answers 408 without posting (the API's operation
        timeout; the real one is 8 minutes), seconds.
    :param pdf_latency_ms: time every ``pdfDocumentContent`` takes, milliseconds.
    :param pdf_hang: ``pdfDocumentContent`` hangs for ``hang_s`` and then answers 408.
    :param allow_posting_from: first date of the allowed posting period (General Ledger Setup,
        Allow Posting From); default: 1 January of the demo's Starting Year (the current year - 1).
    :param allow_posting_to: last allowed date; default none.
    :param invoice_discounts: Discount % per customer/vendor number (the Cust./Vend. Invoice Disc. terms) that
        ``Microsoft.NAV.calculateInvoiceDiscount`` applies; default none (no invoice discount).
    """

    latency_ms: float = 0.0
    hang_numbers: list[str] = field(default_factory=list)
    hang_s: float = 60.0
    pdf_latency_ms: float = 0.0
    pdf_hang: bool = False
    allow_posting_from: str | None = None
    allow_posting_to: str | None = None
    invoice_discounts: dict[str, float] = field(default_factory=dict)

    def posting_from(self) -> date:
        if self.allow_posting_from:
            return date.fromisoformat(self.allow_posting_from)
        return date(date.today().year - 1, 1, 1)


@dataclass
class PostingRecord:
    """One posting as the sandbox saw it: start and end (UTC ISO 8601), outcome ``posted``, ``error`` or
    ``timeout`` (a hang that ended without posting); for a posted document what it posted (``ship``,
    ``invoice``: an order's choice, both for other documents) and its ``postingDate`` and ``vatDate``."""

    category: str
    entitySet: str
    id: str
    number: str
    startedAt: str
    endedAt: str
    outcome: str
    message: str = ""
    ship: bool | None = None
    invoice: bool | None = None
    postingDate: str | None = None
    vatDate: str | None = None


#: The custom API page of Sales/Purchase Headers for posting with Business Central's options (route
#: ``api/cronus/integration/v1.0``), per category: see :meth:`Documents.posting_document`.
POSTING_DOCUMENT_SETS = {"salesPostingDocuments": "sales", "purchasePostingDocuments": "purchase"}
#: Header fields the page writes that API v2.0 does not show; kept in the stored body under these names.
_SHIP, _RECEIVE, _INVOICE, _STATUS, _VAT_DATE, _VAT_DATE_WITH = (
    "_ship",
    "_receive",
    "_invoice",
    "_status",
    "_vatDate",
    "_vatDateWithPostingDate",
)


def vat_date(body: dict[str, Any]) -> str | None:
    """The header's VAT Reporting Date: the one written through the posting page, else the posting date (General
    Ledger Setup's default VAT Reporting Date usage, "Posting Date": validating the posting date sets it, so it
    follows a posting date changed after it was written)."""
    if body.get(_VAT_DATE) and body.get(_VAT_DATE_WITH) == body.get("postingDate"):
        return str(body[_VAT_DATE])
    return body.get("postingDate")


def header_status(kind: Kind, body: dict[str, Any]) -> str:
    """The Sales/Purchase Header's Status (Open, Released, Pending Approval). API v2.0 shows orders' as Draft
    (Open), In Review (Pending Approval), Open (Released) (codeunit "Graph Mgt - Sales Order Buffer"); invoices
    and credit memos show Draft until posted whatever their release status, kept here under ``_status``."""
    if body.get("status") == "In Review":
        return "Pending Approval"
    if kind.entity.fields["status"].enum == _ORDER_STATUS:
        return {"Open": "Released"}.get(str(body.get("status")), "Open")
    return str(body.get(_STATUS) or "Open")


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.config = PostingConfig()
        self.postings: list[PostingRecord] = []
        self.cancel = threading.Event()

    def reset(self) -> None:
        with self.lock:
            self.config = PostingConfig()
            self.postings = []
        # Wake every hanging posting so that a reset leaves no request behind.
        self.cancel.set()
        self.cancel = threading.Event()


STATE = _State()


def _error(message: str, code: str = "Application_DialogException", status: int = 400) -> ApiError:
    return ApiError(status, code, message)


def _sleep(seconds: float) -> bool:
    """Sleep unless the sandbox is reset meanwhile; ``False`` when woken by a reset."""
    return not STATE.cancel.wait(seconds) if seconds > 0 else True


# -- the HTTP side -------------------------------------------------------------------------------------------
class Documents:
    """Document-specific requests of the Business Central emulation.

    :param bc: the sandbox's Business Central (its store, validation and writes are reused).
    """

    def __init__(self, bc: BusinessCentral) -> None:
        self.bc = bc
        self.store = bc.store

    def handle(self, request: ApiRequest, api: str) -> ApiResponse | None:
        """Answer a document request, or return ``None`` for the generic routes to answer it.

        Errors come back as responses in Business Central's shape.
        """
        match = _DOC_PATH.match(request.path)
        if match is None:
            return None
        if match.group("set") in POSTING_DOCUMENT_SETS and api == CUSTOM_API:
            if match.group("cid").strip("'").lower() != COMPANY_ID:
                return None
            self.ensure_seeded()
            try:
                return self.posting_document(request, match.group("set"), match.group("key"), match.group("rest"))
            except ApiError as err:
                return ApiResponse(err.status, error_body(err.code, err.message), err.headers)
        kind = KINDS.get(match.group("set"))
        key, rest = match.group("key"), match.group("rest")
        if kind is None or kind.api != api:
            if match.group("set") in _LINE_SETS:
                self.ensure_seeded()
            return None
        if key is not None and rest is None:
            self.ensure_seeded()
            return None
        if key is None and request.method != "POST":
            self.ensure_seeded()
            return None
        if match.group("cid").strip("'").lower() != COMPANY_ID:
            return None
        self.ensure_seeded()
        try:
            if key is None:
                return self._create(request, kind)
            record_id = unquote(key).strip("'").lower()
            return self._bound(request, kind, record_id, rest or "")
        except ApiError as err:
            return ApiResponse(err.status, error_body(err.code, err.message), err.headers)

    def ensure_seeded(self) -> None:
        """Seed the documents once per fresh store: after a reset the store is wiped and reseeded with master
        data, and the first document request then adds the documents (and clears the posting log)."""
        if self._seeded():
            return
        with self.store.transaction() as db:
            if self._seeded(db):
                return
            db.execute("INSERT INTO counters VALUES (?, 1)", (_SEEDED_MARKER,))
            for kind in KINDS.values():
                # Lines are read by document (posting, totals): without this index every read scans them all.
                table = kind.line_entity.table
                db.execute(
                    f'CREATE INDEX IF NOT EXISTS "{table}_document" ON "{table}" (json_extract(body, \'$.documentId\'))'
                )
            STATE.reset()
            seed(self.bc)

    def _seeded(self, db: sqlite3.Connection | None = None) -> bool:
        reader = db or self.store.read()
        return reader.execute("SELECT 1 FROM counters WHERE name = ?", (_SEEDED_MARKER,)).fetchone() is not None

    def _bound(self, request: ApiRequest, kind: Kind, record_id: str, rest: str) -> ApiResponse:
        if rest == kind.lines:
            if request.method == "GET":
                header = self._get(kind.entity, record_id)
                lines = [self.bc.render(kind.line_entity, row) for row in self._line_rows(kind, header.id)]
                return ApiResponse(200, {"value": lines})
            if request.method == "POST":
                header = self._get(kind.entity, record_id)
                self._test_status_open(kind, header)
                payload = request.json_body()
                with self.store.transaction() as db:
                    row = self._add_line(db, kind, header.id, payload)
                    self._retotal(db, kind, header.id)
                return ApiResponse(201, self.bc.render(kind.line_entity, row))
        if rest.startswith("Microsoft.NAV."):
            if request.method != "POST":
                raise _error(f"'{request.method}' is not allowed on an action.", "BadRequest_MethodNotAllowed", 405)
            if rest != kind.action:
                raise _error(f"The action '{rest}' is not bound to '{kind.entity_set}'.", "BadRequest_NotFound", 404)
            return self.post(kind, record_id)
        if kind.pdf and rest in ("pdfDocument", "pdfDocument/pdfDocumentContent") and request.method == "GET":
            header = self._get(kind.entity, record_id)
            if rest == "pdfDocument":
                url = f"{request.root}companies({COMPANY_ID})/{kind.entity_set}({header.id})/pdfDocument"
                return ApiResponse(
                    200,
                    {
                        "id": header.id,
                        "parentId": header.id,
                        "parentType": kind.display,
                        "pdfDocumentContent@odata.mediaReadLink": f"{url}/pdfDocumentContent",
                    },
                )
            return self._pdf(kind, header)
        raise _error(f"The request URI is not valid. The segment '{rest}' is unknown.", "BadRequest_NotFound", 404)

    # -- the posting page (custom API) -------------------------------------------------------------------
    def posting_document(self, request: ApiRequest, set_name: str, key: str | None, rest: str | None) -> ApiResponse:
        """The custom API page ``salesPostingDocuments`` / ``purchasePostingDocuments`` (README, "Posting with
        Business Central's options"): one Sales/Purchase Header of any document type by its id (the API v2.0 id).

        - ``GET (<id>)``: ``id``, ``documentType``, ``number``, ``status`` (Open, Released, Pending Approval),
          ``ship``, ``receive``, ``invoice``, ``postingDate``, ``documentDate``, ``vatDate``;
        - ``PATCH (<id>)``: ``ship`` / ``receive`` / ``invoice`` (orders and return orders only: each order type
          takes its own pair, e.g. a sales order ``ship`` and ``invoice``; an invoice or credit memo refuses
          ``false``, as it always posts in full), ``vatDate``;
        - ``POST (<id>)/Microsoft.NAV.release`` (codeunit "Release Sales Document": refuses a document with
          nothing to release or pending approval; a released one is left as it is),
          ``Microsoft.NAV.calculateInvoiceDiscount`` (codeunit "Sales-Calc. Discount": the party's Discount %
          of ``invoice_discounts``), ``Microsoft.NAV.post`` (codeunit "Sales-Post" with the header's
          Ship/Receive and Invoice), each 204.

        Sandbox limits: no collection reads (405) and no ``$batch``; return orders post received (shipped) and
        credited together only.
        """
        category = POSTING_DOCUMENT_SETS[set_name]
        type_name = set_name[:-1]
        if key is None:
            raise _error(
                f"'{request.method}' requests for '{set_name}' of EdmType 'Collection' are not allowed.",
                "BadRequest_MethodNotAllowed",
                405,
            )
        record_id = unquote(key).strip("'").lower()
        found = next(
            (
                (kind, row)
                for kind in KINDS.values()
                if kind.category == category and (row := self.store.get(kind.entity, record_id)) is not None
            ),
            None,
        )
        if found is None:
            display = "Sales Header" if category == "sales" else "Purchase Header"
            raise _error(
                f"The {display} does not exist. Identification fields and values: SystemId='{record_id}'",
                "BadRequest_NotFound",
                404,
            )
        kind, row = found
        if rest is None and request.method == "GET":
            return ApiResponse(200, self._render_posting_document(kind, row), {"ETag": bc_etag(row.version)})
        if rest is None and request.method == "PATCH":
            payload = request.json_body()
            if not isinstance(payload, dict):
                raise _error("Invalid Request Body: a JSON object is required.", "BadRequest")
            changes = self._posting_changes(kind, type_name, payload)
            with self.store.transaction() as db:
                row = self._get(kind.entity, record_id)
                self.bc._check_if_match(request, row)  # If-Match required, a stale one refused, as every PATCH
                row = self._write_header(db, kind, row, changes)
            return ApiResponse(200, self._render_posting_document(kind, row), {"ETag": bc_etag(row.version)})
        if rest == "Microsoft.NAV.release" and request.method == "POST":
            self._release(kind, record_id)
            return ApiResponse(204)
        if rest == "Microsoft.NAV.calculateInvoiceDiscount" and request.method == "POST":
            self._calculate_invoice_discount(kind, record_id)
            return ApiResponse(204)
        if rest == "Microsoft.NAV.post" and request.method == "POST":
            body = row.body
            if (
                kind.shipped_field is None
                and kind.posted_set is not None
                and not (body.get(f"_{kind.ship_flag}") and body.get(_INVOICE))
            ):
                raise _error(
                    f"The sandbox posts a {kind.display} with {kind.ship_flag.title()} and Invoice together only.",
                    "BadRequest",
                )
            if kind.posted_set is None:
                return self.post(kind, record_id)
            return self.post(
                kind, record_id, ship=bool(body.get(f"_{kind.ship_flag}")), invoice=bool(body.get(_INVOICE))
            )
        if rest is not None and rest.startswith("Microsoft.NAV.") and request.method != "POST":
            raise _error(f"'{request.method}' is not allowed on an action.", "BadRequest_MethodNotAllowed", 405)
        raise _error(f"The request URI is not valid. The segment '{rest}' is unknown.", "BadRequest_NotFound", 404)

    def _render_posting_document(self, kind: Kind, row: Row) -> dict[str, Any]:
        body = row.body
        date_field = kind.entity.fields.get("orderDate") or kind.entity.fields.get("documentDate")
        date_name = (
            date_field.name
            if date_field
            else ("invoiceDate" if "invoiceDate" in kind.entity.fields else "creditMemoDate")
        )
        is_order = kind.posted_set is not None
        return {
            "@odata.etag": bc_etag(row.version),
            "id": row.id,
            "documentType": kind.document_type,
            "number": row.bkey,
            "status": header_status(kind, body),
            "ship": bool(body.get(_SHIP)) if is_order else True,
            "receive": bool(body.get(_RECEIVE)) if is_order else True,
            "invoice": bool(body.get(_INVOICE)) if is_order else True,
            "postingDate": body.get("postingDate"),
            "documentDate": body.get(date_name),
            "vatDate": vat_date(body),
        }

    def _posting_changes(self, kind: Kind, type_name: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Validate a PATCH of the posting page; returns the stored body's changes."""
        changes: dict[str, Any] = {}
        read_only = ("id", "documentType", "number", "status", "postingDate", "documentDate")
        for name, value in payload.items():
            if name.startswith("@") or name in read_only:
                continue
            if name in ("ship", "receive", "invoice"):
                if not isinstance(value, bool):
                    raise _error(
                        f"Cannot convert the literal '{value}' to the expected type 'Edm.Boolean'.", "BadRequest"
                    )
                if kind.posted_set is None:
                    if not value:
                        raise _error(
                            f"A {kind.display} always posts in full: {name} cannot be false. Ship/Receive and Invoice "
                            "are the posting choices of orders and return orders.",
                            "BadRequest",
                        )
                    continue
                if name != "invoice" and name != kind.ship_flag:
                    raise _error(
                        f"{name} does not apply to a {kind.display}: it posts with {kind.ship_flag} and invoice.",
                        "BadRequest",
                    )
                changes[f"_{name}"] = value
            elif name == "vatDate":
                try:
                    date.fromisoformat(str(value))
                except ValueError as exc:
                    raise _error(
                        f"Cannot convert the literal '{value}' to the expected type 'Edm.Date'.", "BadRequest"
                    ) from exc
                changes[_VAT_DATE] = str(value)
            else:
                raise _error(
                    f"The property '{name}' does not exist on type 'Microsoft.NAV.{type_name}'. "
                    "Make sure to only use property names that are defined by the type.",
                    "BadRequest",
                )
        return changes

    def _write_header(self, db: sqlite3.Connection, kind: Kind, row: Row, changes: dict[str, Any]) -> Row:
        body = {**row.body, **changes}
        if _VAT_DATE in changes:
            body[_VAT_DATE_WITH] = body.get("postingDate")
        modified = timestamp()
        body["lastModifiedDateTime"] = modified
        self.store.update(db, kind.entity, row.id, row.bkey, self.store.next_version(db), modified, body)
        return self._get(kind.entity, row.id)

    def _release(self, kind: Kind, record_id: str) -> None:
        """Release Sales/Purchase Document: Open -> Released, after its checks."""
        with self.store.transaction() as db:
            row = self._get(kind.entity, record_id)
            status = header_status(kind, row.body)
            if status == "Released":
                return
            if status == "Pending Approval":
                raise _error("This document can only be released when the approval process is complete.")
            lines = self._line_rows(kind, row.id, db)
            if not any(line.body.get("lineType") != "Comment" and line.body.get("quantity") for line in lines):
                raise _error(
                    f"There is nothing to release for the document of type {kind.document_type} with the number "
                    f"{row.bkey}."
                )
            ordered = kind.entity.fields["status"].enum == _ORDER_STATUS
            self._write_header(db, kind, row, {"status": "Open"} if ordered else {_STATUS: "Released"})

    def _calculate_invoice_discount(self, kind: Kind, record_id: str) -> None:
        """Sales-Calc. Discount: the invoice discount of the party's terms on the lines' amount."""
        with STATE.lock:
            rates = dict(STATE.config.invoice_discounts)
        with self.store.transaction() as db:
            row = self._get(kind.entity, record_id)
            rate = Decimal(str(rates.get(str(row.body.get(f"{kind.party}Number")), 0)))
            # Decimal arithmetic rounded to the currency's 0.01, half up, as Business Central rounds amounts.
            base = sum(
                (Decimal(str(line.body.get("amountExcludingTax") or 0)) for line in self._line_rows(kind, row.id, db)),
                Decimal(0),
            )
            discount = (base * rate / 100).quantize(Decimal("0.01"), ROUND_HALF_UP)
            self._write_header(db, kind, row, {"discountAmount": float(discount)})
            self._retotal(db, kind, row.id)

    def _test_status_open(self, kind: Kind, header: Row) -> None:
        """A released document's lines cannot change (the lines' TestStatusOpen)."""
        status = header_status(kind, header.body)
        if status != "Open":
            raise _error(
                f"Status must be equal to 'Open'  in {kind.entity.display}: Document Type={kind.document_type}, "
                f"No.={header.bkey}. Current value is '{status}'."
            )

    # -- drafts -----------------------------------------------------------------------------------------
    def _create(self, request: ApiRequest, kind: Kind) -> ApiResponse:
        payload = request.json_body()
        if not isinstance(payload, dict):
            raise _error("Invalid Request Body: a JSON object is required.", "BadRequest")
        with self.store.transaction() as db:
            row = self.create_document(db, kind, payload)
        return ApiResponse(201, self.bc.render(kind.entity, row))

    def create_document(self, db: sqlite3.Connection, kind: Kind, payload: dict[str, Any]) -> Row:
        """Create a draft with its lines (``payload[kind.lines]``), numbered from its series; party fields are
        completed from the customer/vendor number or id.

        :raises ApiError: 400 when the customer/vendor does not exist or a field is invalid.
        """
        header = {k: v for k, v in payload.items() if k != kind.lines}
        if not header.get("number"):
            header["number"] = f"{kind.draft_series}{1000 + self.store.next_number(db, kind.draft_series)}"
        self._complete_party(kind, header)
        row = self.bc.create(db, kind.entity, header)
        for line in payload.get(kind.lines) or []:
            self._add_line(db, kind, row.id, line)
        return self._retotal(db, kind, row.id)

    def _complete_party(self, kind: Kind, header: dict[str, Any]) -> None:
        parties = BC_SETS["customers" if kind.party == "customer" else "vendors"]
        number, party_id = header.get(f"{kind.party}Number"), header.get(f"{kind.party}Id")
        party = (
            self.store.get(parties, party_id)
            if party_id and party_id != EMPTY_GUID
            else self.store.get_by_key(parties, number)
            if number
            else None
        )
        if party is None:
            raise _error(
                f"The {parties.display} does not exist. Identification fields and values: No.='{number or party_id}'"
            )
        header[f"{kind.party}Id"] = party.id
        header[f"{kind.party}Number"] = party.bkey
        header[f"{kind.party}Name"] = party.body.get("displayName", "")
        header.setdefault("paymentTermsCode", party.body.get("paymentTermsCode", ""))
        header.setdefault("currencyCode", party.body.get("currencyCode", ""))

    def _add_line(self, db: sqlite3.Connection, kind: Kind, document_id: str, line: dict[str, Any]) -> Row:
        count = len(self._line_rows(kind, document_id, db))
        values = {"sequence": 10000 * (count + 1), **line, "documentId": document_id}
        return self.bc.create(db, kind.line_entity, values)

    def _line_rows(self, kind: Kind, document_id: str, db: sqlite3.Connection | None = None) -> list[Row]:
        entity = kind.line_entity
        reader = db or self.store.read()
        rows = reader.execute(
            f'SELECT seq, id, bkey, version, modified, body FROM "{entity.table}"'
            " WHERE json_extract(body, '$.documentId') = ? ORDER BY seq",
            (document_id,),
        ).fetchall()
        return [Row(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in rows]

    def _retotal(self, db: sqlite3.Connection, kind: Kind, document_id: str) -> Row:
        """Recompute line amounts and the header's totals (as the API's read-only totals)."""
        total = 0.0
        for line in self._line_rows(kind, document_id, db):
            amount = round(float(line.body.get("quantity") or 0) * float(line.body.get(kind.cost_field) or 0), 2)
            total += amount
            if line.body.get("amountExcludingTax") != amount:
                self.store.update(
                    db,
                    kind.line_entity,
                    line.id,
                    None,
                    self.store.next_version(db),
                    timestamp(),
                    {**line.body, "amountExcludingTax": amount},
                )
        header = self._get(kind.entity, document_id)
        # The invoice discount (discountAmount) comes off the lines' amount before VAT.
        total -= float(header.body.get("discountAmount") or 0)
        tax = round(total * VAT_RATE, 2)
        body = {
            **header.body,
            "totalAmountExcludingTax": round(total, 2),
            "totalTaxAmount": tax,
            "totalAmountIncludingTax": round(total + tax, 2),
        }
        version, modified = self.store.next_version(db), timestamp()
        body["lastModifiedDateTime"] = modified
        self.store.update(db, kind.entity, header.id, header.bkey, version, modified, body)
        return self._get(kind.entity, document_id)

    def _get(self, entity: EntitySet, record_id: str) -> Row:
        row = self.store.get(entity, record_id)
        if row is None:
            raise _error(
                f"The {entity.display} does not exist. Identification fields and values: SystemId='{record_id}'",
                "BadRequest_NotFound",
                404,
            )
        return row

    # -- posting ------------------------------------------------------------------------------------------
    def post(self, kind: Kind, record_id: str, *, ship: bool = True, invoice: bool = True) -> ApiResponse:
        """Run a posting action: latency, optional hang, the checks, then the state change; recorded with its
        start and end in the posting log.

        :param ship: an order ships (receives) what is left to ship; :param invoice: it invoices what is shipped
            and not invoiced. The standard actions (``shipAndInvoice``, ``post``, ...) post with both.
        """
        started = timestamp()
        with STATE.lock:
            config = PostingConfig(**asdict(STATE.config))
        current = self.store.get(kind.entity, record_id)
        number = str(current.bkey) if current else ""
        if current and ("*" in config.hang_numbers or number in config.hang_numbers):
            _sleep(config.hang_s)
            self._log(kind, record_id, number, started, "timeout", "hang")
            raise _error("The operation has timed out.", "Request_Timeout", 408)
        _sleep(config.latency_ms / 1000)
        try:
            with self.store.transaction() as db:
                row = self._get(kind.entity, record_id)
                number = str(row.bkey)
                self._check(kind, row, config, ship=ship, invoice=invoice)
                posted_number = self._apply(db, kind, row, ship=ship, invoice=invoice)
        except ApiError as err:
            self._log(kind, record_id, number, started, "error", err.message)
            raise
        self._log(
            kind,
            record_id,
            number,
            started,
            "posted",
            posted_number,
            ship=ship,
            invoice=invoice,
            posting_date=row.body.get("postingDate"),
            vat_date=vat_date(row.body),
        )
        return ApiResponse(204)

    def _log(
        self,
        kind: Kind,
        record_id: str,
        number: str,
        started: str,
        outcome: str,
        message: str,
        *,
        ship: bool | None = None,
        invoice: bool | None = None,
        posting_date: str | None = None,
        vat_date: str | None = None,
    ) -> None:
        record = PostingRecord(
            kind.category,
            kind.entity_set,
            record_id,
            number,
            started,
            timestamp(),
            outcome,
            message,
            ship,
            invoice,
            posting_date,
            vat_date,
        )
        with STATE.lock:
            STATE.postings.append(record)

    def _check(self, kind: Kind, row: Row, config: PostingConfig, *, ship: bool, invoice: bool) -> None:
        """Business Central's checks before posting, in its order; the first failing one answers."""
        body = row.body
        if kind.draft_only_message and body.get("status") != "Draft":
            raise _error(kind.draft_only_message)
        if not (ship or invoice):
            raise _error(
                'Please enter "Yes" in Ship and/or Invoice and/or Receive.'
                if kind.category == "sales"
                else 'Please enter "Yes" in Receive and/or Invoice and/or Ship.'
            )
        parties = BC_SETS["customers" if kind.party == "customer" else "vendors"]
        party = self.store.get(parties, body.get(f"{kind.party}Id") or "")
        blocked = (party.body.get("blocked") or " ").strip() if party else ""
        is_order = kind.posted_set is not None
        # Customers blocked for Invoice cannot post any document; Ship blocks orders (they ship); vendors are
        # blocked for posting only with All (Payment blocks payments).
        if blocked == "All" or (blocked == "Invoice" and kind.party == "customer") or (blocked == "Ship" and is_order):
            raise _error(
                f"You cannot post this type of document when {parties.display} {body.get(f'{kind.party}Number')} "
                f"is blocked with type {blocked}"
            )
        posting_date = date.fromisoformat(body.get("postingDate") or "0001-01-01")
        to = date.fromisoformat(config.allow_posting_to) if config.allow_posting_to else date.max
        if not config.posting_from() <= posting_date <= to:
            raise _error("Posting Date is not within your range of allowed posting dates.")
        if (
            kind.entity_set in ("purchaseInvoices", "purchaseOrders")
            and invoice
            and not body.get("vendorInvoiceNumber")
        ):
            raise _error(
                "You need to enter the document number of the document from the vendor in the Vendor Invoice No. "
                "field, so that this document stays linked to the original."
            )
        lines = self._line_rows(kind, row.id)
        if not any(sum(self._to_post(kind, line, ship=ship, invoice=invoice)) for line in lines):
            raise _error("There is nothing to post.")

    @staticmethod
    def _to_post(kind: Kind, line: Row, *, ship: bool, invoice: bool) -> tuple[float, float]:
        """(quantity to ship/receive, quantity to invoice) of a line posted with ``ship``/``invoice``: an order
        ships what is left and invoices what is shipped and not yet invoiced; other documents post all."""
        if line.body.get("lineType") == "Comment":
            return 0.0, 0.0
        quantity = float(line.body.get("quantity") or 0)
        if kind.shipped_field is None:
            return quantity, quantity
        shipped = float(line.body.get(kind.shipped_field) or 0)
        invoiced = float(line.body.get("invoicedQuantity") or 0)
        to_ship = quantity - shipped if ship else 0.0
        return to_ship, (shipped + to_ship - invoiced) if invoice else 0.0

    def _apply(self, db: sqlite3.Connection, kind: Kind, row: Row, *, ship: bool, invoice: bool) -> str:
        """Change state as posting does; returns the posted document's number.

        An order posted with ``ship`` only stays, its lines shipped (``shippedQuantity``) and ``fullyShipped``
        set; one with ``invoice`` gets a posted invoice of the quantities shipped and not invoiced, and is
        deleted once every line is shipped and invoiced in full.
        """
        if kind.posted_set is None:
            posted_number = f"{kind.posted_series}{100000 + self.store.next_number(db, kind.posted_series)}"
            body = {**row.body, "number": posted_number, "status": "Open"}
            version, modified = self.store.next_version(db), timestamp()
            body["lastModifiedDateTime"] = modified
            self.store.update(db, kind.entity, row.id, posted_number, version, modified, body)
            return posted_number
        lines = self._line_rows(kind, row.id, db)
        quantities = [self._to_post(kind, line, ship=ship, invoice=invoice) for line in lines]
        if not invoice:
            series = "PS-SHP" if kind.category == "sales" else "PP-RCT"
            posted_number = f"{series}{100000 + self.store.next_number(db, series)}"
        else:
            posted_number = self._post_invoice(db, kind, row, lines, [q[1] for q in quantities])
        done = True
        for line, (to_ship, to_invoice) in zip(lines, quantities, strict=True):
            if kind.shipped_field is None:
                self.store.delete(db, kind.line_entity, line.id, self.store.next_version(db))
                continue
            body = dict(line.body)
            body[kind.shipped_field] = float(body.get(kind.shipped_field) or 0) + to_ship
            body["invoicedQuantity"] = float(body.get("invoicedQuantity") or 0) + to_invoice
            done = done and body["invoicedQuantity"] >= float(body.get("quantity") or 0)
            self.store.update(db, kind.line_entity, line.id, None, self.store.next_version(db), timestamp(), body)
        if kind.shipped_field is None or done:
            for line in self._line_rows(kind, row.id, db):
                self.store.delete(db, kind.line_entity, line.id, self.store.next_version(db))
            self.store.delete(db, kind.entity, row.id, self.store.next_version(db))
            return posted_number
        header = self._get(kind.entity, row.id)
        fully = all(
            float(line.body.get(kind.shipped_field) or 0) >= float(line.body.get("quantity") or 0)
            for line in self._line_rows(kind, row.id, db)
            if line.body.get("lineType") != "Comment"
        )
        body = {**header.body, "lastModifiedDateTime": timestamp()}
        if kind.fully_field:
            body[kind.fully_field] = fully
        self.store.update(
            db, kind.entity, header.id, header.bkey, self.store.next_version(db), body["lastModifiedDateTime"], body
        )
        return posted_number

    def _post_invoice(
        self, db: sqlite3.Connection, kind: Kind, row: Row, lines: list[Row], to_invoice: list[float]
    ) -> str:
        """The posted invoice (credit memo) of an order (return order): its header and the invoiced quantities."""
        assert kind.posted_set is not None
        posted_number = f"{kind.posted_series}{100000 + self.store.next_number(db, kind.posted_series)}"
        target = KINDS[kind.posted_set]
        header = {
            name: value
            for name, value in row.body.items()
            if name in target.entity.fields and not target.entity.fields[name].read_only and name not in ("id",)
        }
        header.update({"number": posted_number, "status": "Open"})
        date_field = "invoiceDate" if "invoiceDate" in target.entity.fields else "creditMemoDate"
        header[date_field] = row.body.get("postingDate")
        if "orderId" in target.entity.fields:
            header.update({"orderId": row.id, "orderNumber": row.bkey})
        posted = self.bc.create(db, target.entity, header)
        for line, quantity in zip(lines, to_invoice, strict=True):
            if not quantity and line.body.get("lineType") != "Comment":
                continue
            values = {
                name: value
                for name, value in line.body.items()
                if name in target.line_entity.fields
                and not target.line_entity.fields[name].read_only
                and name not in ("id", "documentId")
            }
            if line.body.get("lineType") != "Comment":
                values["quantity"] = quantity
            if kind.cost_field in values:
                values[target.cost_field] = values.pop(kind.cost_field)
            self._add_line(db, target, posted.id, values)
        self._retotal(db, target, posted.id)
        return posted_number

    # -- PDF ------------------------------------------------------------------------------------------------
    def _pdf(self, kind: Kind, header: Row) -> ApiResponse:
        with STATE.lock:
            config = PostingConfig(**asdict(STATE.config))
        if config.pdf_hang:
            _sleep(config.hang_s)
            raise _error("The operation has timed out.", "Request_Timeout", 408)
        _sleep(config.pdf_latency_ms / 1000)
        body = header.body
        title = f"{kind.display}{'' if body.get('status') != 'Draft' else ' (draft)'} {header.bkey}"
        text = [
            "CRONUS UK Ltd.",
            title,
            f"{kind.party.title()} {body.get(f'{kind.party}Number')} {body.get(f'{kind.party}Name')}",
            f"Posting Date {body.get('postingDate')}",
        ]
        for line in self._line_rows(kind, header.id):
            lb = line.body
            text.append(
                f"{lb.get('lineObjectNumber', '')} {lb.get('description', '')} {lb.get('quantity', '')} "
                f"{lb.get('unitOfMeasureCode', '')} {lb.get('amountExcludingTax', '')}"
            )
        text.append(f"Total incl. VAT {body.get('totalAmountIncludingTax')} {body.get('currencyCode') or 'GBP'}")
        return ApiResponse(200, render_pdf(text), {"Content-Type": "application/pdf"})


def render_pdf(lines: list[str]) -> bytes:
    """A one-page PDF 1.4 with ``lines`` of Helvetica text (enough for a posted document's print-out)."""

    def escape(text: str) -> str:
        return (
            text.encode("latin-1", "replace")
            .decode("latin-1")
            .replace("\\", "\\\\")
            .replace("(", "\\(")
            .replace(")", "\\)")
        )

    stream = "BT /F1 11 Tf 50 800 Td 14 TL " + " ".join(f"({escape(t)}) '" for t in lines) + " ET"
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        "/Resources << /Font << /F1 5 0 R >> >> >>",
        f"<< /Length {len(stream.encode('latin-1'))} >>\nstream\n{stream}\nendstream",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, obj in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{obj}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


# -- seed ------------------------------------------------------------------------------------------------------
def adjust_date(template: str, today: date | None = None) -> date:
    """The demo tool's ``AdjustDate``: year 1902 -> Starting Year (current year - 1), 1903 -> the year after;
    the ISO week and weekday are kept, except on the first or last day of a month (day and month kept)."""
    source = date.fromisoformat(template)
    year = (today or date.today()).year - 1 + (source.year - 1902)
    if source.day == 1 or (source + timedelta(days=1)).day == 1:
        return date(year, source.month, min(source.day, monthrange(year, source.month)[1]))
    _, week, weekday = source.isocalendar()
    try:
        return date.fromisocalendar(year, week, weekday)
    except ValueError:  # week 53 in a year with 52
        return date.fromisocalendar(year, 52, weekday)


#: Documents invented for the sandbox so that posting failures can be shown (not CRONUS data). Each fails
#: one of Business Central's checks; ``posting_year_offset`` -2 puts the posting date before the allowed period.
FAILING_DOCUMENTS: tuple[dict[str, Any], ...] = (
    {
        "set": "salesInvoices",
        "party": "20000",
        # its only line has quantity 0: "There is nothing to post."
        "lines": [("Item", "1928-S", "AMSTERDAM Lamp", 0, "PCS", 35.6)],
        "posting_year_offset": 0,
    },
    {
        "set": "salesCreditMemos",
        "party": "30000",
        # posted two years back, before Allow Posting From: "Posting Date is not within your range of ..."
        "lines": [("Item", "1920-S", "ANTWERP Conference Table", 1, "PCS", 420.4)],
        "posting_year_offset": -2,
    },
    {
        "set": "purchaseInvoices",
        "party": "40000",
        # no Vendor Invoice No.: "You need to enter the document number of the document from the vendor ..."
        "lines": [("Item", "1900-S", "PARIS Guest Chair, black", 4, "PCS", 97.5)],
        "posting_year_offset": 0,
    },
)

DESIGNED_TO_FAIL = "DESIGNED TO FAIL"
#: Your Reference of the generated benchmark invoices.
BENCHMARK = "BENCHMARK"


def seed(bc: BusinessCentral, today: date | None = None) -> int:
    """Create the CRONUS open orders and invoices and the :data:`FAILING_DOCUMENTS`; returns how many.

    Ids are stable (uuid5 of entity set and number) and numbers come from the draft number series, so a fresh
    store always gets the same documents.
    Runs in one transaction (a savepoint when called inside one).
    """
    today = today or date.today()
    documents = Documents(bc)
    created = 0
    sources = (
        ("sales_documents.json", "customer", {"Order": "salesOrders", "Invoice": "salesInvoices"}),
        ("purchase_documents.json", "vendor", {"Order": "purchaseOrders", "Invoice": "purchaseInvoices"}),
    )
    with bc.store.transaction() as db:
        for file_name, party, sets in sources:
            for source in json.loads((DEMO_DATA / file_name).read_text(encoding="utf-8")):
                set_name = sets.get(source["document_type"])
                if source.get("status_after_demo_generation") != "open" or set_name is None:
                    continue
                kind = KINDS[set_name]
                number = f"{kind.draft_series}{1000 + bc.store.next_number(db, kind.draft_series)}"
                header: dict[str, Any] = {
                    "id": stable_id(set_name, number),
                    "number": number,
                    f"{party}Number": source[f"{party}_number"],
                    "postingDate": adjust_date(source["posting_date_template"], today).isoformat(),
                    "yourReference": source.get("your_reference", ""),
                    "paymentTermsCode": source.get("payment_terms_code", ""),
                }
                document_date = adjust_date(
                    source.get("order_date_template")
                    if source["document_type"] == "Order"
                    else source["document_date_template"],
                    today,
                ).isoformat()
                header["orderDate" if source["document_type"] == "Order" else "invoiceDate"] = document_date
                if party == "vendor":
                    header["vendorInvoiceNumber"] = source.get("vendor_invoice_number", "")
                lines = [
                    {
                        "lineType": line["type"],
                        "lineObjectNumber": line.get("number", ""),
                        "description": line.get("description", ""),
                        "quantity": line.get("quantity", 0),
                        "unitOfMeasureCode": line.get("unit_of_measure_code", ""),
                        kind.cost_field: line.get("unit_price", line.get("direct_unit_cost", 0)),
                    }
                    for line in source["lines"]
                ]
                documents.create_document(db, kind, {**header, kind.lines: lines})
                created += 1
        for spec in FAILING_DOCUMENTS:
            kind = KINDS[spec["set"]]
            number = f"{kind.draft_series}{1000 + bc.store.next_number(db, kind.draft_series)}"
            posting_date = date(today.year + spec["posting_year_offset"], today.month, min(today.day, 28))
            header = {
                "id": stable_id(spec["set"], number),
                "number": number,
                f"{kind.party}Number": spec["party"],
                "postingDate": posting_date.isoformat(),
                "yourReference": DESIGNED_TO_FAIL,
            }
            lines = [
                {
                    "lineType": line_type,
                    "lineObjectNumber": item,
                    "description": description,
                    "quantity": quantity,
                    "unitOfMeasureCode": uom,
                    kind.cost_field: cost,
                }
                for line_type, item, description, quantity, uom, cost in spec["lines"]
            ]
            documents.create_document(db, kind, {**header, kind.lines: lines})
            created += 1
    return created


def generate_invoices(bc: BusinessCentral, entity_set: str, count: int, party_number: str) -> int:
    """Bulk-create ``count`` postable one-line draft invoices with Your Reference ``BENCHMARK``; returns how
    many."""
    kind = KINDS[entity_set]
    documents = Documents(bc)
    item = ("Item", "1928-S", "AMSTERDAM Lamp", 1, "PCS", 35.6)
    extra = {"vendorInvoiceNumber": "BENCH"} if kind.party == "vendor" else {}
    with bc.store.transaction() as db:
        for _ in range(count):
            documents.create_document(
                db,
                kind,
                {
                    f"{kind.party}Number": party_number,
                    "postingDate": date.today().isoformat(),
                    "yourReference": BENCHMARK,
                    **extra,
                    kind.lines: [
                        dict(
                            zip(
                                (
                                    "lineType",
                                    "lineObjectNumber",
                                    "description",
                                    "quantity",
                                    "unitOfMeasureCode",
                                    kind.cost_field,
                                ),
                                item,
                                strict=True,
                            )
                        )
                    ],
                },
            )
    return count


def _loopback_only(request: Request) -> None:
    if request.client is None or request.client.host not in ("127.0.0.1", "::1", "localhost"):
        raise HTTPException(403, "admin endpoints answer loopback callers only")


# -- installation and admin routes ------------------------------------------------------------------------------
def install(app: FastAPI, bc: BusinessCentral) -> Documents:
    """Register the documents with the sandbox app: document requests are answered ahead of the generic Business
    Central routes (which still serve GET/PATCH/DELETE of the document sets), and the admin routes are added.

    :return: the :class:`Documents` answering the requests.
    """
    documents = Documents(bc)
    generic = bc.handle

    def handle(request: ApiRequest, api: str) -> ApiResponse:
        return documents.handle(request, api) or generic(request, api)

    bc.handle = handle  # type: ignore[method-assign]
    # Like the sandbox's other admin endpoints: loopback callers only, no token.
    router = APIRouter(dependencies=[Depends(_loopback_only)])

    @router.post("/_sandbox/posting")
    async def configure_posting(request: Request) -> JSONResponse:
        """Set :class:`PostingConfig` fields (any subset); ``{}`` resets to no latency, no hangs."""
        payload = await request.json()
        await run_in_threadpool(documents.ensure_seeded)  # seeding resets the posting state: do it first
        with STATE.lock:
            STATE.config = PostingConfig(**payload) if payload else PostingConfig()
            return JSONResponse(asdict(STATE.config))

    @router.get("/_sandbox/postings")
    async def list_postings() -> JSONResponse:
        """Every posting since the last reset, in start order, with start/end timestamps."""
        with STATE.lock:
            return JSONResponse({"value": [asdict(p) for p in STATE.postings]})

    @router.delete("/_sandbox/postings")
    async def clear_postings() -> JSONResponse:
        with STATE.lock:
            STATE.postings = []
        return JSONResponse({"value": []})

    @router.post("/_sandbox/documents/generate")
    def generate(payload: dict[str, Any]) -> JSONResponse:
        """``{"entity": "salesInvoices", "count": N, "party": "10000"}``: N postable one-line draft invoices."""
        documents.ensure_seeded()
        entity = str(payload.get("entity", "salesInvoices"))
        party = str(payload.get("party") or "10000")  # customer and vendor 10000 both exist in CRONUS
        created = generate_invoices(bc, entity, int(payload.get("count", 1)), party)
        return JSONResponse({"created": created})

    app.include_router(router)
    return documents


def overlaps(postings: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Pairs of postings of one category whose [start, end] intervals overlap (hangs that ended without posting
    excluded: they did no posting work)."""
    found = []
    for category in {p["category"] for p in postings}:
        runs = sorted(
            (p for p in postings if p["category"] == category and p["outcome"] != "timeout"),
            key=lambda p: p["startedAt"],
        )
        for before, after in itertools.pairwise(runs):
            if after["startedAt"] < before["endedAt"]:
                found.append((before, after))
    return found
