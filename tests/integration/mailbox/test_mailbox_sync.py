"""Mailbox synchronization end to end: real Dovecot/SMTP, real Postgres, the sandbox over HTTPS.

Covers incoming email over IMAP, POP3 and Microsoft Graph with every filter option, correlation (In-Reply-To,
tracking token, References) to the regarding record, quarantine, UIDVALIDITY change and Graph resync without
twins, outgoing email (SMTP, Graph sendMail) exactly once even when the task is killed and retried, and
per-mailbox isolation with self-recovery.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dynamics_jobqueue.hooks.dataverse import DataverseHook
from dynamics_jobqueue.mailbox import records
from dynamics_jobqueue.mailbox.crm import activity_id_for
from dynamics_jobqueue.mailbox.cycle import MailboxSyncError, sync_mailbox, sync_mailboxes
from dynamics_jobqueue.mailbox.records import IncomingFilter

REPO = Path(__file__).resolve().parents[3]


def mail(n: str, sender: str, subject: str, *, headers: str = "", to: str = "JO@contoso.com") -> bytes:
    return (
        f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: Mon, 16 Nov 2026 09:00:00 +0000\r\n"
        f"Message-ID: <{n}@corpus.test>\r\n{headers}\r\nBody of {n}.\r\n"
    ).encode()


CORPUS = {
    "reply-irt": mail("reply-irt", "Ana Bowman <ana.bowman@northwind.example>", "Re: Quote 1001",
                      headers="In-Reply-To: <quote-1001@contoso.com>\r\n"),
    "reply-token": mail("reply-token", "someone@elsewhere.example", "RE: Quote 1001 CRM:0000042"),
    "reply-refs": mail("reply-refs", "buyer@northwind.example", "Fwd: quote",
                       headers="References: <quote-1001@contoso.com> <unknown@x>\r\n"),
    "from-contact": mail("from-contact", "ana.bowman@northwind.example", "New order"),
    "from-user": mail("from-user", "BC@contoso.com", "Internal note"),
    "unrelated": mail("unrelated", "newsletter@shop.example", "50% off"),
}  # fmt: skip
GARBAGE = b"\x89PNG\r\n\x1a\r\n\xff\xfe binary data, not a mail message at all\r\n"

EXPECTED = {
    IncomingFilter.ALL: {"reply-irt", "reply-token", "reply-refs", "from-contact", "from-user", "unrelated"},
    IncomingFilter.REPLIES_TO_TRACKED: {"reply-irt", "reply-token", "reply-refs"},
    IncomingFilter.FROM_CRM_RECORDS: {"reply-irt", "from-contact"},
    IncomingFilter.FROM_EMAIL_ENABLED_RECORDS: {"reply-irt", "from-contact", "from-user"},
    IncomingFilter.NONE: set(),
}


def make_mailbox(state_store, account, crm, *, server_type: str = "imap", **settings) -> records.Mailbox:
    profile = f"{server_type}-{account.conn_id}"
    records.save_profile(state_store, profile, server_type, account.conn_id)
    mailbox = records.create_mailbox(
        state_store, name=account.address, email_address=account.address, server_profile=profile, **settings
    )
    records.map_user(state_store, mailbox.mailbox_id, crm["jo"], confirm=True)
    return records.get_mailbox(state_store, mailbox.mailbox_id)


def emails_with(message_id: str) -> list[dict]:
    rows = next(
        DataverseHook().iter_pages(
            "emails", filter=f"messageid eq '{message_id}'",
            select=["activityid", "_regardingobjectid_value", "_ownerid_value", "statuscode", "directioncode"],
        )
    )  # fmt: skip
    return rows


def tracked_names(summary) -> set[str]:
    return {row[0] for row in summary} if summary else set()


def make_due(state_store, mailbox_id: int) -> None:
    with state_store.transaction() as cur:
        cur.execute(
            "UPDATE dynamics.mailbox_workload SET next_sync_at = now() - interval '1 second' WHERE mailbox_id = %s",
            (mailbox_id,),
        )


@pytest.mark.parametrize("option", list(IncomingFilter))
def test_incoming_filter_options(state_store, sandbox, crm, make_account, option) -> None:
    account = make_account("filter")
    account.deliver(*CORPUS.values())
    mailbox = make_mailbox(state_store, account, crm, incoming_filter=option, outgoing_method="none")
    summary = sync_mailbox(state_store, mailbox.mailbox_id)
    assert summary.errors == []
    tracked = {name for name in CORPUS if emails_with(f"<{name}@corpus.test>")}
    assert tracked == EXPECTED[option]
    assert len(summary.tracked) == len(EXPECTED[option])
    assert len(summary.filtered) == len(CORPUS) - len(EXPECTED[option])


def test_incoming_imap_correlation_quarantine_and_no_twins(state_store, sandbox, crm, mail_account) -> None:
    mail_account.deliver(*CORPUS.values(), GARBAGE)
    mailbox = make_mailbox(state_store, mail_account, crm, outgoing_method="none")

    first = sync_mailbox(state_store, mailbox.mailbox_id)
    assert first.errors == [] and len(first.tracked) == 3 and len(first.quarantined) == 1
    for name in ("reply-irt", "reply-token", "reply-refs"):
        (email,) = emails_with(f"<{name}@corpus.test>")
        assert email["activityid"] == activity_id_for(f"<{name}@corpus.test>")
        assert email["_regardingobjectid_value"] == crm["northwind"]  # the quote's regarding account
        assert email["_ownerid_value"] == crm["jo"]
        assert email["statuscode"] == 4 and email["directioncode"] is False
    parties = next(
        DataverseHook().iter_pages(
            "activityparties",
            filter=f"_activityid_value eq {activity_id_for('<reply-irt@corpus.test>')}",
            select=["participationtypemask", "addressused", "_partyid_value"],
        )
    )
    by_role = {(p["participationtypemask"], p["addressused"]): p["_partyid_value"] for p in parties}
    assert by_role == {(1, "ana.bowman@northwind.example"): crm["ana"], (2, "jo@contoso.com"): crm["jo"]}
    with state_store.transaction() as cur:
        cur.execute("SELECT reason, raw FROM dynamics.mailbox_quarantine WHERE mailbox_id = %s", (mailbox.mailbox_id,))
        reason, raw = cur.fetchone()
    assert "no RFC 5322 header section" in reason and bytes(raw) == GARBAGE

    # nothing new: one STATUS, nothing fetched
    make_due(state_store, mailbox.mailbox_id)
    again = sync_mailbox(state_store, mailbox.mailbox_id)
    assert (again.tracked, again.filtered, again.quarantined, again.duplicates) == ([], [], [], 0)

    # the server rebuilt its index: every stored UID is void; the folder is read again without twins
    mail_account.server.set_uidvalidity(mail_account.address, 4242)
    mail_account.deliver(mail("after-change", "ana.bowman@northwind.example", "Re: x",
                              headers="In-Reply-To: <quote-1001@contoso.com>\r\n"))  # fmt: skip
    make_due(state_store, mailbox.mailbox_id)
    after = sync_mailbox(state_store, mailbox.mailbox_id)
    assert after.errors == []
    assert [s for s, _ in after.tracked] == ["Re: x"]
    assert after.duplicates == len(CORPUS) + 1
    assert any("UIDVALIDITY" in note and "4242" in note for note in after.notes)
    for name in (*EXPECTED[IncomingFilter.REPLIES_TO_TRACKED], "after-change"):
        assert len(emails_with(f"<{name}@corpus.test>")) == 1


def test_same_message_in_two_mailboxes_is_one_activity(state_store, sandbox, crm, make_account) -> None:
    first, second = make_account("a"), make_account("b")
    for account in (first, second):
        account.deliver(CORPUS["reply-irt"])
    box1 = make_mailbox(state_store, first, crm, outgoing_method="none")
    records.map_user(state_store, box1.mailbox_id, crm["bc"], confirm=True)  # one user <-> one mailbox
    box2 = make_mailbox(state_store, second, crm, outgoing_method="none")
    assert sync_mailbox(state_store, box1.mailbox_id).tracked
    assert "already existed" in sync_mailbox(state_store, box2.mailbox_id).tracked[0][1]
    assert len(emails_with("<reply-irt@corpus.test>")) == 1


def test_incoming_pop3_leaves_mail_on_server(state_store, sandbox, crm, mail_account) -> None:
    mail_account.deliver(CORPUS["reply-irt"], CORPUS["unrelated"])
    mailbox = make_mailbox(state_store, mail_account, crm, server_type="pop3", outgoing_method="none")
    summary = sync_mailbox(state_store, mailbox.mailbox_id)
    assert [s for s, _ in summary.tracked] == ["Re: Quote 1001"] and len(summary.filtered) == 1
    from dynamics_jobqueue.hooks.mail import MailHook

    with MailHook(mail_account.conn_id).pop3() as session:
        assert len(session.uidl()) == 2
    make_due(state_store, mailbox.mailbox_id)
    again = sync_mailbox(state_store, mailbox.mailbox_id)
    assert (again.tracked, again.filtered, again.duplicates) == ([], [], 0)


def pending_email(crm, subject: str) -> str:
    return DataverseHook().create(
        "emails",
        {
            "subject": subject,
            "description": "<p>Dear Ana, here is the revised quote.</p>",
            "torecipients": "ana.bowman@northwind.example",
            "directioncode": True,
            "statecode": 0,
            "statuscode": 6,
            "ownerid@odata.bind": f"/systemusers({crm['jo']})",
            "regardingobjectid_account_email@odata.bind": f"/accounts({crm['northwind']})",
        },
    )


def test_outgoing_sent_once_marked_sent_and_reply_correlates(state_store, sandbox, crm, mail_account) -> None:
    activity_id = pending_email(crm, "Revised quote 1001")
    mailbox = make_mailbox(state_store, mail_account, crm)
    before = len(mail_account.server.sent_messages())
    summary = sync_mailbox(state_store, mailbox.mailbox_id)
    assert summary.errors == [] and len(summary.sent) == 1
    sent = mail_account.server.sent_messages()[before:]
    assert len(sent) == 1 and sent[0].rcpt_tos == ["ana.bowman@northwind.example"]
    email = DataverseHook().get("emails", activity_id, select=["statuscode", "messageid", "trackingtoken", "senton"])
    assert email["statuscode"] == 3 and email["senton"]
    assert f"Message-ID: {email['messageid']}".encode() in sent[0].raw
    assert email["trackingtoken"].encode() in sent[0].raw  # the token is in the subject

    make_due(state_store, mailbox.mailbox_id)
    assert sync_mailbox(state_store, mailbox.mailbox_id).sent == []
    assert len(mail_account.server.sent_messages()) == before + 1

    # Ana answers the sent email: it correlates through In-Reply-To to the same regarding account
    mail_account.deliver(mail("ana-answer", "ana.bowman@northwind.example", "Re: Revised quote 1001",
                              headers=f"In-Reply-To: {email['messageid']}\r\n"))  # fmt: skip
    make_due(state_store, mailbox.mailbox_id)
    assert sync_mailbox(state_store, mailbox.mailbox_id).tracked
    (answer,) = emails_with("<ana-answer@corpus.test>")
    assert answer["_regardingobjectid_value"] == crm["northwind"]


def outgoing_state(state_store, activity_id: str) -> str | None:
    with state_store.transaction() as cur:
        cur.execute("SELECT state FROM dynamics.mailbox_outgoing WHERE activity_id = %s", (activity_id,))
        row = cur.fetchone()
    return row[0] if row else None


def test_outgoing_killed_after_smtp_and_retried_sends_once(state_store, sandbox, crm, mail_account) -> None:
    activity_id = pending_email(crm, "Killed mid-flight")
    mailbox = make_mailbox(state_store, mail_account, crm, incoming_method="none")
    server = mail_account.server
    before = len(server.sent_messages())
    # every CRM call now takes 1.5 s, so the task is still marking the email Sent when it is killed
    sandbox.admin("faults", {"latency_ms": 1500})
    code = f"from dynamics_jobqueue.mailbox.cycle import sync_mailboxes\nsync_mailboxes([{mailbox.mailbox_id}])\n"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "include"), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen([sys.executable, "-c", code], env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while outgoing_state(state_store, activity_id) != "sent" and time.monotonic() < deadline:
            assert child.poll() is None, "the task ended before it sent"
            time.sleep(0.02)
        assert len(server.sent_messages()) == before + 1, "the SMTP server never got the message"
        assert child.poll() is None, "the task finished before it could be killed"
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        sandbox.admin("faults", {})
    assert DataverseHook().get("emails", activity_id, select=["statuscode"])["statuscode"] == 6

    # Airflow retries the task: the send is not repeated, the email is marked Sent
    make_due(state_store, mailbox.mailbox_id)
    summaries = sync_mailboxes([mailbox.mailbox_id], state=state_store)
    assert [len(s.sent) for s in summaries] == [1]
    assert len(server.sent_messages()) == before + 1
    assert DataverseHook().get("emails", activity_id, select=["statuscode"])["statuscode"] == 3


def test_outgoing_smtp_outage_retries_and_sends_once(state_store, sandbox, crm, mail_account, monkeypatch) -> None:
    activity_id = pending_email(crm, "Sent after the outage")
    conn_name = f"AIRFLOW_CONN_{mail_account.conn_id.upper()}"
    good = json.loads(os.environ[conn_name])
    down = {**good, "extra": {**good["extra"], "smtp_port": 1, "timeout": 2}}
    monkeypatch.setenv(conn_name, json.dumps(down))
    mailbox = make_mailbox(state_store, mail_account, crm, incoming_method="none")
    before = len(mail_account.server.sent_messages())

    outage = sync_mailbox(state_store, mailbox.mailbox_id)
    assert len(outage.errors) == 1 and "SMTP server" in outage.errors[0] and "unreachable" in outage.errors[0]
    assert outgoing_state(state_store, activity_id) == "intent"
    with state_store.transaction() as cur:
        cur.execute(
            "SELECT status, permanent_error, next_sync_at - now() FROM dynamics.mailbox_workload"
            " WHERE mailbox_id = %s AND workload = 'outgoing'",
            (mailbox.mailbox_id,),
        )
        status, permanent, wait = cur.fetchone()
    assert (status, permanent) == ("failure", False) and wait.total_seconds() <= 60  # retried within a minute

    monkeypatch.setenv(conn_name, json.dumps(good))
    make_due(state_store, mailbox.mailbox_id)
    assert len(sync_mailbox(state_store, mailbox.mailbox_id).sent) == 1
    assert len(mail_account.server.sent_messages()) == before + 1
    assert outgoing_state(state_store, activity_id) == "marked"


def test_one_failing_mailbox_does_not_stop_the_others_and_recovers(
    state_store, sandbox, crm, make_account, monkeypatch
) -> None:
    good, bad = make_account("good"), make_account("bad")
    good.deliver(CORPUS["reply-irt"])
    bad.deliver(CORPUS["reply-token"])
    monkeypatch.setenv(
        "AIRFLOW_CONN_BAD_LOGIN",
        json.dumps({"conn_type": "dynamics_mail", "login": bad.address, "password": "expired-password"}),
    )
    box_good = make_mailbox(state_store, good, crm, outgoing_method="none")
    records.map_user(state_store, box_good.mailbox_id, crm["bc"], confirm=True)
    box_bad = make_mailbox(state_store, bad, crm, outgoing_method="none", credentials_conn_id="bad_login")

    with pytest.raises(MailboxSyncError) as info:
        sync_mailboxes([box_bad.mailbox_id, box_good.mailbox_id], state=state_store)
    message = str(info.value)
    assert bad.address in message and "bad_login" in message and "correct the login/password" in message
    assert good.address not in message
    assert emails_with("<reply-irt@corpus.test>")  # the good mailbox ran although the bad one failed first
    with state_store.transaction() as cur:
        cur.execute(
            "SELECT status, permanent_error, last_error_code, next_sync_at FROM dynamics.mailbox_workload"
            " WHERE mailbox_id = %s AND workload = 'incoming'",
            (box_bad.mailbox_id,),
        )
        status, permanent, code, next_at = cur.fetchone()
    assert (status, permanent, code) == ("failure", True, "auth_failed")
    assert (next_at - datetime.now(UTC)).total_seconds() > 3000  # retested on the slow schedule

    # the owner fixes the password; at the retest the mailbox recovers by itself
    monkeypatch.setenv(
        "AIRFLOW_CONN_BAD_LOGIN",
        json.dumps({"conn_type": "dynamics_mail", "login": bad.address, "password": bad.password}),
    )
    make_due(state_store, box_bad.mailbox_id)
    (summary,) = sync_mailboxes([box_bad.mailbox_id], state=state_store)
    assert summary.errors == [] and len(summary.tracked) == 1


# -- Exchange Online over Microsoft Graph (the sandbox's Graph subset) -----------------------------------------
def deliver(sandbox, address: str, *raws: bytes) -> None:
    for raw in raws:
        sandbox.admin(f"graph/users/{address}/messages", {"mime": base64.b64encode(raw).decode()})


def test_graph_delta_link_resync_and_no_twins(state_store, sandbox, graph_mailbox) -> None:
    address = graph_mailbox.email_address
    deliver(sandbox, address, CORPUS["reply-irt"], CORPUS["unrelated"], GARBAGE)
    first = sync_mailbox(state_store, graph_mailbox.mailbox_id)
    assert first.errors == []
    assert (len(first.tracked), len(first.filtered), len(first.quarantined)) == (1, 1, 1)
    assert emails_with("<reply-irt@corpus.test>")[0]["_ownerid_value"] is not None

    # nothing new: one delta request, nothing downloaded
    make_due(state_store, graph_mailbox.mailbox_id)
    idle = sync_mailbox(state_store, graph_mailbox.mailbox_id)
    assert (idle.tracked, idle.filtered, idle.duplicates, idle.round_trips) == ([], [], 0, 1)

    # the delta link expires (410 syncStateNotFound): a full resync, deduplicated by Message-ID
    sandbox.admin(f"graph/users/{address}/expire", {})
    deliver(sandbox, address, CORPUS["reply-token"])
    make_due(state_store, graph_mailbox.mailbox_id)
    resync = sync_mailbox(state_store, graph_mailbox.mailbox_id)
    assert resync.errors == []
    assert [s for s, _ in resync.tracked] == ["RE: Quote 1001 CRM:0000042"]
    assert any("syncStateNotFound" in note for note in resync.notes)
    assert len(emails_with("<reply-irt@corpus.test>")) == 1


def test_graph_send_mail_once(state_store, sandbox, crm, graph_mailbox) -> None:
    activity_id = pending_email(crm, "Quote via Exchange")
    summary = sync_mailbox(state_store, graph_mailbox.mailbox_id)
    assert summary.errors == [] and len(summary.sent) == 1
    sent = sandbox.admin(f"graph/users/{graph_mailbox.email_address}/sent")["value"]
    assert len(sent) == 1
    message = sent[0]["message"]
    assert message["toRecipients"] == [{"emailAddress": {"address": "ana.bowman@northwind.example"}}]
    email = DataverseHook().get("emails", activity_id, select=["statuscode", "trackingtoken", "messageid"])
    assert email["statuscode"] == 3 and email["trackingtoken"] in message["subject"]
    assert message["internetMessageId"] == email["messageid"]
    make_due(state_store, graph_mailbox.mailbox_id)
    assert sync_mailbox(state_store, graph_mailbox.mailbox_id).sent == []
    assert len(sandbox.admin(f"graph/users/{graph_mailbox.email_address}/sent")["value"]) == 1


def test_graph_contacts_both_ways_governed_by_sync_filters(state_store, sandbox, crm, graph_mailbox, monkeypatch):
    from dynamics_jobqueue.hooks.graph import GraphHook
    from dynamics_jobqueue.mailbox.act import TRACKED_CATEGORY
    from sandbox.connections import CRM_USER_CLIENT

    box = records.update_mailbox(
        state_store, graph_mailbox.mailbox_id, act_method="server_side_sync", incoming_method="none",
        outgoing_method="none",
    )  # fmt: skip
    monkeypatch.setenv(
        "AIRFLOW_CONN_DATAVERSE_CRM_USER",
        json.dumps(sandbox.connections(client=CRM_USER_CLIENT)["dataverse_default"]),
    )
    jim = DataverseHook("dataverse_crm_user")  # a person editing the CRM, not the integration user
    owner = {"ownerid@odata.bind": f"/systemusers({crm['jo']})"}
    in_reading = jim.create(
        "contacts", {"firstname": "Rita", "lastname": "Reading", "address1_city": "Reading", **owner}
    )
    buyer = jim.create("contacts", {"firstname": "Bob", "lastname": "Buyer", "jobtitle": "Buyer", **owner})
    jim.create("contacts", {"firstname": "Nora", "lastname": "Neither", "jobtitle": "Chef", **owner})
    graph = GraphHook("graph_test")

    def exchange_contacts() -> dict[str, dict]:
        return {c["surname"]: c for p in graph.iter_item_delta(box.email_address, "contacts") for c in p.messages}

    # no enabled filter: contacts do not sync at all
    assert sync_mailbox(state_store, box.mailbox_id).errors == []
    assert exchange_contacts() == {}

    # two filters on contacts are OR-ed
    records.add_sync_filter(state_store, "contacts", "My contacts in Reading", "address1_city eq 'Reading'",
                            mailbox_id=box.mailbox_id)  # fmt: skip
    records.add_sync_filter(state_store, "contacts", "Buyers (organisation)", "jobtitle eq 'Buyer'")
    make_due(state_store, box.mailbox_id)
    first = sync_mailbox(state_store, box.mailbox_id)
    assert first.errors == [] and "contacts: 2 to Exchange, 0 to CRM" in first.notes
    assert set(exchange_contacts()) == {"Reading", "Buyer"}

    # the user edits a synced contact in Outlook and tracks a new one; a personal contact stays personal
    reading_id = exchange_contacts()["Reading"]["id"]
    graph.save_item(box.email_address, "contacts", {"mobilePhone": "+44 7700 900123"}, item_id=reading_id)
    tia = {"givenName": "Tia", "surname": "Tracked", "categories": [TRACKED_CATEGORY],
           "emailAddresses": [{"address": "tia@tracked.example"}]}  # fmt: skip
    graph.save_item(box.email_address, "contacts", tia)
    graph.save_item(box.email_address, "contacts", {"givenName": "Pat", "surname": "Personal"})
    make_due(state_store, box.mailbox_id)
    second = sync_mailbox(state_store, box.mailbox_id)
    assert second.errors == [] and "contacts: 0 to Exchange, 2 to CRM" in second.notes
    dv = DataverseHook()
    assert dv.get("contacts", in_reading, select=["mobilephone"])["mobilephone"] == "+44 7700 900123"
    tracked = next(
        dv.iter_pages("contacts", filter="emailaddress1 eq 'tia@tracked.example'", select=["_ownerid_value"])
    )
    assert [row["_ownerid_value"] for row in tracked] == [crm["jo"]]
    assert not next(dv.iter_pages("contacts", filter="lastname eq 'Personal'", select=["contactid"]))

    # nothing changed on either side: nothing moves, our own writes are not echoed back
    make_due(state_store, box.mailbox_id)
    assert "contacts: 0 to Exchange, 0 to CRM" in sync_mailbox(state_store, box.mailbox_id).notes
    jim.upsert("contacts", buyer, {"jobtitle": "Buyer", "mobilephone": "+44 1"}, mode="update")
    make_due(state_store, box.mailbox_id)
    assert "contacts: 1 to Exchange, 0 to CRM" in sync_mailbox(state_store, box.mailbox_id).notes
    assert exchange_contacts()["Buyer"]["mobilePhone"] == "+44 1"


def test_graph_appointments_and_tasks_both_ways(state_store, sandbox, crm, graph_mailbox, monkeypatch) -> None:
    from dynamics_jobqueue.hooks.graph import GraphHook
    from dynamics_jobqueue.mailbox.act import TRACKED_CATEGORY
    from sandbox.connections import CRM_USER_CLIENT

    box = records.update_mailbox(
        state_store, graph_mailbox.mailbox_id, act_method="server_side_sync", incoming_method="none",
        outgoing_method="none",
    )  # fmt: skip
    monkeypatch.setenv(
        "AIRFLOW_CONN_DATAVERSE_CRM_USER",
        json.dumps(sandbox.connections(client=CRM_USER_CLIENT)["dataverse_default"]),
    )
    jim = DataverseHook("dataverse_crm_user")
    owner = {"ownerid@odata.bind": f"/systemusers({crm['jo']})"}
    visit = jim.create(
        "appointments",
        {
            "subject": "Visit Northwind",
            "location": "Reading",
            **owner,
            "scheduledstart": "2026-12-01T09:00:00Z",
            "scheduledend": "2026-12-01T10:00:00Z",
        },
    )
    jim.create("tasks", {"subject": "Call back Ana", "scheduledend": "2026-12-02T17:00:00Z", **owner})
    records.add_sync_filter(state_store, "appointments", "My appointments", "statecode eq 0", mailbox_id=box.mailbox_id)
    records.add_sync_filter(state_store, "tasks", "My open tasks", "statecode eq 0", mailbox_id=box.mailbox_id)

    first = sync_mailbox(state_store, box.mailbox_id)
    assert first.errors == []
    assert {"appointments: 1 to Exchange, 0 to CRM", "tasks: 1 to Exchange, 0 to CRM"} <= set(first.notes)
    graph = GraphHook("graph_test")
    (event,) = [i for p in graph.iter_item_delta(box.email_address, "events") for i in p.messages]
    assert event["subject"] == "Visit Northwind" and event["start"]["dateTime"].startswith("2026-12-01T09:00:00")
    (todo,) = [i for p in graph.iter_item_delta(box.email_address, "tasks") for i in p.messages]
    assert todo["title"] == "Call back Ana" and todo["status"] == "notStarted"

    # in Outlook: the meeting moves, the task is done, and the user tracks a new meeting
    graph.save_item(box.email_address, "events", {"start": {"dateTime": "2026-12-01T11:00:00", "timeZone": "UTC"},
                                                  "end": {"dateTime": "2026-12-01T12:00:00", "timeZone": "UTC"}},
                    item_id=event["id"])  # fmt: skip
    graph.save_item(box.email_address, "tasks", {"status": "completed"}, item_id=todo["id"])
    lunch_event = {"subject": "Lunch with Litware", "categories": [TRACKED_CATEGORY],
                   "start": {"dateTime": "2026-12-03T12:00:00", "timeZone": "UTC"},
                   "end": {"dateTime": "2026-12-03T13:00:00", "timeZone": "UTC"}}  # fmt: skip
    graph.save_item(box.email_address, "events", lunch_event)
    make_due(state_store, box.mailbox_id)
    second = sync_mailbox(state_store, box.mailbox_id)
    assert second.errors == []
    assert {"appointments: 0 to Exchange, 2 to CRM", "tasks: 0 to Exchange, 1 to CRM"} <= set(second.notes)
    dv = DataverseHook()
    assert dv.get("appointments", visit, select=["scheduledstart"])["scheduledstart"].startswith("2026-12-01T11:00:00")
    done = next(dv.iter_pages("tasks", filter="subject eq 'Call back Ana'", select=["statecode"]))
    assert [t["statecode"] for t in done] == [1]
    lunch = next(dv.iter_pages("appointments", filter="subject eq 'Lunch with Litware'", select=["_ownerid_value"]))
    assert [a["_ownerid_value"] for a in lunch] == [crm["jo"]]
