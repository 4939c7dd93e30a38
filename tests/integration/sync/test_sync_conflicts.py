"""Bidirectional update conflicts: both sides changed since the last sync and the values differ."""

from __future__ import annotations

import psycopg
import pytest

from dynamics_jobqueue.sync.store import reset_skipped


@pytest.fixture
def conflict(sync):
    """Adatum renamed on both sides after the first run."""
    sync.run(run_id="first")
    customer = sync.customer("10000")
    account = sync.account("10000")
    sync.erp_user.update("customers", customer["id"], {"displayName": "Adatum (ERP)"})
    sync.crm_user.upsert("accounts", account["accountid"], {"name": "Adatum (CRM)"}, mode="update")
    return customer["id"], account["accountid"]


def test_a_conflict_fails_the_record_naming_both_sides_and_writes_neither(sync, conflict) -> None:
    erp_id, crm_id = conflict
    result = sync.run("CUSTOMER", run_id="second")["CUSTOMER"]
    assert sync.counts({"CUSTOMER": result}) == {"CUSTOMER to CRM": {"failed": 1}, "CUSTOMER from CRM": {}}
    failure = result.passes[0].failures[0]
    assert failure.source_id == erp_id and failure.destination_id == crm_id and failure.kind == "conflict"
    assert "customers 10000" in failure.message and f"accounts {crm_id}" in failure.message
    assert "name: ERP gives 'Adatum (ERP)', CRM has 'Adatum (CRM)'" in failure.message
    assert "resolve_update_conflicts" in failure.message
    assert sync.customer("10000")["displayName"] == "Adatum (ERP)"
    assert sync.account("10000")["name"] == "Adatum (CRM)"
    assert "Adatum (ERP)" in result.describe()


def test_the_same_conflict_twice_marks_the_record_skipped_until_reset(sync, conflict) -> None:
    sync.run("CUSTOMER", run_id="second")
    (error,) = sync.record_errors("CUSTOMER")
    assert (error["error_count"], error["skipped"]) == (1, False)
    # Nothing changed: the conflict is found again from the failed records kept for retry.
    third = sync.counts(sync.run("CUSTOMER", run_id="third"))
    assert third["CUSTOMER to CRM"] == {"failed": 1}
    (error,) = sync.record_errors("CUSTOMER")
    assert (error["error_count"], error["skipped"]) == (2, True)
    # Left alone: nothing written, nothing failed (a record changed in the second before a run's start is read
    # again by the next run, the watermark rule's overlap, and then counted Skipped again).
    fourth = sync.counts(sync.run("CUSTOMER", run_id="fourth"))
    assert set(fourth["CUSTOMER to CRM"]) <= {"skipped"} and fourth["CUSTOMER from CRM"] == {}
    # A Skipped pair is left alone even when it changes again, on either side.
    sync.crm_user.upsert("accounts", conflict[1], {"telephone1": "123"}, mode="update")
    fifth = sync.counts(sync.run("CUSTOMER", run_id="fifth"))
    # Counted once, Skipped, in whichever pass meets the pair first (the ERP record when it is read again).
    assert sorted(fifth.values(), key=len) == [{}, {"skipped": 1}]
    assert sync.account("10000")["name"] == "Adatum (CRM)" and sync.customer("10000")["displayName"] == "Adatum (ERP)"
    assert reset_skipped(sync.state, "CUSTOMER") == 1
    assert sync.counts(sync.run("CUSTOMER", run_id="sixth"))["CUSTOMER to CRM"] == {"failed": 1}


def test_making_the_two_sides_agree_resolves_the_conflict(sync, conflict) -> None:
    sync.run("CUSTOMER", run_id="second")
    sync.crm_user.upsert("accounts", conflict[1], {"name": "Adatum (ERP)"}, mode="update")
    counts = sync.counts(sync.run("CUSTOMER", run_id="third"))
    assert counts["CUSTOMER to CRM"] == {"unchanged": 1}
    assert sync.record_errors("CUSTOMER") == []
    assert sync.counts(sync.run("CUSTOMER", run_id="fourth")) == {"CUSTOMER to CRM": {}, "CUSTOMER from CRM": {}}


@pytest.mark.parametrize(
    ("rule", "winner"),
    [("send_erp_data", "Adatum (ERP)"), ("take_crm_data", "Adatum (CRM)")],
)
def test_a_resolution_rule_decides_the_winner(sync, conflict, rule, winner) -> None:
    sync.edit_mapping("40_customer.yaml", lambda m: m.update(resolve_update_conflicts=rule))
    counts = sync.counts(sync.run("CUSTOMER", run_id="second"))
    if rule == "send_erp_data":
        assert counts == {"CUSTOMER to CRM": {"modified": 1}, "CUSTOMER from CRM": {}}
    else:
        assert counts == {"CUSTOMER to CRM": {}, "CUSTOMER from CRM": {"modified": 1}}
    assert sync.customer("10000")["displayName"] == winner
    assert sync.account("10000")["name"] == winner
    assert sync.record_errors("CUSTOMER") == []
    assert sync.counts(sync.run("CUSTOMER", run_id="third")) == {"CUSTOMER to CRM": {}, "CUSTOMER from CRM": {}}


