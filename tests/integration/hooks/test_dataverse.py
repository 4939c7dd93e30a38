"""DataverseHook over real HTTPS against the sandbox: upserts, alternate keys, lookups, $batch, change tracking."""

from __future__ import annotations

import uuid

import pytest

from dynamics_jobqueue.hooks.batch import BatchOperation
from dynamics_jobqueue.hooks.dataverse import DataverseHook
from dynamics_jobqueue.hooks.errors import ConflictError, NotFoundError


@pytest.fixture
def dv(sandbox) -> DataverseHook:
    return DataverseHook()


def test_who_am_i_is_the_integration_user(dv: DataverseHook) -> None:
    user = dv.get("systemusers", dv.who_am_i())
    assert user["applicationid"] == "integration-app"


def test_paging_follows_next_links(dv: DataverseHook) -> None:
    pages = list(dv.iter_pages("systemusers", page_size=3))
    assert len(pages) >= 3
    assert all(len(p) <= 3 for p in pages)
    emails = {u.get("internalemailaddress") for p in pages for u in p}
    assert "JO@contoso.com" in emails


def test_upsert_by_alternate_key_creates_then_updates(dv: DataverseHook) -> None:
    dv.upsert("accounts", {"accountnumber": "T-1"}, {"name": "Test One"})
    dv.upsert("accounts", {"accountnumber": "T-1"}, {"name": "Test One Ltd"})
    rows = [r for p in dv.iter_pages("accounts", filter="accountnumber eq 'T-1'") for r in p]
    assert [r["name"] for r in rows] == ["Test One Ltd"]


def test_conditional_upserts(dv: DataverseHook) -> None:
    new_id = str(uuid.uuid4())
    with pytest.raises(NotFoundError):
        dv.upsert("accounts", new_id, {"name": "ghost"}, mode="update")
    dv.upsert("accounts", new_id, {"name": "created by id"}, mode="create")
    with pytest.raises(ConflictError):
        dv.upsert("accounts", new_id, {"name": "twice"}, mode="create")
    row = dv.get("accounts", new_id)
    dv.upsert("accounts", new_id, {"name": "fresh"}, mode="update", etag=row["@odata.etag"])
    with pytest.raises(ConflictError):
        dv.upsert("accounts", new_id, {"name": "stale"}, mode="update", etag=row["@odata.etag"])


def test_lookups_are_bound_and_read_back(dv: DataverseHook) -> None:
    account_id = dv.create("accounts", {"name": "Parent Co", "accountnumber": "P-1"})
    contact_id = dv.create(
        "contacts",
        {"firstname": "Ada", "lastname": "Lovelace", "parentcustomerid_account@odata.bind": f"/accounts({account_id})"},
    )
    contact = dv.get("contacts", contact_id)
    assert contact["_parentcustomerid_value"] == account_id
    with pytest.raises(NotFoundError):
        dv.create(
            "contacts", {"lastname": "Orphan", "parentcustomerid_account@odata.bind": f"/accounts({uuid.uuid4()})"}
        )


def test_batch_continue_on_error_returns_every_result(dv: DataverseHook) -> None:
    ops = [
        BatchOperation(f"acc-{n}", "PATCH", f"accounts(accountnumber='B-{n}')", {"name": f"Batch {n}"})
        for n in range(1200)
    ]
    ops.insert(5, BatchOperation("bad", "PATCH", f"accounts({uuid.uuid4()})", {"name": "x"}, {"If-Match": "*"}))
    results = dv.batch(ops)
    assert len(results) == len(ops)
    assert [r.id for r in results] == [op.id for op in ops]
    failed = [r for r in results if not r.ok]
    assert [r.id for r in failed] == ["bad"]
    assert failed[0].status == 404
    count = sum(len(p) for p in dv.iter_pages("accounts", filter="startswith(accountnumber,'B-')"))
    assert count == 1200


def test_atomic_batch_rolls_back_every_operation(dv: DataverseHook) -> None:
    ops = [
        BatchOperation("ok", "PATCH", "accounts(accountnumber='A-1')", {"name": "kept?"}),
        BatchOperation("bad", "PATCH", f"accounts({uuid.uuid4()})", {"name": "x"}, {"If-Match": "*"}),
    ]
    results = dv.batch(ops, atomic=True)
    assert not all(r.ok for r in results)
    assert not [r for p in dv.iter_pages("accounts", filter="accountnumber eq 'A-1'") for r in p]


def test_change_tracking_reports_changes_and_deletions(dv: DataverseHook) -> None:
    first = list(dv.iter_changes("accounts", select=["name", "accountnumber"]))
    delta_link = first[-1].delta_link
    assert delta_link
    before = {r["accountid"] for page in first for r in page.records}
    doomed = next(iter(before))
    dv.delete("accounts", doomed)
    new_id = dv.create("accounts", {"name": "Tracked", "accountnumber": "TR-1"})
    changes = list(dv.iter_changes("accounts", delta_link=delta_link))
    assert {r["accountid"] for page in changes for r in page.records} == {new_id}
    assert [d for page in changes for d in page.deleted_ids] == [doomed]
    assert changes[-1].delta_link and changes[-1].delta_link != delta_link
