"""Mailboxes on real-world trouble and Microsoft's mailbox rules: real Dovecot (IMAP, POP3), real Postgres,
the sandbox (Dataverse, Graph) over HTTPS.

No message stops a mailbox (a POP3 line over 2,048 bytes, a message over the size limit, a Graph message
without MIME source, a second message with a Message-ID already taken); a failed cycle reports what it did;
a message without Message-ID has one id over IMAP and POP3; an idle IMAP cycle's schedule persists; outgoing
email is never backed off; Approve Email, Test & Enable and the two recovery rules; alerts reach the owner.
"""

from __future__ import annotations

import base64
import json
import os
from datetime import UTC, datetime, timedelta

import pytest
from test_mailbox_sync import emails_with, mail, make_due, make_mailbox, pending_email

from dynamics_jobqueue.hooks import mail as mail_hook
from dynamics_jobqueue.hooks.dataverse import DataverseHook
from dynamics_jobqueue.hooks.state import StateStoreHook
from dynamics_jobqueue.mailbox import cycle, records, schedule
from dynamics_jobqueue.mailbox.cycle import MailboxSyncError, sync_mailbox, sync_mailboxes
from dynamics_jobqueue.mailbox.records import IncomingFilter
from dynamics_jobqueue.notifiers import FailureAlert, JobQueueFailureNotifier


def workload_row(state_store, mailbox_id: int, workload: str) -> dict:
    """The workload's row as a fresh connection sees it (what was committed, nothing else)."""
    with StateStoreHook().transaction() as cur:
        cur.execute(
            "SELECT status, enabled, permanent_error, error_count, last_error_code, next_sync_at, empty_cycles,"
            " items_processed FROM dynamics.mailbox_workload WHERE mailbox_id = %s AND workload = %s",
            (mailbox_id, workload),
        )
        names = [d.name for d in cur.description]
        return dict(zip(names, cur.fetchone(), strict=True))


def quarantine(state_store, mailbox_id: int) -> list[tuple[str, bytes]]:
    with state_store.transaction() as cur:
        cur.execute(
            "SELECT reason, raw FROM dynamics.mailbox_quarantine WHERE mailbox_id = %s ORDER BY quarantine_id",
            (mailbox_id,),
        )
        return [(r, bytes(raw)) for r, raw in cur.fetchall()]


def long_line_mail(n: str) -> bytes:
    """A message with a 6,000-byte line (unfolded HTML as some clients send it)."""
    html = "<p>" + "x" * 6000 + "</p>"
    return (
        f"From: ana.bowman@northwind.example\r\nTo: JO@contoso.com\r\nSubject: long line {n}\r\n"
        f"Message-ID: <{n}@corpus.test>\r\nContent-Type: text/html\r\n\r\n{html}\r\n"
    ).encode()


# -- no message stops a mailbox --------------------------------------------------------------------------------
def test_pop3_reads_lines_over_2048_bytes_and_quarantines_an_oversized_message(
    state_store, sandbox, crm, mail_account, monkeypatch
) -> None:
    big = mail("too-big", "ana.bowman@northwind.example", "huge") + b"y" * 9000 + b"\r\n"
    mail_account.deliver(long_line_mail("long-1"), big, long_line_mail("long-2"))
    mailbox = make_mailbox(
        state_store, mail_account, crm, server_type="pop3", outgoing_method="none", incoming_filter=IncomingFilter.ALL
    )
    monkeypatch.setattr(mail_hook, "MAX_MESSAGE_BYTES", 8192)
    summary = sync_mailbox(state_store, mailbox.mailbox_id)
    assert summary.errors == []
    assert sorted(s for s, _ in summary.tracked) == ["long line long-1", "long line long-2"]
    (email,) = emails_with("<long-1@corpus.test>")
    description = DataverseHook().get("emails", email["activityid"], select=["description"])["description"]
    assert description.strip() == "<p>" + "x" * 6000 + "</p>"
    ((reason, raw),) = quarantine(state_store, mailbox.mailbox_id)
    assert "larger than 8,192 bytes" in reason and raw.startswith(b"From: ana.bowman") and len(raw) <= 8192
    make_due(state_store, mailbox.mailbox_id)
    again = sync_mailbox(state_store, mailbox.mailbox_id)
    assert (again.tracked, again.quarantined, again.errors) == ([], [], [])


