"""DataverseHook against Microsoft's documented Dataverse Web API responses, served over real HTTPS."""

from __future__ import annotations

import email
import email.policy
import itertools

import pytest

from dynamics_jobqueue.hooks.batch import BatchOperation
from dynamics_jobqueue.hooks.dataverse import (
    FORMATTED_VALUE,
    LOOKUP_LOGICAL_NAME,
    DataverseHook,
    bind,
    upsert_operation,
)
from dynamics_jobqueue.hooks.errors import ApiError

ACCOUNT = "00000000-0000-0000-0000-000000000001"
CONTACT = "0928bcb4-bb27-ed11-9db1-002248274ada"


def _tasks(n: int) -> list[BatchOperation]:
    return [
        BatchOperation(
            f"task-{i}",
            "POST",
            "tasks",
            {"subject": f"Task {i} in batch", "regardingobjectid_account_task@odata.bind": f"accounts({ACCOUNT})"},
        )
        for i in range(1, n + 1)
    ]


@pytest.mark.parametrize("framing", ["lf", "crlf"])
def test_batch_without_change_set_decodes_each_part_in_order(contract, framing: str) -> None:
    contract.answer("POST", "/$batch", "dataverse/batch_without_changeset.http", framing=framing)
    ops = [*_tasks(3), BatchOperation("read", "GET", f"accounts({ACCOUNT})/Account_Tasks?$select=subject")]
    results = DataverseHook().batch(ops)
    assert [r.status for r in results] == [204, 204, 204, 200]
    assert [r.record_id for r in results[:3]] == [
        "d31ba648-c592-ed11-aad1-000d3a993550",
        "d41ba648-c592-ed11-aad1-000d3a993550",
        "d51ba648-c592-ed11-aad1-000d3a993550",
    ]
    assert [row["subject"] for row in results[3].body["value"]] == [f"Task {i} in batch" for i in (1, 2, 3)]
    # what we sent is a multipart batch the service can split: one application/http part per operation
    (sent,) = contract.requests_to("/$batch")
    message = email.message_from_bytes(
        f"Content-Type: {sent.headers['content-type']}\r\n\r\n".encode() + sent.body, policy=email.policy.HTTP
    )
    assert [p.get_content_type() for p in message.iter_parts()] == ["application/http"] * 4
    assert sent.headers["prefer"] == "odata.continue-on-error"


@pytest.mark.parametrize("framing", ["lf", "crlf"])
def test_change_set_answer_is_matched_by_content_id(contract, framing: str) -> None:
    contract.answer("POST", "/$batch", "dataverse/batch_with_changeset.http", framing=framing)
    results = DataverseHook().batch(_tasks(3), atomic=True)
    assert all(r.ok for r in results)
    assert [r.record_id for r in results] == [
        "e73ffc82-e292-ed11-aad1-000d3a9933c9",
        "e83ffc82-e292-ed11-aad1-000d3a9933c9",
        "e93ffc82-e292-ed11-aad1-000d3a9933c9",
    ]


def test_success_without_entity_id_is_resolved_from_the_path_or_fails_alone(contract) -> None:
    """The documented change set answers its second request ``204`` with neither ``Location`` nor
    ``OData-EntityId``: a write by id takes the id from its path, a write by alternate key whose record cannot
    be read back fails alone (it used to abort the page with RuntimeError in the writer)."""
    contract.answer("POST", "/$batch", "dataverse/batch_reference_uri_in_url.http", times=2)
    contact = "f8ea5d2c-8c75-e911-a97a-000d3a34a1bd"
    first = BatchOperation("new", "POST", "contacts", {"firstname": "First Name"})
    by_id = upsert_operation("by-id", "contacts", contact, {"lastname": "BBBBB"})
    results = DataverseHook().batch([first, by_id], atomic=True)
    assert [r.status for r in results] == [204, 204]
    assert [r.record_id for r in results] == [contact, contact]

    by_key = upsert_operation("by-key", "contacts", {"emailaddress1": "b@x"}, {"lastname": "B"}, id_field="contactid")
    results = DataverseHook().batch([first, by_key], atomic=True)
    assert results[1].status == 502 and results[1].error is not None
    assert results[1].error.code == "NoEntityId"
    assert "contacts(emailaddress1='b@x')" in results[1].error.message
    # the read-back asked for the key column only
    (read_back,) = contract.requests_to("contacts(emailaddress1=")
    assert read_back.method == "GET" and "%24select=contactid" in read_back.path


