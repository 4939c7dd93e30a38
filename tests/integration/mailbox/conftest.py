"""Real mail counterparts for the mailbox tests: Dovecot (IMAP, POP3) and the SMTP capture server.

One server pair per session (starting Dovecot takes ~0.2 s, but there is no reason to repeat it); every test
gets its own logins, so tests stay independent and may run in any order.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from mailserver.run import MailServer

from dynamics_jobqueue.hooks.dataverse import DataverseHook
from dynamics_jobqueue.mailbox import records


@pytest.fixture(scope="session")
def mail_server() -> Iterator[MailServer]:
    """Dovecot with CONDSTORE/QRESYNC plus the SMTP capture server, on free loopback ports."""
    with MailServer() as server:
        yield server


@pytest.fixture(scope="session")
def mail_server_plain() -> Iterator[MailServer]:
    """A second Dovecot that announces neither CONDSTORE nor QRESYNC (like Microsoft 365, Yahoo)."""
    with MailServer(condstore=False) as server:
        yield server


@dataclass
class MailAccount:
    """A fresh login on a test server and the Airflow connection id (profile) that reaches it."""

    server: MailServer
    address: str
    password: str
    conn_id: str

    def deliver(self, *messages: bytes, folder: str = "INBOX") -> None:
        self.server.deliver(self.address, list(messages), folder)


def _account(server: MailServer, monkeypatch: pytest.MonkeyPatch, prefix: str) -> MailAccount:
    tag = uuid.uuid4().hex[:8]
    address = f"{prefix}-{tag}@cronus.test"
    password = f"pw-{tag}"
    server.add_user(address, password)
    conn_id = f"mail_{tag}"
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}",
        json.dumps(
            {
                "conn_type": "dynamics_mail",
                "host": server.host,
                "login": address,
                "password": password,
                "extra": {
                    "imap_port": server.imap_port,
                    "pop3_port": server.pop3_port,
                    "smtp_port": server.smtp_port,
                    "timeout": 20,
                },
            }
        ),
    )
    return MailAccount(server, address, password, conn_id)


@pytest.fixture
def mail_account(mail_server: MailServer, monkeypatch: pytest.MonkeyPatch) -> MailAccount:
    """A new mailbox login on the CONDSTORE server, with its connection exported."""
    return _account(mail_server, monkeypatch, "jo")


@pytest.fixture
def make_account(mail_server: MailServer, monkeypatch: pytest.MonkeyPatch):
    """Factory for more logins on the CONDSTORE server."""
    return lambda prefix="user": _account(mail_server, monkeypatch, prefix)


@pytest.fixture
def plain_account(mail_server_plain: MailServer, monkeypatch: pytest.MonkeyPatch) -> MailAccount:
    """A new mailbox login on the server without CONDSTORE."""
    return _account(mail_server_plain, monkeypatch, "plain")


@pytest.fixture
def crm(sandbox) -> dict[str, str]:
    """Ids of the CRM records the corpus talks about, plus one tracked email (a quote sent by Jim Olive)."""
    dv = DataverseHook()

    def one(entity_set: str, filter: str, key: str) -> str:
        rows = next(dv.iter_pages(entity_set, filter=filter, select=[key]))
        assert rows, f"{entity_set} {filter}"
        return str(rows[0][key])

    ids = {
        "jo": one("systemusers", "internalemailaddress eq 'JO@contoso.com'", "systemuserid"),
        "bc": one("systemusers", "internalemailaddress eq 'BC@contoso.com'", "systemuserid"),
        "ana": one("contacts", "emailaddress1 eq 'ana.bowman@northwind.example'", "contactid"),
        "northwind": one("accounts", "name eq 'Northwind Traders'", "accountid"),
    }
    ids["quote"] = dv.create(
        "emails",
        {
            "subject": "Quote 1001 CRM:0000042",
            "description": "Please find our quote.",
            "messageid": "<quote-1001@contoso.com>",
            "trackingtoken": "CRM:0000042",
            "directioncode": True,
            "statecode": 1,
            "statuscode": 3,
            "ownerid@odata.bind": f"/systemusers({ids['jo']})",
            "regardingobjectid_account_email@odata.bind": f"/accounts({ids['northwind']})",
        },
    )
    return ids


@pytest.fixture
def graph_mailbox(state_store, sandbox, crm, monkeypatch):
    conn = sandbox.connections()["dataverse_default"]
    conn = {**conn, "conn_type": "dynamics_graph", "host": f"{sandbox.base_url}/graph"}
    monkeypatch.setenv("AIRFLOW_CONN_GRAPH_TEST", json.dumps(conn))
    address = f"graph-{uuid.uuid4().hex[:8]}@contoso.com"
    records.save_profile(state_store, "Exchange Online", "exchange_online", "graph_test")
    mailbox = records.create_mailbox(state_store, name="graph", email_address=address, server_profile="Exchange Online")
    records.map_user(state_store, mailbox.mailbox_id, crm["jo"])
    return records.get_mailbox(state_store, mailbox.mailbox_id)