def test_a_failed_cycle_reports_what_it_tracked(state_store, sandbox, crm, mail_account) -> None:
    mail_account.deliver(mail("before-failure", "ana.bowman@northwind.example", "tracked before the failure"))
    mailbox = make_mailbox(
        state_store, mail_account, crm, outgoing_method="none", incoming_filter=IncomingFilter.ALL,
        folders=("INBOX", "No Such Folder"),
    )  # fmt: skip
    summary = sync_mailbox(state_store, mailbox.mailbox_id)
    assert [s for s, _ in summary.tracked] == ["tracked before the failure"]
    assert summary.errors and "No Such Folder" in summary.errors[0]
    row = workload_row(state_store, mailbox.mailbox_id, "incoming")
    assert (row["status"], row["items_processed"]) == ("failure", 1)


def test_graph_message_without_mime_source_is_quarantined_and_the_folder_moves_on(
    state_store, sandbox, crm, monkeypatch
) -> None:
    conn = sandbox.connections()["dataverse_default"]
    monkeypatch.setenv(
        "AIRFLOW_CONN_GRAPH_RULES",
        json.dumps({**conn, "conn_type": "dynamics_graph", "host": f"{sandbox.base_url}/graph"}),
    )
    address = f"graph-rules-{os.getpid()}-{datetime.now(UTC):%H%M%S%f}@contoso.com"
    records.save_profile(state_store, "Exchange Online (rules)", "exchange_online", "graph_rules")
    box = records.create_mailbox(
        state_store, name="graph rules", email_address=address, server_profile="Exchange Online (rules)",
        incoming_filter=IncomingFilter.ALL, outgoing_method="none",
    )  # fmt: skip
    records.map_user(state_store, box.mailbox_id, crm["jo"], confirm=True)
    fault = {"status": 400, "code": "ErrorMimeContentConversionFailed", "message": "MIME conversion failed."}
    for raw, error in ((mail("g-1", "a@x.example", "first"), None), (mail("g-2", "b@x.example", "broken"), fault),
                       (mail("g-3", "c@x.example", "third"), None)):  # fmt: skip
        body = {"mime": base64.b64encode(raw).decode(), **({"mime_error": error} if error else {})}
        sandbox.admin(f"graph/users/{address}/messages", body)
    summary = sync_mailbox(state_store, box.mailbox_id)
    assert summary.errors == []
    assert sorted(s for s, _ in summary.tracked) == ["first", "third"]
    ((reason, raw),) = quarantine(state_store, box.mailbox_id)
    assert "ErrorMimeContentConversionFailed" in reason or "MIME conversion failed" in reason
    assert json.loads(raw)["subject"] == "broken"  # what Graph told about the message is kept


def test_a_second_message_with_a_taken_message_id_is_recorded_not_dropped(
    state_store, sandbox, crm, mail_account
) -> None:
    first = mail("taken", "ana.bowman@northwind.example", "the first one")
    other = first.replace(b"Body of taken.", b"A different body under the same Message-ID.")
    mail_account.deliver(first, other, first)  # the third is the first message again (delivered twice)
    mailbox = make_mailbox(state_store, mail_account, crm, outgoing_method="none", incoming_filter=IncomingFilter.ALL)
    summary = sync_mailbox(state_store, mailbox.mailbox_id)
    assert [s for s, _ in summary.tracked] == ["the first one"]
    assert summary.duplicates == 1
    ((reason, raw),) = quarantine(state_store, mailbox.mailbox_id)
    assert "<taken@corpus.test> is already taken by a different message" in reason
    assert b"A different body" in raw


