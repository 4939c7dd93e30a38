"""Rules of background posting that need no server: categories, Batch Post options, schedule, names."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from dynamics_jobqueue.posting.batch import BatchPostOptions, open_filter
from dynamics_jobqueue.posting.categories import (
    PURCHPOST,
    SALESPOST,
    category_document_types,
    document_type,
    for_category,
)
from dynamics_jobqueue.posting.entries import JobQueueStatus, Status
from dynamics_jobqueue.posting.printing import FolderPrinter, LpPrinter, pdf_file_name, printer_for
from dynamics_jobqueue.posting.queue import already_scheduled_message
from dynamics_jobqueue.posting.runner import format_duration
from dynamics_jobqueue.posting.schedule import PostingSchedule


def test_document_types_post_with_the_api_actions_of_the_contract() -> None:
    assert document_type("sales invoice").action == "Microsoft.NAV.post"
    assert document_type("Sales Order").action == "Microsoft.NAV.shipAndInvoice"
    assert document_type("Purchase Order").action == "Microsoft.NAV.receiveAndInvoice"
    assert for_category(PURCHPOST, "Credit Memo").entity_set == "purchaseCreditMemos"
    assert [t.name for t in category_document_types(SALESPOST)] == [
        "Sales Order",
        "Sales Invoice",
        "Sales Credit Memo",
        "Sales Return Order",
    ]
    with pytest.raises(ValueError, match="unknown document type"):
        document_type("Sales Quote")


def test_refusal_message_is_the_reference_label() -> None:
    assert already_scheduled_message("Sales Invoice", "1001") == (
        "Sales Invoice 1001 cannot be posted because it has already been scheduled for posting. "
        "Choose the Remove from Job Queue action to reset the job queue status and then post again."
    )


def test_batch_post_options_from_params_and_validation() -> None:
    options = BatchPostOptions.from_params(
        {"document_types": ["Invoice"], "posting_date": "2026-11-30", "replace_posting_date": True, "filter": ""}
    )
    assert options.posting_date == date(2026, 11, 30)
    assert options.filter is None
    options.validate()
    invoice, order = document_type("Sales Invoice"), document_type("Sales Order")
    assert options.posting_options(invoice) == {
        "posting_date": "2026-11-30",
        "replace_posting_date": True,
        "replace_document_date": False,
        "vat_date": None,
        "replace_vat_date": False,
        "ship": True,
        "invoice": True,
        "posting_page": False,  # the defaults post through API v2.0's own actions
    }
    with pytest.raises(ValueError, match="Enter the posting date"):
        BatchPostOptions(replace_document_date=True).validate()
    # Ship-only is Business Central's choice too; neither is Sales-Post's refusal, given before queueing.
    ship_only = BatchPostOptions(document_types=("Order", "Invoice"), invoice=False)
    ship_only.validate()
    assert ship_only.posting_options(order)["posting_page"] and not ship_only.posting_options(invoice)["posting_page"]
    with pytest.raises(ValueError, match='Please enter "Yes" in Ship and/or Invoice'):
        BatchPostOptions(document_types=("Order",), ship=False, invoice=False).validate()
    BatchPostOptions(document_types=("Invoice",), ship=False, invoice=False).validate()  # orders only
    with pytest.raises(ValueError, match="Return orders post received"):
        BatchPostOptions(document_types=("Return Order",), ship=False).validate()
    # Replace VAT Date works with Replace Posting Date, as Business Central's; its date defaults to the posting date.
    with pytest.raises(ValueError, match="only with Replace Posting Date"):
        BatchPostOptions(replace_vat_date=True, posting_date=date(2026, 11, 30)).validate()
    vat = BatchPostOptions.from_params(
        {"posting_date": "2026-11-30", "replace_posting_date": True, "replace_vat_date": True, "vat_date": None}
    )
    vat.validate()
    assert vat.posting_options(invoice)["vat_date"] == "2026-11-30" and vat.posting_options(invoice)["posting_page"]
    BatchPostOptions(calc_inv_discount=False).validate()  # an option, not always on
    with pytest.raises(ValueError, match="unknown document types"):
        BatchPostOptions(document_types=("Quote",)).validate()


def test_open_documents_filter() -> None:
    assert open_filter(document_type("Sales Invoice"), "customerNumber eq '10000'") == (
        "(status eq 'Draft') and (customerNumber eq '10000')"
    )
    assert open_filter(document_type("Sales Order"), None) is None


def test_schedule_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DYNAMICS_BATCH_POST_TIME", "19:30")
    monkeypatch.setenv("DYNAMICS_BATCH_POST_TIMEZONE", "America/New_York")
    schedule = PostingSchedule.from_env()
    assert schedule.batch_cron == "30 19 * * *"
    assert schedule.is_batch_time(datetime(2026, 7, 1, 23, 30, tzinfo=UTC))  # 19:30 EDT
    assert not schedule.is_batch_time(datetime(2026, 7, 1, 19, 30, tzinfo=UTC))
    monkeypatch.setenv("DYNAMICS_BATCH_POST_TIME", "25:00")
    with pytest.raises(ValueError, match="HH:MM"):
        PostingSchedule.from_env()


def test_default_schedule_is_18_00_london() -> None:
    schedule = PostingSchedule()
    assert schedule.is_batch_time(datetime(2026, 1, 15, 18, 0, tzinfo=UTC))  # GMT in winter
    assert schedule.is_batch_time(datetime(2026, 7, 15, 17, 0, tzinfo=UTC))  # BST in summer


def test_printers_and_names(tmp_path) -> None:
    assert pdf_file_name("Sales Invoice", "PS-INV100001") == "sales-invoice-ps-inv100001.pdf"
    assert printer_for("lp") == LpPrinter()
    assert printer_for("lp:office") == LpPrinter(printer="office")
    assert printer_for(str(tmp_path)) == FolderPrinter(tmp_path.as_uri())
    assert format_duration(7200) == "2 h"
    assert format_duration(90) == "90 s"
    assert format_duration(120) == "2 min"


def test_folder_printer_writes_through_object_storage(tmp_path) -> None:
    where = FolderPrinter((tmp_path / "printed").as_uri()).print_pdf("a.pdf", "A", b"%PDF-1.4 x", timeout_s=5)
    assert (tmp_path / "printed" / "a.pdf").read_bytes() == b"%PDF-1.4 x"
    assert where.endswith("a.pdf")


def test_job_queue_status_of_an_entry_status() -> None:
    from dynamics_jobqueue.posting.entries import JobQueueEntry

    fields = JobQueueEntry.columns().split(", ")
    assert fields[0] == "id" and "lease_expires_at" in fields
    assert {s.value for s in Status} == {"Ready", "In Process", "Error", "On Hold", "Finished", "Waiting"}
    assert JobQueueStatus.SCHEDULED_FOR_POSTING == "Scheduled for Posting"