def test_batch_stopped_at_the_first_error_reports_it_and_the_rest_not_run(contract) -> None:
    """``HTTP/1.1 400 BadRequest``, no ``Content-Type``, LF framing: exactly as documented."""
    contract.answer("POST", "/$batch", "dataverse/batch_stop_on_error.http")
    results = DataverseHook().batch(_tasks(3), continue_on_error=False)
    assert [r.status for r in results] == [400, 424, 424]
    error = results[0].error
    assert error is not None and error.code == "0x80044331" and error.entity_set == "tasks"
    assert error.record_id == "task-1"


@pytest.mark.parametrize("framing", ["lf", "crlf"])
def test_continue_on_error_answer_fails_one_record(contract, framing: str) -> None:
    contract.answer("POST", "/$batch", "dataverse/batch_continue_on_error.http", framing=framing)
    results = DataverseHook().batch(_tasks(3))
    assert [r.status for r in results] == [400, 204, 204]
    assert results[2].record_id == "b181a991-3c94-ed11-aad1-000d3a9933c9"


def test_whole_batch_refused_with_a_json_error_is_a_typed_api_error(contract) -> None:
    """A ``400`` whose body is a JSON error (not multipart) used to raise ValueError from the decoder."""
    contract.answer("POST", "/$batch", "dataverse/error_with_annotations.http")
    with pytest.raises(ApiError) as excinfo:
        DataverseHook().batch(_tasks(2))
    error = excinfo.value
    assert type(error) is ApiError and error.status == 400 and error.code == "0x80040265"
    assert error.entity_set == "$batch of tasks"


def test_error_annotations_are_kept_in_the_detail(contract) -> None:
    contract.answer("GET", "/accounts(", "dataverse/error_with_annotations.http", framing="crlf")
    with pytest.raises(ApiError) as excinfo:
        DataverseHook().get("accounts", ACCOUNT)
    error = excinfo.value
    assert error.record_id == ACCOUNT and error.entity_set == "accounts"
    assert error.detail["@Microsoft.PowerApps.CDS.ErrorDetails.SubErrorCode"] == "-2146233088"
    assert "Plugin failed:An invalid request URI" in error.detail["@Microsoft.PowerApps.CDS.TraceText"]
    assert "InnerError.Message: An invalid request URI" in error.detail_text


def test_paging_follows_the_next_link_with_its_skiptoken_unchanged(contract) -> None:
    contract.answer("GET", "skiptoken", "dataverse/page_2.http", times=1)
    contract.answer("GET", "/contacts", "dataverse/page_1.http", times=1)
    pages = list(itertools.islice(DataverseHook().iter_pages("contacts", select=["fullname"], page_size=2), 2))
    assert [[row["fullname"] for row in page] for page in pages] == [
        ["Yvonne McKay (sample)", "Susanna Stubberod (sample)"],
        ["Nancy Anderson (sample)", "Maria Campbell (sample)"],
    ]
    first, second = contract.requests_to("/contacts")
    assert first.path == "/dataverse/api/data/v9.2/contacts?%24select=fullname"
    assert second.path.startswith(
        "/dataverse/api/data/v9.2/contacts?$select=fullname&$skiptoken=%3Ccookie%20pagenumber=%222%22"
    )
    assert first.headers["prefer"] == second.headers["prefer"] == "odata.maxpagesize=2"


def test_create_and_update_answered_204_nocontent(contract) -> None:
    """``HTTP/1.1 204 NoContent``: the reason phrase as printed; the id comes from ``OData-EntityId``."""
    contract.answer("POST", "/accounts", "dataverse/create_no_content.http")
    contract.answer("PATCH", "/contacts(", "dataverse/update_no_content.http", framing="crlf")
    dv = DataverseHook()
    created = dv.create("accounts", {"name": "Contoso Ltd", **bind("primarycontactid", "contacts", CONTACT)})
    assert created == "2728bcb4-bb27-ed11-9db1-002248274ada"
    dv.upsert("contacts", CONTACT, {"jobtitle": "Senior Developer"}, mode="update")
    (sent,) = contract.requests_to("/accounts")
    assert b'"primarycontactid@odata.bind": "/contacts(0928bcb4-bb27-ed11-9db1-002248274ada)"' in sent.body
    (patched,) = contract.requests_to("/contacts(")
    assert patched.headers["if-match"] == "*"


def test_formatted_value_and_lookup_annotations_are_returned(contract) -> None:
    contract.answer("GET", "/contacts(", "dataverse/retrieve_with_annotations.http")
    row = DataverseHook().get(
        "contacts", CONTACT, select=["fullname", "annualincome", "jobtitle", "description"], annotations=["*"]
    )
    (sent,) = contract.requests_to("/contacts(")
    assert sent.headers["prefer"] == 'odata.include-annotations="*"'
    assert row[f"_transactioncurrencyid_value@{LOOKUP_LOGICAL_NAME}"] == "transactioncurrency"
    assert row[f"_transactioncurrencyid_value@{FORMATTED_VALUE}"] == "US Dollar"