def test_a_message_without_message_id_has_one_id_over_imap_and_pop3(state_store, sandbox, crm, make_account) -> None:
    raw = b"From: ana.bowman@northwind.example\r\nTo: JO@contoso.com\r\nSubject: no id\r\n\r\nNo Message-ID here.\r\n"
    imap_account, pop3_account = make_account("noid-imap"), make_account("noid-pop3")
    imap_account.deliver(raw)
    pop3_account.deliver(raw)
    imap_box = make_mailbox(state_store, imap_account, crm, outgoing_method="none", incoming_filter=IncomingFilter.ALL)
    records.map_user(state_store, imap_box.mailbox_id, crm["bc"], confirm=True)
    pop3_box = make_mailbox(
        state_store, pop3_account, crm, server_type="pop3", outgoing_method="none", incoming_filter=IncomingFilter.ALL
    )
    assert len(sync_mailbox(state_store, imap_box.mailbox_id).tracked) == 1
    (tracked,) = sync_mailbox(state_store, pop3_box.mailbox_id).tracked
    assert "activity already existed" in tracked[1]  # the IMAP copy's activity: the same synthetic id
    with state_store.transaction() as cur:
        cur.execute(
            "SELECT DISTINCT message_id FROM dynamics.mailbox_message WHERE mailbox_id = ANY(%s)",
            ([imap_box.mailbox_id, pop3_box.mailbox_id],),
        )
        assert len(cur.fetchall()) == 1


# -- on time ---------------------------------------------------------------------------------------------------
def test_idle_imap_cycle_schedule_persists_and_outgoing_is_never_backed_off(
    state_store, sandbox, crm, mail_account
) -> None:
    mailbox = make_mailbox(state_store, mail_account, crm)
    sync_mailbox(state_store, mailbox.mailbox_id)  # positions stored
    for _ in range(4):  # idle cycles: the incoming back-off grows, and each update is committed
        make_due(state_store, mailbox.mailbox_id)
        idle = sync_mailbox(state_store, mailbox.mailbox_id)
        assert idle.round_trips == 1 and idle.errors == []
    incoming = workload_row(state_store, mailbox.mailbox_id, "incoming")
    assert incoming["empty_cycles"] == 5
    wait = (incoming["next_sync_at"] - datetime.now(UTC)).total_seconds()
    assert wait > 900 * 2**4 - 60  # 4 hours: idle mailboxes back off
    outgoing = workload_row(state_store, mailbox.mailbox_id, "outgoing")
    assert (outgoing["next_sync_at"] - datetime.now(UTC)).total_seconds() <= 900  # never backed off
    in_five_minutes = datetime.now(UTC) + timedelta(minutes=5)
    dataverse = DataverseHook()
    assert mailbox.mailbox_id not in cycle.select_due(state_store, dataverse, in_five_minutes)  # nothing to send

    # an email put in Pending Send goes out on the next tick although incoming is hours away
    activity_id = pending_email(crm, "Sent within five minutes")
    due = cycle.select_due(state_store, dataverse, in_five_minutes)
    assert mailbox.mailbox_id in due
    (summary,) = sync_mailboxes([mailbox.mailbox_id], state=state_store, now=in_five_minutes)
    assert [s for s, _ in summary.sent] and summary.ran == ["outgoing"]
    assert DataverseHook().get("emails", activity_id, select=["statuscode"])["statuscode"] == 3
    assert mailbox.mailbox_id not in cycle.select_due(state_store, dataverse, in_five_minutes)


# -- Microsoft's mailbox states --------------------------------------------------------------------------------
def use_password(monkeypatch, account, password: str, port: int | None = None) -> None:
    conn_name = f"AIRFLOW_CONN_{account.conn_id.upper()}"
    conn = json.loads(os.environ[conn_name])
    extra = {**conn["extra"], **({"imap_port": port, "timeout": 2} if port else {})}
    monkeypatch.setenv(conn_name, json.dumps({**conn, "password": password, "extra": extra}))


