"""Mailbox part of the demo: real Dovecot/SMTP mailboxes for three CRONUS salespeople, seeded with realistic
mail, then one mailbox cycle, then a per-mailbox summary (tracked, filtered out, sent, next run).

Used by ``include/scripts/demo.py`` (``make demo``)::

    from demo_mailbox import MailboxDemo

    with MailboxDemo() as demo:                    # starts Dovecot (IMAP, POP3) + SMTP on free ports
        env = demo.seed(state_hook)                # CRM emails + mailboxes + mail; returns AIRFLOW_CONN_* vars
        ... run `airflow dags test mailbox_sync` with env (plus the sandbox and state-store connections) ...
        print(demo.report(state_hook))

or on its own (runs the cycle in-process instead of through Airflow)::

    python include/scripts/demo_mailbox.py          # needs AIRFLOW_CONN_DATAVERSE_DEFAULT, else starts a sandbox

The sandbox must already hold the CRONUS seed (the Dataverse connection comes from the environment).
"""

from __future__ import annotations

import base64
import json
import os
import re
import sys
import tempfile
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from types import TracebackType

import requests

INCLUDE = Path(__file__).resolve().parents[1]
if str(INCLUDE) not in sys.path:
    sys.path.insert(0, str(INCLUDE))

from mailserver.run import MailServer  # noqa: E402

from dynamics_jobqueue.hooks.dataverse import DataverseHook  # noqa: E402
from dynamics_jobqueue.hooks.state import StateStoreHook  # noqa: E402
from dynamics_jobqueue.mailbox import records  # noqa: E402
from dynamics_jobqueue.mailbox.records import IncomingFilter  # noqa: E402

PASSWORD = "demo-password"
CONN_IMAP, CONN_POP3, CONN_GRAPH = "mail_demo_imap", "mail_demo_pop3", "graph_demo"
GRAPH_USER = "LT@contoso.com"
_REGARDING = re.compile(r"(accounts|contacts)\(([0-9a-f-]{36})\)")
QUOTE_ID = "<quote-1001.jo@contoso.com>"
DATE = format_datetime(datetime(2026, 11, 16, 9, 30, tzinfo=UTC))


def _text(msg_id: str, sender: str, to: str, subject: str, body: str, **headers: str) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"], msg["Date"], msg["Message-ID"] = sender, to, subject, DATE, msg_id
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return msg.as_bytes()