def test_a_skip_choice_is_applied_at_once_and_the_record_stays_skipped(sync, conflict) -> None:
    from dynamics_jobqueue.sync.conflict_choices import open_conflicts, save_choice

    sync.edit_mapping("40_customer.yaml", lambda m: m.update(resolve_update_conflicts="ask"))
    sync.run("CUSTOMER", run_id="second")
    (asked,) = open_conflicts(sync.state, "CUSTOMER")
    with pytest.raises(psycopg.errors.CheckViolation):
        save_choice(sync.state, asked, "keep both", chosen_by="ana")
    save_choice(sync.state, asked, "skip", chosen_by="ana", dag_id="crm_sync", run_id="r", task_id="ask", map_index=0)
    assert open_conflicts(sync.state, "CUSTOMER") == []
    (error,) = sync.record_errors("CUSTOMER")
    assert error["skipped"] is True
    with sync.state.transaction() as cur:
        stored = cur.execute(
            "SELECT resolution, chosen_by, map_index, applied_at IS NOT NULL, fields FROM dynamics.sync_conflict_choice"
        ).fetchall()
    assert stored == [("skip", "ana", 0, True, asked["fields"])]  # the refused choice left nothing behind
    third = sync.counts(sync.run("CUSTOMER", run_id="third"))
    assert set(third["CUSTOMER to CRM"]) <= {"skipped"} and third["CUSTOMER from CRM"] == {}
    assert sync.customer("10000")["displayName"] == "Adatum (ERP)" and sync.account("10000")["name"] == "Adatum (CRM)"


def test_both_sides_changed_but_no_bidirectional_field_differs_is_no_conflict(sync) -> None:
    # BC (codeunit 5345 "Integration Rec. Synch. Invoke"): only a bidirectional field that would change fails the
    # record. The ERP raised the credit limit (to the CRM only); the CRM user edited an unmapped description.
    sync.run(run_id="first")
    customer = sync.customer("10000")
    account = sync.account("10000")
    sync.erp_user.update("customers", customer["id"], {"creditLimit": 12345})
    sync.crm_user.upsert("accounts", account["accountid"], {"description": "met at the fair"}, mode="update")
    assert sync.account("10000")["creditlimit"] != 12345
    counts = sync.counts(sync.run("CUSTOMER", run_id="second"))
    assert counts == {"CUSTOMER to CRM": {"modified": 1}, "CUSTOMER from CRM": {"unchanged": 1}}
    after = sync.account("10000")
    assert after["creditlimit"] == 12345 and after["description"] == "met at the fair"
    assert sync.customer("10000")["creditLimit"] == 12345
    assert sync.record_errors("CUSTOMER") == []


def test_a_bidirectional_field_that_would_change_fails_with_bc_message(sync, conflict) -> None:
    result = sync.run("CUSTOMER", run_id="second")["CUSTOMER"]
    message = result.passes[0].failures[0].message
    assert message.startswith(
        "Cannot update a record in the accounts table. The mapping between displayName field on the customers "
        "table and the name field on the accounts table is bi-directional, and one or both values have changed "
        "since the last synchronization."
    )
    assert sync.customer("10000")["displayName"] == "Adatum (ERP)" and sync.account("10000")["name"] == "Adatum (CRM)"


@pytest.mark.parametrize(
    ("option", "winner", "counts"),
    [
        ("send ERP data", "Adatum (ERP)", {"CUSTOMER to CRM": {"modified": 1}, "CUSTOMER from CRM": {}}),
        ("take CRM data", "Adatum (CRM)", {"CUSTOMER to CRM": {}, "CUSTOMER from CRM": {"modified": 1}}),
    ],
)
def test_ask_fails_the_conflict_with_both_values_and_the_next_run_applies_the_users_choice(
    sync, conflict, option, winner, counts
) -> None:
    from dynamics_jobqueue.operators.conflicts import OPTIONS
    from dynamics_jobqueue.sync.conflict_choices import open_conflicts, save_choice

    erp_id, crm_id = conflict
    sync.edit_mapping("40_customer.yaml", lambda m: m.update(resolve_update_conflicts="ask"))
    assert sync.counts(sync.run("CUSTOMER", run_id="second")) == {
        "CUSTOMER to CRM": {"failed": 1},
        "CUSTOMER from CRM": {},
    }
    (asked,) = open_conflicts(sync.state, "CUSTOMER")
    assert (asked["source_id"], asked["source_key"], asked["destination_id"]) == (erp_id, "10000", crm_id)
    assert {"field": "name", "erp_field": "displayName", "erp": "Adatum (ERP)", "crm": "Adatum (CRM)"} in asked[
        "fields"
    ]
    assert "required action" in asked["message"]
    # The required action's answer, as ConflictChoiceOperator stores it.
    save_choice(sync.state, asked, OPTIONS[option], chosen_by="ana", dag_id="crm_sync", run_id="r", task_id="ask")
    assert open_conflicts(sync.state, "CUSTOMER") == []  # chosen: not asked again
    assert sync.counts(sync.run("CUSTOMER", run_id="third")) == counts
    assert sync.customer("10000")["displayName"] == winner and sync.account("10000")["name"] == winner
    assert sync.record_errors("CUSTOMER") == []
    with sync.state.transaction() as cur:
        applied = cur.execute("SELECT chosen_by, applied_at IS NOT NULL FROM dynamics.sync_conflict_choice").fetchall()
    assert applied == [("ana", True)]
    assert sync.counts(sync.run("CUSTOMER", run_id="fourth")) == {"CUSTOMER to CRM": {}, "CUSTOMER from CRM": {}}