def test_approve_email_and_test_and_enable(state_store, sandbox, crm, mail_account) -> None:
    mail_account.deliver(mail("approved", "ana.bowman@northwind.example", "after approval"))
    mailbox = make_mailbox(state_store, mail_account, crm, incoming_filter=IncomingFilter.ALL)
    records.update_mailbox(state_store, mailbox.mailbox_id, email_approval="pending_approval")
    assert mailbox.mailbox_id not in schedule.due_mailboxes(state_store)
    failed = cycle.test_and_enable(state_store, mailbox.mailbox_id)
    assert sorted(failed.ran) == ["incoming", "outgoing"] and "not approved" in failed.errors[0]
    assert failed.owner_email == "JO@contoso.com"
    assert workload_row(state_store, mailbox.mailbox_id, "incoming")["enabled"] is False

    records.update_mailbox(state_store, mailbox.mailbox_id, email_approval="approved")
    tested = cycle.test_and_enable(state_store, mailbox.mailbox_id)
    assert tested.errors == [] and [s for s, _ in tested.tracked] == ["after approval"]
    for workload in ("incoming", "outgoing"):
        row = workload_row(state_store, mailbox.mailbox_id, workload)
        assert (row["status"], row["enabled"]) == ("success", True)


def test_microsoft_rule_disables_on_a_permanent_error_until_test_and_enable(
    state_store, sandbox, crm, mail_account, monkeypatch
) -> None:
    mailbox = make_mailbox(state_store, mail_account, crm, outgoing_method="none")
    records.update_mailbox(state_store, mailbox.mailbox_id, recovery_rule="microsoft")
    use_password(monkeypatch, mail_account, "wrong")
    sync_mailbox(state_store, mailbox.mailbox_id)
    row = workload_row(state_store, mailbox.mailbox_id, "incoming")
    assert (row["status"], row["enabled"], row["permanent_error"]) == ("failure", False, True)
    assert mailbox.mailbox_id not in schedule.due_mailboxes(state_store, datetime.now(UTC) + timedelta(days=1))

    use_password(monkeypatch, mail_account, mail_account.password)
    assert cycle.test_and_enable(state_store, mailbox.mailbox_id).errors == []
    assert workload_row(state_store, mailbox.mailbox_id, "incoming")["enabled"] is True


def test_microsoft_rule_ten_transient_failures_become_permanent_auto_rule_never_disables(
    state_store, sandbox, crm, make_account, monkeypatch
) -> None:
    boxes = {}
    for rule in ("microsoft", "auto"):
        account = make_account(f"outage-{rule}")
        use_password(monkeypatch, account, account.password, port=1)  # the server is unreachable
        boxes[rule] = make_mailbox(state_store, account, crm, outgoing_method="none")
        records.map_user(state_store, boxes[rule].mailbox_id, crm["bc" if rule == "auto" else "jo"], confirm=True)
        records.update_mailbox(state_store, boxes[rule].mailbox_id, recovery_rule=rule)
    now = datetime.now(UTC)
    for attempt in range(10):
        now += timedelta(minutes=5)
        for rule, box in boxes.items():
            sync_mailbox(state_store, box.mailbox_id, now=now, force=True)
            row = workload_row(state_store, box.mailbox_id, "incoming")
            if rule == "microsoft" and attempt < 9:
                assert (row["enabled"], row["permanent_error"]) == (True, False)
                assert row["next_sync_at"] == now + timedelta(minutes=5)  # retried 5 minutes apart
    micro, auto = (workload_row(state_store, boxes[r].mailbox_id, "incoming") for r in ("microsoft", "auto"))
    assert (micro["error_count"], micro["enabled"], micro["permanent_error"]) == (10, False, True)
    assert (auto["error_count"], auto["enabled"], auto["permanent_error"]) == (10, True, False)