def _latin1_reply() -> bytes:
    return (
        "From: =?iso-8859-1?q?Ana_Bowman?= <ana.bowman@northwind.example>\r\n"
        "To: JO@contoso.com\r\nSubject: =?iso-8859-1?q?RE:_Quote_1001_CRM:0000042_-_d=E9lai?=\r\n"
        f"Date: {DATE}\r\nMessage-ID: <latin1-reply@northwind.example>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    ).encode() + "Le délai de livraison convient. Cordialement, Ana\r\n".encode("latin-1")


def _multipart_reply() -> bytes:
    msg = EmailMessage()
    msg["From"] = "Chris Preston <chris.preston@litware.example>"
    msg["To"] = "JO@contoso.com"
    msg["Subject"] = "Fwd: Quote 1001"
    msg["Date"] = DATE
    msg["Message-ID"] = "<multipart-fwd@litware.example>"
    msg["References"] = f"<older@litware.example> {QUOTE_ID}"
    msg.set_content("Forwarding with our purchase order attached.")
    msg.add_alternative("<p>Forwarding with our <b>purchase order</b> attached.</p>", subtype="html")
    msg.add_attachment(b"%PDF-1.4 demo", maintype="application", subtype="pdf", filename="PO-4711.pdf")
    return msg.as_bytes()


def _shift_jis() -> bytes:
    return (
        "From: dana.birkby@proseware.example\r\nTo: BC@contoso.com\r\nSubject: =?shift_jis?b?jKmQz4LoiMuXig==?=\r\n"
        f"Date: {DATE}\r\nMessage-ID: <sjis@proseware.example>\r\n"
        "Content-Type: text/plain; charset=shift_jis\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    ).encode() + "見積もりをお願いします。".encode("shift_jis")


class MailboxDemo:
    """Dovecot + SMTP for the demo, the seeding, and the summary.

    :param run_dir: folder for the mail servers (default: a temporary folder, removed afterwards).
    """

    def __init__(self, run_dir: Path | None = None) -> None:
        self.server = MailServer(run_dir)

    def __enter__(self) -> MailboxDemo:
        self.server.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.server.stop()

    def connections(self) -> dict[str, str]:
        """``AIRFLOW_CONN_*`` variables (JSON) of the two demo server profiles."""
        extra = {"imap_port": self.server.imap_port, "pop3_port": self.server.pop3_port,
                 "smtp_port": self.server.smtp_port, "timeout": 30}  # fmt: skip
        return {
            f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(
                {"conn_type": "dynamics_mail", "host": self.server.host, "extra": extra}
            )
            for conn_id in (CONN_IMAP, CONN_POP3)
        }

    def seed(self, state: StateStoreHook, dataverse: DataverseHook | None = None) -> dict[str, str]:
        """Create the CRM emails, mailboxes and mail of the demo; idempotent for the CRM side.

        :return: the environment variables the mailbox_sync run needs (profile and per-mailbox logins).
        """
        dv = dataverse or DataverseHook()
        env = self.connections()
        os.environ.update(env)
        users = {
            row["internalemailaddress"].upper(): row["systemuserid"]
            for page in dv.iter_pages("systemusers", select=["systemuserid", "internalemailaddress"])
            for row in page
            if row.get("internalemailaddress")
        }
        northwind = next(dv.iter_pages("accounts", filter="name eq 'Northwind Traders'", select=["accountid"]))[0]
        # a quote Jim Olive sent earlier: the conversation the replies belong to
        dv.upsert(
            "emails",
            "0b9d1f1e-6c55-4f7e-9c1a-000000001001",
            {
                "subject": "Quote 1001 CRM:0000042", "description": "Please find our quote 1001 attached.",
                "messageid": QUOTE_ID, "trackingtoken": "CRM:0000042", "directioncode": True,
                "statecode": 1, "statuscode": 3, "torecipients": "ana.bowman@northwind.example",
                "ownerid@odata.bind": f"/systemusers({users['JO@CONTOSO.COM']})",
                "regardingobjectid_account_email@odata.bind": f"/accounts({northwind['accountid']})",
            },
        )  # fmt: skip
        # an email Helena Ray wrote in the CRM and asked to send: Pending Send
        dv.upsert(
            "emails",
            "0b9d1f1e-6c55-4f7e-9c1a-000000002001",
            {
                "subject": "Your visit on Thursday", "description": "<p>Dear Chris, looking forward to it.</p>",
                "torecipients": "chris.preston@litware.example", "directioncode": True,
                "statecode": 0, "statuscode": 6,
                "ownerid@odata.bind": f"/systemusers({users['HR@CONTOSO.COM']})",
            },
        )  # fmt: skip
        records.save_profile(state, "Dovecot IMAP (demo)", "imap", CONN_IMAP)
        records.save_profile(state, "Dovecot POP3 (demo)", "pop3", CONN_POP3)
        plan = [
            ("JO@contoso.com", "Jim Olive", "Dovecot IMAP (demo)", IncomingFilter.REPLIES_TO_TRACKED),
            ("BC@contoso.com", "Benjamin Chiu", "Dovecot POP3 (demo)", IncomingFilter.FROM_CRM_RECORDS),
            ("HR@contoso.com", "Helena Ray", "Dovecot IMAP (demo)", IncomingFilter.FROM_EMAIL_ENABLED_RECORDS),
        ]
        for address, name, profile, option in plan:
            self.server.add_user(address, PASSWORD)
            login_conn = f"mail_demo_login_{address.split('@')[0].lower()}"
            env[f"AIRFLOW_CONN_{login_conn.upper()}"] = json.dumps(
                {"conn_type": "dynamics_mail", "login": address, "password": PASSWORD}
            )
            mailbox = records.find_mailbox(state, address) or records.create_mailbox(
                state, name=name, email_address=address, server_profile=profile,
                credentials_conn_id=login_conn, incoming_filter=option,
            )  # fmt: skip
            records.map_user(state, mailbox.mailbox_id, users[address.upper()], confirm=True, changed_by="demo")
        self._seed_exchange(state, env, users[GRAPH_USER.upper()])
        os.environ.update(env)
        self.server.deliver("JO@contoso.com", [
            _text("<irt-reply@northwind.example>", "Ana Bowman <ana.bowman@northwind.example>", "JO@contoso.com",
                  "Re: Quote 1001", "We accept the quote.", In_Reply_To=QUOTE_ID),
            _latin1_reply(),
            _multipart_reply(),
            _text("<order-ana@northwind.example>", "ana.bowman@northwind.example", "JO@contoso.com",
                  "New order", "A new order, not about the quote."),
            _text("<newsletter-1@shop.example>", "news@shop.example", "JO@contoso.com", "50% off", "Sale!"),
            b"\x89PNG\r\n\x1a\r\nnot a mail message\r\n",
        ])  # fmt: skip
        self.server.deliver("BC@contoso.com", [
            _shift_jis(),
            _text("<bc-unrelated@example.org>", "someone@example.org", "BC@contoso.com", "Hello", "Unrelated."),
        ])  # fmt: skip
        self.server.deliver("HR@contoso.com", [
            _text("<hr-from-jo@contoso.com>", "JO@contoso.com", "HR@contoso.com", "Team lunch", "Friday?"),
            _text("<hr-spam@example.net>", "promo@example.net", "HR@contoso.com", "You won", "Claim now."),
        ])  # fmt: skip
        return env

    def _seed_exchange(self, state: StateStoreHook, env: dict[str, str], user_id: str) -> None:
        """Lina Townsend's mailbox on Exchange Online, i.e. the sandbox's Graph subset (same host and
        credentials as the Dataverse connection, path ``/graph``); skipped when that connection is no JSON."""
        try:
            dataverse = json.loads(os.environ.get("AIRFLOW_CONN_DATAVERSE_DEFAULT", ""))
        except ValueError:
            return
        base = str(dataverse.get("host", "")).removesuffix("/dataverse")
        env[f"AIRFLOW_CONN_{CONN_GRAPH.upper()}"] = json.dumps(
            {**dataverse, "conn_type": "dynamics_graph", "host": f"{base}/graph"}
        )
        records.save_profile(state, "Exchange Online (demo)", "exchange_online", CONN_GRAPH)
        mailbox = records.find_mailbox(state, GRAPH_USER) or records.create_mailbox(
            state, name="Lina Townsend", email_address=GRAPH_USER, server_profile="Exchange Online (demo)",
            incoming_filter=IncomingFilter.FROM_CRM_RECORDS,
        )  # fmt: skip
        records.map_user(state, mailbox.mailbox_id, user_id, confirm=True, changed_by="demo")
        session = requests.Session()
        session.trust_env = False
        session.verify = dataverse.get("extra", {}).get("ca_bundle") or True
        for raw in (
            _text("<graph-1@litware.example>", "chris.preston@litware.example", GRAPH_USER, "Meeting notes",
                  "Notes from today's call."),
            _text("<graph-2@example.com>", "noreply@example.com", GRAPH_USER, "Your parcel", "Tracking link."),
        ):  # fmt: skip
            session.post(
                f"{base}/_sandbox/graph/users/{GRAPH_USER}/messages", json={"mime": base64.b64encode(raw).decode()}
            ).raise_for_status()

    def report(self, state: StateStoreHook, dataverse: DataverseHook | None = None) -> str:
        """Per mailbox: what was tracked (and regarding what), filtered out (why), quarantined, sent, next run."""
        dv = dataverse or DataverseHook()

        def name_of(match: re.Match[str]) -> str:
            entity_set, record_id = match.group(1), match.group(2)
            key = "name" if entity_set == "accounts" else "fullname"
            return f"{entity_set[:-1]} {dv.get(entity_set, record_id, select=[key]).get(key)!r}"

        lines = []
        with state.transaction() as cur:
            cur.execute("SELECT mailbox_id, email_address, incoming_filter FROM dynamics.mailbox ORDER BY mailbox_id")
            for mailbox_id, address, option in cur.fetchall():
                cur.execute(
                    "SELECT outcome, subject, reason FROM dynamics.mailbox_message WHERE mailbox_id = %s"
                    " ORDER BY processed_at",
                    (mailbox_id,),
                )
                messages = cur.fetchall()
                cur.execute(
                    "SELECT message_id, state FROM dynamics.mailbox_outgoing WHERE mailbox_id = %s", (mailbox_id,)
                )
                sent = cur.fetchall()
                cur.execute(
                    "SELECT workload, status, min(next_sync_at), max(last_error_message) FROM dynamics.mailbox_workload"
                    " WHERE mailbox_id = %s GROUP BY workload, status ORDER BY workload",
                    (mailbox_id,),
                )
                workloads = cur.fetchall()
                lines.append(f"Mailbox {address} (incoming filter: {option})")
                for outcome, subject, reason in messages:
                    label = {"tracked": "tracked", "filtered": "filtered out", "quarantined": "quarantined"}[outcome]
                    reason = _REGARDING.sub(name_of, reason)
                    lines.append(f"  {label:<12} {subject or '(unparseable)'!r}: {reason}")
                for message_id, out_state in sent:
                    lines.append(f"  sent         {message_id} ({out_state})")
                for workload, status, next_at, error in workloads:
                    if status == "not_run":
                        continue
                    when = next_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if next_at else "-"
                    lines.append(f"  {workload:<9} {status}; next run {when}" + (f"; error: {error}" if error else ""))
        lines.append(f"SMTP server received {len(self.server.sent_messages())} message(s)")
        return "\n".join(lines)


def main() -> None:
    """Standalone: seed, run one cycle in-process, print the summary."""
    from dynamics_jobqueue.mailbox.cycle import sync_mailboxes
    from dynamics_jobqueue.mailbox.schedule import due_mailboxes

    sandbox = None
    if "AIRFLOW_CONN_DATAVERSE_DEFAULT" not in os.environ:
        from mailserver.run import free_port

        from sandbox import connections
        from sandbox.runner import SandboxProcess

        sandbox = SandboxProcess(port=free_port(), data_dir=Path(tempfile.mkdtemp(prefix="sandbox-")))
        sandbox.start()
        os.environ.update(connections.environment(sandbox.base_url, str(sandbox.ca_file)))
    try:
        state = StateStoreHook()
        with MailboxDemo() as demo:
            demo.seed(state)
            sync_mailboxes(due_mailboxes(state), state=state, raise_on_error=False)
            print(demo.report(state))
    finally:
        if sandbox is not None:
            sandbox.stop()


if __name__ == "__main__":
    main()
