"""Business Central's posting rules that API v2.0 cannot do, through the posting page (the custom API page
``salesPostingDocuments`` / ``purchasePostingDocuments``) on the sandbox over real HTTP and a real Postgres:
release before queueing, orders shipped or invoiced only, Replace VAT Date, Calc. Inv. Discount on and off; and
a connection without the page: the defaults still post through API v2.0, the options that need it are refused
naming it."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowFailException

from dynamics_jobqueue.hooks.business_central import BusinessCentralHook
from dynamics_jobqueue.hooks.errors import ApiError, MissingEndpointError
from dynamics_jobqueue.operators.posting import BatchPostOperator
from dynamics_jobqueue.posting import queue
from dynamics_jobqueue.posting.batch import BatchPostOptions, batch_post
from dynamics_jobqueue.posting.categories import document_type
from dynamics_jobqueue.posting.entries import Status
from dynamics_jobqueue.posting.runner import PostingRunner
from dynamics_jobqueue.posting.schedule import PostingSchedule

PAGE = "api/cronus/integration/v1.0"


def _page(posting, entity_set: str, record_id: str) -> dict:
    return posting.bc.get(entity_set, record_id)


def _lines(posting, entity_set: str, line_set: str, record_id: str) -> list[dict]:
    return posting.bc.request("GET", posting.bc.entity_path(entity_set) + f"({record_id})/{line_set}").json()["value"]


def _drain(posting, state_store, category: str = "SALESPOST"):
    return PostingRunner(state_store, posting.bc, category).drain()


def test_an_order_posted_ship_only_stays_open_with_its_quantities_shipped_then_invoice_only_posts_it(
    posting, state_store
) -> None:
    order = posting.document("salesOrders", "S-ORD1002")  # two lines: 10 x 1968-S, 7 x 1928-S
    ship_only = BatchPostOptions(document_types=("Order",), filter="number eq 'S-ORD1002'", invoice=False)
    assert batch_post(state_store, posting.bc, "SALESPOST", ship_only, user_id="ALICE").queued == 1
    # Released when queued, as Business Central's Batch Post: API v2.0 shows a released order as Open.
    assert _page(posting, "salesPostingDocuments", order["id"])["status"] == "Released"
    assert posting.document("salesOrders", "S-ORD1002")["status"] == "Open"

    assert _drain(posting, state_store).posted == 1
    shipped = posting.document("salesOrders", "S-ORD1002")  # still there: shipped, not invoiced
    assert shipped["fullyShipped"] is True
    lines = _lines(posting, "salesOrders", "salesOrderLines", order["id"])
    assert [(line["quantity"], line["shippedQuantity"], line["invoicedQuantity"]) for line in lines] == [
        (10, 10, 0),
        (7, 7, 0),
    ]
    assert posting.documents("salesInvoices", f"orderId eq {order['id']}") == []
    [log] = posting.postings()
    assert (log["outcome"], log["ship"], log["invoice"]) == ("posted", True, False)

    # Invoice only: what was shipped is invoiced, and the order, shipped and invoiced in full, is gone.
    invoice_only = BatchPostOptions(document_types=("Order",), filter="number eq 'S-ORD1002'", ship=False)
    assert batch_post(state_store, posting.bc, "SALESPOST", invoice_only, user_id="ALICE").queued == 1
    assert _drain(posting, state_store).posted == 1
    assert posting.documents("salesOrders", "number eq 'S-ORD1002'") == []
    [posted] = posting.documents("salesInvoices", f"orderId eq {order['id']}")
    assert posted["totalAmountIncludingTax"] == order["totalAmountIncludingTax"]
    assert [(p["ship"], p["invoice"]) for p in posting.postings()] == [(True, False), (False, True)]
    # A second invoice-only run finds nothing left to invoice: Sales-Post's own refusal.
    order_1001 = posting.document("salesOrders", "S-ORD1001")
    invoice_only = BatchPostOptions(document_types=("Order",), filter="number eq 'S-ORD1001'", ship=False)
    batch_post(state_store, posting.bc, "SALESPOST", invoice_only, user_id="ALICE")
    [failure] = _drain(posting, state_store).failed
    assert failure.reason == "There is nothing to post."
    assert posting.bc.get("salesOrders", order_1001["id"])["fullyShipped"] is False


def test_a_purchase_order_posted_receive_only_stays_with_its_quantities_received(posting, state_store) -> None:
    order = posting.document("purchaseOrders", "P-ORD1001")  # 7 x 1896-S
    options = BatchPostOptions(document_types=("Order",), filter="number eq 'P-ORD1001'", invoice=False)
    batch_post(state_store, posting.bc, "PURCHPOST", options, user_id="CAROL")
    assert _drain(posting, state_store, "PURCHPOST").posted == 1
    assert posting.bc.get("purchaseOrders", order["id"])["fullyReceived"] is True
    [line] = _lines(posting, "purchaseOrders", "purchaseOrderLines", order["id"])
    assert (line["receivedQuantity"], line["invoicedQuantity"]) == (7, 0)
    assert posting.documents("purchaseInvoices", f"orderId eq {order['id']}") == []


def test_replace_vat_date_is_written_with_the_posting_date_before_posting(posting, state_store) -> None:
    today = datetime.now(UTC).date()
    vat_day = today - timedelta(days=3)
    options = BatchPostOptions(
        document_types=("Invoice",),
        filter="number eq 'S-INV1001' or number eq 'S-INV1003'",
        posting_date=today,
        vat_date=vat_day,
        replace_posting_date=True,
        replace_vat_date=True,
    )
    assert batch_post(state_store, posting.bc, "SALESPOST", options, user_id="ALICE").queued == 2
    assert _drain(posting, state_store).posted == 2
    logged = {(p["number"], p["postingDate"], p["vatDate"]) for p in posting.postings()}
    assert logged == {
        ("S-INV1001", today.isoformat(), vat_day.isoformat()),
        ("S-INV1003", today.isoformat(), vat_day.isoformat()),
    }
    # Without Replace VAT Date the VAT date follows the replaced posting date (VAT Reporting Date usage: Posting Date).
    posting.sandbox.session().delete(f"{posting.sandbox.base_url}/_sandbox/postings").raise_for_status()
    plain = BatchPostOptions(
        document_types=("Invoice",), filter="number eq 'S-INV1004'", posting_date=today, replace_posting_date=True
    )
    batch_post(state_store, posting.bc, "SALESPOST", plain, user_id="ALICE")
    assert _drain(posting, state_store).posted == 1
    [log] = posting.postings()
    assert (log["postingDate"], log["vatDate"]) == (today.isoformat(), today.isoformat())


def test_calc_inv_discount_is_an_option(posting, state_store) -> None:
    posting.configure(invoice_discounts={"10000": 5})  # customer 10000's invoice discount terms: 5 %
    before = {n: posting.document("salesInvoices", n) for n in ("S-INV1001", "S-INV1002")}
    off = BatchPostOptions(document_types=("Invoice",), filter="number eq 'S-INV1001'", calc_inv_discount=False)
    on = BatchPostOptions(document_types=("Invoice",), filter="number eq 'S-INV1002'")
    batch_post(state_store, posting.bc, "SALESPOST", off, user_id="ALICE")
    batch_post(state_store, posting.bc, "SALESPOST", on, user_id="ALICE")
    assert _drain(posting, state_store).posted == 2
    kept = posting.bc.get("salesInvoices", before["S-INV1001"]["id"])
    assert (kept["status"], kept["discountAmount"]) == ("Open", 0)
    assert kept["totalAmountExcludingTax"] == before["S-INV1001"]["totalAmountExcludingTax"]
    discounted = posting.bc.get("salesInvoices", before["S-INV1002"]["id"])
    lines_amount = Decimal(str(before["S-INV1002"]["totalAmountExcludingTax"]))
    discount = (lines_amount * Decimal("0.05")).quantize(Decimal("0.01"), ROUND_HALF_UP)
    assert Decimal(str(discounted["discountAmount"])) == discount > 0
    assert Decimal(str(discounted["totalAmountExcludingTax"])) == lines_amount - discount


def test_the_posting_page_is_at_least_as_strict_as_business_central(posting) -> None:
    invoice = posting.document("salesInvoices", "S-INV1001")
    order = posting.document("salesOrders", "S-ORD1001")
    with pytest.raises(ApiError, match="always posts in full"):  # ship-only on an invoice
        posting.bc.update("salesPostingDocuments", invoice["id"], {"invoice": False})
    with pytest.raises(ApiError, match="receive does not apply to a Sales Order"):
        posting.bc.update("salesPostingDocuments", order["id"], {"receive": True})
    posting.bc.update("salesPostingDocuments", order["id"], {"ship": False, "invoice": False})
    with pytest.raises(ApiError, match='Please enter "Yes" in Ship and/or Invoice and/or Receive'):
        posting.bc.post_action("salesPostingDocuments", order["id"], "Microsoft.NAV.post")
    page = posting.bc.entity_path("salesPostingDocuments") + f"({order['id']})"
    with pytest.raises(ApiError, match="concurrency token"):  # PATCH without If-Match
        posting.bc.request("PATCH", page, json={"ship": True}, headers={"If-Match": ""})
    with pytest.raises(ApiError, match="Another user has already changed the record"):
        posting.bc.update("salesPostingDocuments", order["id"], {"ship": True}, etag='W/"stale"')
    # A released document's lines cannot change.
    posting.bc.post_action("salesPostingDocuments", invoice["id"], "Microsoft.NAV.release")
    with pytest.raises(ApiError, match="Status must be equal to 'Open'"):
        posting.bc.request(
            "POST",
            posting.bc.entity_path("salesInvoices") + f"({invoice['id']})/salesInvoiceLines",
            json={"lineType": "Item", "lineObjectNumber": "1928-S", "quantity": 1, "unitPrice": 35.6},
        )
    assert posting.bc.get("salesInvoices", invoice["id"])["status"] == "Draft"  # API v2.0: not posted yet


@pytest.fixture
def without_posting_page(sandbox, monkeypatch):
    """The Business Central connection of a tenant without the posting page (only API v2.0 and return orders)."""
    conn = sandbox.connections()["business_central_default"]
    conn["extra"]["endpoints"] = {
        k: v for k, v in conn["extra"]["endpoints"].items() if not k.endswith("PostingDocuments")
    }
    monkeypatch.setenv("AIRFLOW_CONN_BUSINESS_CENTRAL_DEFAULT", json.dumps(conn))
    return BusinessCentralHook()


def test_without_the_posting_page_the_defaults_post_through_api_v2_and_the_options_name_it(
    posting, state_store, without_posting_page
) -> None:
    bc = without_posting_page
    assert not bc.has_endpoint("salesPostingDocuments")
    defaults = BatchPostOptions(document_types=("Order", "Invoice"), filter="customerNumber eq '10000'")
    queued = batch_post(state_store, bc, "SALESPOST", defaults, user_id="ALICE")
    assert queued.queued == 4 and queued.not_released == []  # nothing released: the page is not there
    assert PostingRunner(state_store, bc, "SALESPOST").drain().posted == 4
    assert {p["entitySet"] for p in posting.postings()} == {"salesOrders", "salesInvoices"}

    for options in (
        BatchPostOptions(document_types=("Order",), invoice=False),
        BatchPostOptions(posting_date=datetime.now(UTC).date(), replace_posting_date=True, replace_vat_date=True),
    ):
        with pytest.raises(MissingEndpointError, match="custom API page 'salesPostingDocuments'") as missing:
            batch_post(state_store, bc, "SALESPOST", options, user_id="ALICE")
        assert "extra.endpoints" in str(missing.value)
    # An entry queued with such an option while the page was routed ends in Error naming it, nothing sent.
    entry = posting.enqueue(
        "Sales Order",
        "S-ORD1003",
        posting_options=BatchPostOptions(document_types=("Order",), invoice=False).posting_options(
            document_type("Sales Order")
        ),
    )
    result = PostingRunner(state_store, bc, "SALESPOST").drain()
    assert [f.reason for f in result.failed] == [posting.entry(entry.id).error_message]
    assert "Ship/Receive only" in result.failed[0].reason and "'salesPostingDocuments'" in result.failed[0].reason
    assert posting.entry(entry.id).status is Status.ERROR
    assert [p["number"] for p in posting.postings() if p["number"] == "S-ORD1003"] == []


def _context(**params):
    dag_run = SimpleNamespace(run_type="manual", run_after=None, triggering_user_name="JO")
    return {"params": {"batch_post": "auto", **params}, "dag_run": dag_run}


def test_the_batch_post_operator_queues_ship_only_and_alerts_on_documents_it_could_not_release(
    posting, state_store
) -> None:
    operator = BatchPostOperator(task_id="batch_post", category_code="SALESPOST", schedule=PostingSchedule())
    assert os.environ["AIRFLOW_CONN_DYNAMICS_STATE"]
    queued = operator.execute(_context(document_types=["Order"], invoice=False))  # type: ignore[arg-type]
    assert queued["queued"] == 4
    assert {e.posting_options["posting_page"] for e in queue.list_entries(state_store)} == {True}
    # The other documents are queued, then the task fails naming the one Business Central would not release.
    with pytest.raises(AirflowFailException) as alert:
        operator.execute(_context(document_types=["Invoice"]))  # type: ignore[arg-type]
    assert "Batch Post queued 7 document(s) of SALESPOST; 1 could not be released" in str(alert.value)
    assert "- Sales Invoice S-INV1008: There is nothing to release for the document of type Invoice" in str(alert.value)
    assert len(queue.list_entries(state_store, statuses=[Status.READY])) == 11


def test_post_via_job_queue_by_number_releases_the_document_first(posting, state_store) -> None:
    entry = queue.enqueue_by_number(state_store, posting.bc, "Sales Invoice", "S-INV1001", user_id="ALICE")
    assert _page(posting, "salesPostingDocuments", str(entry.document_id))["status"] == "Released"
    with pytest.raises(queue.JobQueueError, match="There is nothing to release for the document of type Invoice"):
        queue.enqueue_by_number(state_store, posting.bc, "Sales Invoice", "S-INV1008", user_id="ALICE")
    assert [e.document_number for e in queue.list_entries(state_store)] == ["S-INV1001"]


def test_a_ship_only_posting_whose_answer_is_lost_is_recognised_from_the_order_shipped_in_full(
    posting, state_store
) -> None:
    options = BatchPostOptions(document_types=("Order",), filter="number eq 'S-ORD1001'", invoice=False)
    batch_post(state_store, posting.bc, "SALESPOST", options, user_id="ALICE")
    [entry] = queue.list_entries(state_store)
    # The ERP ships the order, then the connection drops before the answer (a POST is not retried).
    posting.sandbox.admin("faults", {"rate_drop_after": 1.0, "route": "POST bc/salesPostingDocuments"})
    result = _drain(posting, state_store)
    assert (result.posted, result.failed, result.waiting_for) == (1, [], [])
    assert posting.entry(entry.id).status is Status.FINISHED
    assert [(p["number"], p["outcome"], p["ship"], p["invoice"]) for p in posting.postings()] == [
        ("S-ORD1001", "posted", True, False)
    ]
