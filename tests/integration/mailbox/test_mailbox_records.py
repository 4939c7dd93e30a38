"""Mailbox records on a real Postgres: one user <-> one mailbox, confirmed remaps, adaptive scheduling."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from dynamics_jobqueue.mailbox import records, schedule
from dynamics_jobqueue.mailbox.records import IncomingFilter, MailboxAlreadyMappedError, Workload

USER_A = str(uuid.uuid4())
USER_B = str(uuid.uuid4())


@pytest.fixture
def two_mailboxes(state_store):
    records.save_profile(state_store, "Dovecot", "imap", "mail_default")
    jo = records.create_mailbox(state_store, name="Jim Olive", email_address="JO@contoso.com", server_profile="Dovecot")
    bc = records.create_mailbox(
        state_store, name="Benjamin Chiu", email_address="BC@contoso.com", server_profile="Dovecot"
    )
    return jo, bc


def _log(state_store) -> list[tuple]:
    with state_store.transaction() as cur:
        cur.execute(
            "SELECT mailbox_id, action, previous_user_id::text, new_user_id::text FROM dynamics.mailbox_mapping_log"
            " ORDER BY entry_no"
        )
        return cur.fetchall()


def test_new_mailbox_defaults(two_mailboxes) -> None:
    jo, _ = two_mailboxes
    assert jo.incoming_filter is IncomingFilter.REPLIES_TO_TRACKED
    assert jo.workloads() == [Workload.INCOMING, Workload.OUTGOING]
    assert jo.base_interval_s == 900 and jo.max_interval_s == 21_600


def test_database_enforces_one_user_one_mailbox(state_store, two_mailboxes) -> None:
    jo, bc = two_mailboxes
    with state_store.transaction() as cur:
        cur.execute("UPDATE dynamics.mailbox SET crm_user_id = %s WHERE mailbox_id = %s", (USER_A, jo.mailbox_id))
    with pytest.raises(psycopg.errors.UniqueViolation), state_store.transaction() as cur:
        cur.execute("UPDATE dynamics.mailbox SET crm_user_id = %s WHERE mailbox_id = %s", (USER_A, bc.mailbox_id))
    with pytest.raises(psycopg.errors.UniqueViolation):
        records.create_mailbox(state_store, name="dup", email_address="jo@CONTOSO.com", server_profile="Dovecot")


def test_remap_is_refused_unless_confirmed_then_logged(state_store, two_mailboxes) -> None:
    jo, bc = two_mailboxes
    assert records.map_user(state_store, jo.mailbox_id, USER_A) == []
    assert records.map_user(state_store, jo.mailbox_id, USER_A) == []  # same mapping again: no-op

    with pytest.raises(MailboxAlreadyMappedError, match=r"already has mailbox JO@contoso\.com"):
        records.map_user(state_store, bc.mailbox_id, USER_A)
    with pytest.raises(MailboxAlreadyMappedError, match="is mapped to CRM user"):
        records.map_user(state_store, jo.mailbox_id, USER_B)
    assert records.get_mailbox(state_store, bc.mailbox_id).crm_user_id is None

    broken = records.map_user(state_store, bc.mailbox_id, USER_A, confirm=True, changed_by="admin")
    assert broken == [f"mailbox JO@contoso.com no longer belongs to CRM user {USER_A}"]
    assert records.get_mailbox(state_store, jo.mailbox_id).crm_user_id is None
    assert records.get_mailbox(state_store, bc.mailbox_id).crm_user_id == USER_A
    assert _log(state_store) == [
        (jo.mailbox_id, "mapped", None, USER_A),
        (jo.mailbox_id, "broken", USER_A, None),
        (bc.mailbox_id, "mapped", None, USER_A),
    ]


def _mapping(state_store) -> tuple[list[str | None], list[tuple], tuple]:
    """Every mailbox's CRM user, the mapping log and the (only) remap request's status and decider."""
    with state_store.transaction() as cur:
        cur.execute("SELECT crm_user_id::text FROM dynamics.mailbox ORDER BY mailbox_id")
        users = [row[0] for row in cur.fetchall()]
        cur.execute("SELECT status, decided_by FROM dynamics.mailbox_remap_request")
        request = cur.fetchone()
    return users, _log(state_store), request


def test_approving_a_remap_applies_it_and_marks_it_approved_in_one_transaction(state_store, two_mailboxes) -> None:
    """A failure between applying the remap and marking the request approved (here: the request's UPDATE fails,
    as a crash of the approving task would stop it) leaves neither: the request is pending and the mapping as it
    was. Deciding again then applies it once, with one mapping log entry per change, by the approver."""
    jo, bc = two_mailboxes
    records.map_user(state_store, jo.mailbox_id, USER_A)
    request_id = records.request_remap(
        state_store, bc.mailbox_id, USER_A, reason=f"CRM user {USER_A} already has mailbox JO@contoso.com",
        requested_by="admin",
    )  # fmt: skip
    before = _mapping(state_store)
    assert before == ([USER_A, None], [(jo.mailbox_id, "mapped", None, USER_A)], ("pending", None))
    with state_store.transaction() as cur:
        cur.execute(
            "CREATE FUNCTION dynamics.fail_decision() RETURNS trigger LANGUAGE plpgsql AS"
            " $$BEGIN RAISE EXCEPTION 'injected failure before the request is marked decided'; END$$;"
            " CREATE TRIGGER fail_decision BEFORE UPDATE ON dynamics.mailbox_remap_request"
            " FOR EACH ROW WHEN (NEW.status <> 'pending') EXECUTE FUNCTION dynamics.fail_decision()"
        )
    with pytest.raises(psycopg.errors.RaiseException, match="injected failure"):
        records.decide_remap(state_store, request_id, approved=True, decided_by="approver")
    assert _mapping(state_store) == before

    with state_store.transaction() as cur:
        cur.execute("DROP TRIGGER fail_decision ON dynamics.mailbox_remap_request")
    broken = records.decide_remap(state_store, request_id, approved=True, decided_by="approver")
    assert broken == [f"mailbox JO@contoso.com no longer belongs to CRM user {USER_A}"]
    assert _mapping(state_store) == (
        [None, USER_A],
        [
            (jo.mailbox_id, "mapped", None, USER_A),
            (jo.mailbox_id, "broken", USER_A, None),
            (bc.mailbox_id, "mapped", None, USER_A),
        ],
        ("approved", "approver"),
    )
    with state_store.transaction() as cur:
        cur.execute("SELECT changed_by FROM dynamics.mailbox_mapping_log WHERE entry_no > 1 ORDER BY entry_no")
        assert [row[0] for row in cur.fetchall()] == ["approver", "approver"]
    with pytest.raises(ValueError, match="already approved by approver"):
        records.decide_remap(state_store, request_id, approved=False, decided_by="someone else")


def test_adaptive_frequency(state_store, two_mailboxes) -> None:
    jo, _ = two_mailboxes
    t0 = datetime.now(UTC) + timedelta(seconds=1)  # new workloads are due at once
    assert set(schedule.due_mailboxes(state_store, t0)) == {jo.mailbox_id, two_mailboxes[1].mailbox_id}

    def run(outcome, minutes_later: float) -> timedelta:
        now = t0 + timedelta(minutes=minutes_later)
        return schedule.record_outcome(state_store, jo, Workload.INCOMING, outcome, now) - now

    empty = schedule.WorkloadOutcome()
    assert run(schedule.WorkloadOutcome(processed=3), 0) == timedelta(minutes=15)
    assert [run(empty, 0) for _ in range(6)] == [timedelta(minutes=m) for m in (30, 60, 120, 240, 360, 360)]
    assert run(schedule.WorkloadOutcome(processed=1), 0) == timedelta(minutes=15)  # a hit resets

    outage = schedule.WorkloadOutcome(error_code="connection_failed", error_message="down", fix="wait")
    assert [run(outage, 0) for _ in range(3)] == [timedelta(minutes=m) for m in (1, 2, 4)]
    bad_password = schedule.WorkloadOutcome(
        error_code="auth_failed", error_message="refused", fix="correct the password", permanent=True
    )
    assert run(bad_password, 0) == timedelta(hours=1)
    with state_store.transaction() as cur:
        cur.execute(
            "SELECT status, permanent_error, last_error_code, last_error_fix, error_count"
            " FROM dynamics.mailbox_workload"
            " WHERE mailbox_id = %s AND workload = 'incoming'",
            (jo.mailbox_id,),
        )
        assert cur.fetchone() == ("failure", True, "auth_failed", "correct the password", 4)
    # the cause is fixed: the next retest succeeds and the mailbox is back on its normal schedule
    assert run(schedule.WorkloadOutcome(processed=2), 60) == timedelta(minutes=15)
    with state_store.transaction() as cur:
        cur.execute(
            "SELECT status, permanent_error, error_count FROM dynamics.mailbox_workload"
            " WHERE mailbox_id = %s AND workload = 'incoming'",
            (jo.mailbox_id,),
        )
        assert cur.fetchone() == ("success", False, 0)


def test_disabled_workloads_are_never_due(state_store, two_mailboxes) -> None:
    jo, bc = two_mailboxes
    records.update_mailbox(state_store, jo.mailbox_id, incoming_method="none", outgoing_method="none")
    assert schedule.due_mailboxes(state_store) == [bc.mailbox_id]
