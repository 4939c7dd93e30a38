"""The posting runner against the sandbox ERP (real HTTP) and a real Postgres: outcomes, failures, retries,
timeouts, Post & Print, expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dynamics_jobqueue.posting import queue
from dynamics_jobqueue.posting.batch import BatchPostOptions, batch_post
from dynamics_jobqueue.posting.entries import JobQueueStatus, Status
from dynamics_jobqueue.posting.printing import FolderPrinter
from dynamics_jobqueue.posting.runner import PostingRunner
from sandbox.documents import overlaps


def test_batch_post_and_drain_post_the_cronus_documents_and_fail_the_designed_ones(posting, state_store) -> None:
    queued = batch_post(state_store, posting.bc, "SALESPOST", BatchPostOptions(), user_id="ALICE")
    assert queued.found == {
        "Sales Order": 4,
        "Sales Invoice": 8,
        "Sales Credit Memo": 1,
        "Sales Return Order": 0,
    }
    # As Business Central's Batch Post, an Open document is released before it is queued; one that cannot be
    # released is left out with Business Central's message.
    assert queued.queued == 12
    assert queued.not_released == [
        "Sales Invoice S-INV1008: There is nothing to release for the document of type Invoice with the number "
        "S-INV1008."
    ]
    result = PostingRunner(state_store, posting.bc, "SALESPOST").drain()

    assert result.posted == 11
    reasons = sorted(f.reason for f in result.failed)
    assert reasons == ["Posting Date is not within your range of allowed posting dates."]
    assert all(f.user_id == "ALICE" for f in result.failed)
    # The ERP really changed: drafts left are the two designed to fail; orders became posted invoices.
    drafts = posting.documents("salesInvoices", "status eq 'Draft'") + posting.documents("salesCreditMemos")
    assert sorted(d["yourReference"] for d in drafts if d["status"] == "Draft") == ["DESIGNED TO FAIL"] * 2
    assert posting.documents("salesOrders") == []
    assert len(posting.documents("salesInvoices", "orderNumber ne ''")) == 4
    # Error entries are the documents the user must handle; the others are Finished with a Success log.
    errors = queue.list_entries(state_store, statuses=[Status.ERROR])
    assert {e.job_queue_status for e in errors} == {JobQueueStatus.ERROR}
    assert len(queue.list_entries(state_store, statuses=[Status.FINISHED])) == 11
    log = queue.list_log_entries(state_store)
    assert sorted(item.status for item in log) == ["Error"] + ["Success"] * 11
    assert all(item.ended_at is not None and "CorrelationId" not in (item.error_message or "") for item in log)
    assert overlaps(posting.postings()) == []


def test_blocked_customer_fails_with_the_api_message_and_the_others_still_post(posting, state_store) -> None:
    customer = posting.documents("customers", "number eq '20000'")[0]
    posting.bc.update("customers", customer["id"], {"blocked": "All"})
    invoices = posting.documents("salesInvoices", "status eq 'Draft' and yourReference eq 'OPEN'")
    for invoice in invoices:
        posting.enqueue("Sales Invoice", invoice["number"], user_id="BOB")
    result = PostingRunner(state_store, posting.bc, "SALESPOST").drain()
    blocked = [i for i in invoices if i["customerNumber"] == "20000"]
    assert blocked, "CRONUS has an open invoice of customer 20000"
    assert [str(f) for f in result.failed] == [
        f"Sales Invoice {i['number']} (queued by BOB): You cannot post this type of document when Customer 20000 "
        "is blocked with type All"
        for i in blocked
    ]
    assert result.posted == len(invoices) - len(blocked)


def test_a_transient_failure_is_retried_after_the_rerun_delay_up_to_max_attempts(
    posting, state_store, sandbox, monkeypatch
) -> None:
    from dynamics_jobqueue.hooks.business_central import BusinessCentralHook

    for name, value in sandbox.environment(max_retries=0).items():
        monkeypatch.setenv(name, value)
    bc = BusinessCentralHook()
    delayed = posting.enqueue("Sales Invoice", "S-INV1001", max_attempts=3, rerun_delay_s=3600)
    sandbox.admin("faults", {"rate_5xx": 1.0, "seed": 1})
    try:
        first = PostingRunner(state_store, bc, "SALESPOST").drain()
    finally:
        sandbox.admin("faults", {})
    assert first.posted == 0 and first.failed == [] and len(first.rescheduled) == 1
    entry = posting.entry(delayed.id)
    assert (entry.status, entry.attempts) == (Status.READY, 1)
    assert entry.earliest_start_at > datetime.now(UTC) + timedelta(minutes=59)
    assert queue.document_job_queue_status(state_store, "Sales Invoice", entry.document_id) == "Scheduled for Posting"

    queue.remove(state_store, "Sales Invoice", "S-INV1001")
    exhausted = posting.enqueue("Sales Invoice", "S-INV1001", max_attempts=2, rerun_delay_s=0)
    sandbox.admin("faults", {"rate_5xx": 1.0, "seed": 1})
    try:
        second = PostingRunner(state_store, bc, "SALESPOST").drain()
    finally:
        sandbox.admin("faults", {})
    entry = posting.entry(exhausted.id)
    assert (entry.status, entry.attempts) == (Status.ERROR, 2)
    assert len(second.failed) == 1
    assert [i.status for i in queue.list_log_entries(state_store, exhausted.id)] == ["Error", "Error"]
    assert posting.document("salesInvoices", "S-INV1001")["status"] == "Draft"


def test_a_posting_that_exceeds_its_timeout_ends_in_error_and_the_next_one_posts(posting, state_store) -> None:
    posting.configure(hang_numbers=["S-INV1001"], hang_s=4)
    stuck = posting.enqueue("Sales Invoice", "S-INV1001", timeout_s=1)
    fine = posting.enqueue("Sales Invoice", "S-INV1003", priority=2000)
    result = PostingRunner(state_store, posting.bc, "SALESPOST").drain()
    entry = posting.entry(stuck.id)
    assert entry.status is Status.ERROR
    assert entry.error_message == "The posting of Sales Invoice S-INV1001 did not finish within its timeout of 1 s."
    assert posting.entry(fine.id).status is Status.FINISHED
    assert result.posted == 1
    assert posting.document("salesInvoices", "S-INV1001")["status"] == "Draft"


def test_post_and_print_writes_the_posted_documents_pdf_to_a_folder(posting, state_store, tmp_path) -> None:
    invoice = posting.enqueue("Sales Invoice", "S-INV1001", post_and_print=True)
    order = posting.enqueue("Sales Order", "S-ORD1001", post_and_print=True)
    printer = FolderPrinter((tmp_path / "printed").as_uri())
    result = PostingRunner(state_store, posting.bc, "SALESPOST", printer=printer).drain()
    assert (result.posted, result.printed, result.failed) == (2, 2, [])
    files = sorted(p.name for p in (tmp_path / "printed").iterdir())
    posted_invoice = posting.documents("salesInvoices", "status eq 'Open'")
    assert files == sorted(f"sales-invoice-{d['number'].lower()}.pdf" for d in posted_invoice)
    assert all((tmp_path / "printed" / f).read_bytes().startswith(b"%PDF-1.4") for f in files)
    for entry_id in (invoice.id, order.id):
        entry = posting.entry(entry_id)
        assert entry.status is Status.FINISHED and entry.printed_at is not None


def test_a_print_that_hangs_leaves_the_document_posted_in_error_and_never_posts_again(
    posting, state_store, tmp_path
) -> None:
    posting.configure(pdf_hang=True, hang_s=3)
    entry = posting.enqueue("Sales Invoice", "S-INV1001", post_and_print=True, timeout_s=1)
    printer = FolderPrinter((tmp_path / "printed").as_uri())
    PostingRunner(state_store, posting.bc, "SALESPOST", printer=printer).drain()
    failed = posting.entry(entry.id)
    assert failed.status is Status.ERROR
    assert failed.error_message.startswith("Sales Invoice S-INV1001 was posted but not printed:")
    assert failed.posted_at is not None and failed.printed_at is None
    assert posting.documents("salesInvoices", "status eq 'Open'")[0]["id"] == str(entry.document_id)
    # Another drain leaves it alone: exactly one posting in the ERP's own log.
    PostingRunner(state_store, posting.bc, "SALESPOST", printer=printer).drain()
    assert [p["outcome"] for p in posting.postings() if p["id"] == str(entry.document_id)] == ["posted"]


def test_purchase_documents_post_in_their_own_category(posting, state_store) -> None:
    batch_post(state_store, posting.bc, "PURCHPOST", BatchPostOptions(), user_id="CAROL")
    result = PostingRunner(state_store, posting.bc, "PURCHPOST").drain()
    assert result.posted == 8
    assert [f.reason for f in result.failed] == [
        "You need to enter the document number of the document from the vendor in the Vendor Invoice No. field, "
        "so that this document stays linked to the original."
    ]
    assert posting.documents("purchaseOrders") == []
    assert PostingRunner(state_store, posting.bc, "SALESPOST").drain().posted == 0


def test_earliest_start_and_expiration(posting, state_store) -> None:
    later = posting.enqueue("Sales Invoice", "S-INV1001", earliest_start_at=datetime.now(UTC) + timedelta(hours=1))
    expired = posting.enqueue("Sales Invoice", "S-INV1003", expires_at=datetime.now(UTC) - timedelta(seconds=1))
    result = PostingRunner(state_store, posting.bc, "SALESPOST").drain()
    assert result.posted == 0
    assert posting.entry(later.id).status is Status.READY
    gone = posting.entry(expired.id)
    assert gone.status is Status.ERROR and gone.error_message.startswith("The job queue entry expired on ")


def test_replace_posting_date_is_written_before_posting(posting, state_store) -> None:
    options = BatchPostOptions(
        document_types=("Invoice",),
        filter="number eq 'S-INV1001'",
        posting_date=datetime.now(UTC).date(),
        replace_posting_date=True,
        replace_document_date=True,
    )
    assert batch_post(state_store, posting.bc, "SALESPOST", options, user_id="ALICE").queued == 1
    assert PostingRunner(state_store, posting.bc, "SALESPOST").drain().posted == 1
    posted = posting.documents("salesInvoices", "status eq 'Open'")[0]
    assert posted["postingDate"] == posted["invoiceDate"] == datetime.now(UTC).date().isoformat()


def test_an_entry_on_hold_waits_until_set_ready(posting, state_store) -> None:
    entry = posting.enqueue("Sales Invoice", "S-INV1001")
    assert queue.set_status(state_store, "Sales Invoice", "S-INV1001", Status.ON_HOLD).status is Status.ON_HOLD
    assert queue.document_job_queue_status(state_store, "Sales Invoice", entry.document_id) == "Scheduled for Posting"
    assert PostingRunner(state_store, posting.bc, "SALESPOST").drain().posted == 0
    queue.set_status(state_store, "Sales Invoice", "S-INV1001", Status.READY)
    assert PostingRunner(state_store, posting.bc, "SALESPOST").drain().posted == 1


def test_notify_on_success_of_the_setup_notifies_the_user_who_queued_the_document(
    posting, state_store, monkeypatch
) -> None:
    quiet = posting.enqueue("Sales Invoice", "S-INV1003", user_id="CAROL")  # queued while the setup option is off
    monkeypatch.setenv("AIRFLOW__DYNAMICS_JOBQUEUE__POSTING_NOTIFY_ON_SUCCESS", "True")
    posted = posting.enqueue("Sales Invoice", "S-INV1001", user_id="ALICE")
    failed = posting.enqueue("Sales Invoice", "S-INV1008", user_id="BOB")  # designed to fail: nothing to post
    assert (quiet.notify_on_success, posted.notify_on_success, failed.notify_on_success) == (False, True, True)
    result = PostingRunner(state_store, posting.bc, "SALESPOST").drain()
    assert result.posted == 2 and len(result.failed) == 1
    notifications = queue.list_notifications(state_store)
    assert [(n.user_id, n.job_queue_entry_id, n.message) for n in notifications] == [
        ("ALICE", posted.id, "Sales Invoice S-INV1001 has been posted.")
    ]
    assert queue.list_notifications(state_store, "BOB") == queue.list_notifications(state_store, "CAROL") == []
