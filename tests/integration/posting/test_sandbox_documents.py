"""The sandbox ERP's documents over real HTTP: posting changes state, refusals carry the API's error body."""

from __future__ import annotations

import shutil

import pytest

from dynamics_jobqueue.hooks.errors import ApiError, NotFoundError
from dynamics_jobqueue.posting.entries import Status
from dynamics_jobqueue.posting.printing import printer_for
from dynamics_jobqueue.posting.runner import PostingRunner


def test_an_order_posts_into_a_posted_invoice_and_cannot_post_twice(posting) -> None:
    order = posting.document("salesOrders", "S-ORD1001")
    posting.bc.post_action("salesOrders", order["id"], "Microsoft.NAV.shipAndInvoice")
    with pytest.raises(NotFoundError):
        posting.bc.get("salesOrders", order["id"])
    invoice = posting.documents("salesInvoices", f"orderId eq {order['id']}")[0]
    assert (invoice["status"], invoice["orderNumber"]) == ("Open", "S-ORD1001")
    assert invoice["totalAmountIncludingTax"] == order["totalAmountIncludingTax"]
    lines = posting.bc.request("GET", posting.bc.entity_path("salesInvoices") + f"({invoice['id']})/salesInvoiceLines")
    assert [line["lineObjectNumber"] for line in lines.json()["value"]] == ["1996-S"]
    with pytest.raises(NotFoundError):
        posting.bc.post_action("salesOrders", order["id"], "Microsoft.NAV.shipAndInvoice")
    pdf = posting.bc.get_bytes(f"salesInvoices({invoice['id']})/pdfDocument/pdfDocumentContent")
    assert pdf.startswith(b"%PDF-1.4") and b"S-ORD1001" not in pdf and invoice["number"].encode() in pdf


def test_refusals_answer_with_the_api_error_body(posting) -> None:
    nothing = posting.documents("salesInvoices", "yourReference eq 'DESIGNED TO FAIL'")[0]
    with pytest.raises(ApiError) as refused:
        posting.bc.post_action("salesInvoices", nothing["id"], "Microsoft.NAV.post")
    assert (refused.value.status, refused.value.code) == (400, "Application_DialogException")
    assert refused.value.message.startswith("There is nothing to post. CorrelationId: ")
    with pytest.raises(ApiError, match="is not bound to 'salesInvoices'"):
        posting.bc.post_action("salesInvoices", nothing["id"], "Microsoft.NAV.shipAndInvoice")
    outcomes = [(p["number"], p["outcome"]) for p in posting.postings()]
    assert outcomes == [(nothing["number"], "error")]


def test_return_orders_post_at_the_custom_api_path_through_the_job_queue(posting, state_store) -> None:
    created = posting.bc.create(
        "salesReturnOrders",
        {
            "customerNumber": "30000",
            "postingDate": posting.document("salesInvoices", "S-INV1001")["postingDate"],
            "salesReturnOrderLines": [
                {"lineType": "Item", "lineObjectNumber": "1920-S", "quantity": 1, "unitPrice": 420.4}
            ],
        },
    )
    assert posting.bc.route("salesReturnOrders") == "api/cronus/integration/v1.0"
    assert created["number"].startswith("S-RET") and created["totalAmountExcludingTax"] == 420.4
    entry = posting.enqueue("Sales Return Order", created["number"])
    assert PostingRunner(state_store, posting.bc, "SALESPOST").drain().posted == 1
    assert posting.entry(entry.id).status is Status.FINISHED
    assert posting.documents("salesReturnOrders") == []
    credit_memos = posting.documents("salesCreditMemos", "status eq 'Open'")
    assert [c["customerNumber"] for c in credit_memos] == ["30000"]


@pytest.mark.skipif(shutil.which("lp") is not None, reason="this machine has a CUPS client")
def test_post_and_print_without_a_printer_leaves_the_document_posted_in_error(posting, state_store) -> None:
    entry = posting.enqueue("Sales Invoice", "S-INV1001", post_and_print=True)
    PostingRunner(state_store, posting.bc, "SALESPOST", printer=printer_for("lp")).drain()
    failed = posting.entry(entry.id)
    assert failed.status is Status.ERROR
    assert (
        failed.error_message
        == "Sales Invoice S-INV1001 was posted but not printed: 'lp' is not installed (CUPS client)"
    )
    assert posting.bc.get("salesInvoices", str(entry.document_id))["status"] == "Open"