def test_failure_alert_goes_to_the_owner_and_the_alert_address(
    state_store, sandbox, crm, mail_account, monkeypatch
) -> None:
    mailbox = make_mailbox(state_store, mail_account, crm, outgoing_method="none")
    use_password(monkeypatch, mail_account, "wrong")
    with pytest.raises(MailboxSyncError) as info:
        sync_mailboxes([mailbox.mailbox_id], state=state_store)
    assert info.value.queued_by == ["JO@contoso.com"]  # the mapped CRM user's email
    monkeypatch.setenv("DYNAMICS_ALERT_TO", "erp-team@contoso.com")
    alert = FailureAlert.from_context({"exception": info.value, "run_id": "scheduled__x"})  # as the callback reads it
    recipients = JobQueueFailureNotifier().recipients(alert.queued_by)
    assert recipients == ["erp-team@contoso.com", "JO@contoso.com"]


# -- attachments -----------------------------------------------------------------------------------------------
def test_attachments_become_activitymimeattachment_records_of_the_email(
    state_store, sandbox, crm, mail_account
) -> None:
    pdf = b"%PDF-1.4\n" + bytes(range(256)) * 8
    raw = (
        b"From: ana.bowman@northwind.example\r\nTo: JO@contoso.com\r\nSubject: order with files\r\n"
        b"Message-ID: <with-files@corpus.test>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="F"\r\n\r\n--F\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n'
        b"--F\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
        b"Content-Disposition: attachment; filename*=utf-8''Bestellung%20M%C3%BCller.pdf\r\n\r\n"
        + base64.encodebytes(pdf).replace(b"\n", b"\r\n")
        + b"--F\r\nContent-Type: message/rfc822\r\n\r\nFrom: jo@contoso.com\r\nSubject: our quote\r\n\r\nquote\r\n"
        b"--F--\r\n"
    )
    mail_account.deliver(raw)
    mailbox = make_mailbox(state_store, mail_account, crm, outgoing_method="none", incoming_filter=IncomingFilter.ALL)
    assert len(sync_mailbox(state_store, mailbox.mailbox_id).tracked) == 1
    (email,) = emails_with("<with-files@corpus.test>")
    rows = next(
        DataverseHook().iter_pages(
            "activitymimeattachments",
            filter=f"_objectid_value eq {email['activityid']}",
            select=["filename", "mimetype", "body", "attachmentnumber", "objecttypecode"],
        )
    )
    found = {r["filename"]: r for r in rows}
    assert set(found) == {"Bestellung Müller.pdf", "our quote.eml"}
    pdf_row = found["Bestellung Müller.pdf"]
    assert (pdf_row["mimetype"], pdf_row["objecttypecode"], pdf_row["attachmentnumber"]) == (
        "application/pdf", "email", 1,
    )  # fmt: skip
    assert base64.b64decode(pdf_row["body"]) == pdf
    assert base64.b64decode(found["our quote.eml"]["body"]).startswith(b"From: jo@contoso.com")


def test_imap_message_the_server_cannot_deliver_is_quarantined_and_the_folder_moves_on(
    state_store, sandbox, crm, mail_account
) -> None:
    mail_account.deliver(*(mail(f"imap-{n}", "ana.bowman@northwind.example", f"message {n}") for n in (1, 2, 3)))
    mail_account.server.corrupt(mail_account.address, 2)  # Dovecot drops the connection on every FETCH of it
    mailbox = make_mailbox(state_store, mail_account, crm, outgoing_method="none", incoming_filter=IncomingFilter.ALL)
    summary = sync_mailbox(state_store, mailbox.mailbox_id)
    assert summary.errors == []
    assert sorted(s for s, _ in summary.tracked) == ["message 1", "message 3"]
    ((reason, raw),) = quarantine(state_store, mailbox.mailbox_id)
    assert "drops the connection when asked for UID 2" in reason and raw == b""
    make_due(state_store, mailbox.mailbox_id)
    again = sync_mailbox(state_store, mailbox.mailbox_id)
    assert (again.tracked, again.quarantined, again.errors, again.round_trips) == ([], [], [], 1)
