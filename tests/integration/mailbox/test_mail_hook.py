"""MailHook against a real Dovecot and a real SMTP server: STATUS, UID search, BODY.PEEK, POP3 UIDL, SMTP."""

from __future__ import annotations

import imaplib
import json
import socket
import ssl
from contextlib import suppress

import pytest
import trustme
from aiosmtpd.controller import Controller

from dynamics_jobqueue.hooks.mail import MailError, MailHook


def _msg(n: int) -> bytes:
    headers = f"From: a@example.com\r\nTo: jo@cronus.test\r\nSubject: m{n}\r\nMessage-ID: <m{n}@x>\r\n"
    return f"{headers}\r\nbody {n}\r\n".encode()


def test_imap_status_search_and_peek_leave_mail_unread(mail_account) -> None:
    mail_account.deliver(_msg(1), _msg(2), _msg(3))
    hook = MailHook(mail_account.conn_id)
    with hook.imap() as session:
        assert session.condstore
        status = session.status("INBOX")
        assert status.messages == 3 and status.uidnext == 4
        assert status.highest_modseq is not None
        assert session.new_uids("INBOX", 0) == [1, 2, 3]
        # n:* always matches the highest UID; results <= last are dropped
        assert session.new_uids("INBOX", 3) == []
        assert session.new_uids("INBOX", 1, changed_since=status.highest_modseq) == []
        fetched = list(session.fetch("INBOX", [2, 3]))
    assert [uid for uid, _ in fetched] == [2, 3]
    assert b"Subject: m2" in fetched[0][1]
    client = imaplib.IMAP4(mail_account.server.host, mail_account.server.imap_port)
    client.login(mail_account.address, mail_account.password)
    client.select("INBOX", readonly=True)
    _, flags = client.uid("FETCH", "1:*", "(FLAGS)")
    client.logout()
    assert all(b"\\Seen" not in f for f in flags), flags


def test_imap_without_condstore_uses_plain_uids(plain_account) -> None:
    plain_account.deliver(_msg(1), _msg(2))
    with MailHook(plain_account.conn_id).imap() as session:
        assert not session.condstore
        status = session.status("INBOX")
        assert status.highest_modseq is None
        assert session.new_uids("INBOX", 1, changed_since=123) == [2]


def test_pop3_uidl_and_retrieve_leave_mail_on_server(mail_account) -> None:
    mail_account.deliver(_msg(1), _msg(2))
    hook = MailHook(mail_account.conn_id)
    with hook.pop3() as session:
        listing = session.uidl()
        assert len(listing) == 2 and len(set(listing.values())) == 2
        assert b"Subject: m1" in session.retrieve(1)
    with hook.pop3() as session:
        assert session.uidl() == listing


def test_smtp_send_reaches_the_server(mail_account) -> None:
    before = len(mail_account.server.sent_messages())
    MailHook(mail_account.conn_id).send(_msg(9), mail_account.address, ["robert.townes@contoso.com"])
    sent = mail_account.server.sent_messages()[before:]
    assert len(sent) == 1
    assert sent[0].rcpt_tos == ["robert.townes@contoso.com"]
    assert b"Subject: m9" in sent[0].raw


def test_bad_password_is_a_permanent_error_naming_the_connection(mail_account, monkeypatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_MAIL_WRONG_PASSWORD",
        json.dumps({"conn_type": "dynamics_mail", "login": mail_account.address, "password": "wrong"}),
    )
    hook = MailHook(mail_account.conn_id, credentials_conn_id="mail_wrong_password")
    with pytest.raises(MailError) as info, hook.imap():
        pass
    assert info.value.code == "auth_failed" and info.value.permanent
    assert "mail_wrong_password" in info.value.fix


def test_unreachable_server_is_transient(mail_account, monkeypatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_MAIL_DOWN",
        json.dumps({"conn_type": "dynamics_mail", "host": "127.0.0.1", "extra": {"imap_port": 1, "timeout": 2}}),
    )
    with pytest.raises(MailError) as info, MailHook("mail_down").imap():
        pass
    assert info.value.code == "connection_failed" and not info.value.permanent


def test_the_connection_test_signs_in_to_dovecot_and_reaches_smtp(mail_account) -> None:
    ok, message = MailHook(mail_account.conn_id).test_connection()
    assert ok, message
    assert "IMAP login ok" in message and "POP3 login ok" in message and "SMTP server" in message


def test_the_connection_test_reports_a_refused_login_with_its_fix(mail_account, monkeypatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_MAIL_WRONG_PASSWORD",
        json.dumps({"conn_type": "dynamics_mail", "login": mail_account.address, "password": "wrong"}),
    )
    ok, message = MailHook(mail_account.conn_id, credentials_conn_id="mail_wrong_password").test_connection()
    assert not ok
    assert "IMAP login" in message and "refused" in message and "mail_wrong_password" in message


@pytest.fixture(scope="module")
def tls_ca(tmp_path_factory):
    """A private CA (not in the system trust store), its file, and a certificate for 127.0.0.1."""
    ca = trustme.CA()
    ca_file = tmp_path_factory.mktemp("smtp-tls") / "ca.pem"
    ca_file.write_bytes(ca.cert_pem.bytes())
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context, str(ca_file)


@pytest.fixture(params=["smtp_ssl", "smtp_starttls"])
def tls_smtp(request, tls_ca, monkeypatch):
    """An SMTP server on loopback speaking implicit TLS or STARTTLS, and a connection ``mail_tls`` to it."""
    context, _ = tls_ca
    port = _free_port()
    if request.param == "smtp_ssl":
        controller = Controller(Sink(), hostname="127.0.0.1", port=port, ssl_context=context)
    else:
        controller = Controller(Sink(), hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True)
    with suppress(Exception):  # aiosmtpd's start-up probe does not trust the private CA either
        controller.start()
    monkeypatch.setenv(
        "AIRFLOW_CONN_MAIL_TLS",
        json.dumps(
            {
                "conn_type": "dynamics_mail",
                "host": "127.0.0.1",
                "extra": {"imap_port": 1, "pop3_port": 1, "smtp_port": port, request.param: True, "timeout": 5},
            }
        ),
    )
    yield controller
    with suppress(Exception):
        controller.stop()


def test_smtp_refuses_a_certificate_it_cannot_verify_in_the_test_and_in_sending(tls_smtp) -> None:
    ok, message = MailHook("mail_tls").test_connection()
    assert not ok
    assert "SMTP server 127.0.0.1" in message and "certificate does not verify" in message, message
    with pytest.raises(MailError) as info:
        MailHook("mail_tls").send(b"Subject: x\r\n\r\nbody\r\n", "a@example.com", ["b@example.com"])
    assert info.value.code == "connection_failed" and "certificate does not verify" in str(info.value)
    assert tls_smtp.handler.received == []


def test_smtp_over_tls_sends_when_the_certificate_verifies(tls_smtp, tls_ca, monkeypatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", tls_ca[1])  # the workers trust the CA: OpenSSL's default verify file
    ok, message = MailHook("mail_tls").test_connection()
    assert not ok  # no IMAP/POP3 server on port 1: the message lists those problems and none of SMTP
    assert "IMAP server" in message and "SMTP" not in message, message
    MailHook("mail_tls").send(b"Subject: x\r\n\r\nbody\r\n", "a@example.com", ["b@example.com"])
    assert [envelope.rcpt_tos for envelope in tls_smtp.handler.received] == [["b@example.com"]]


class Sink:
    """An aiosmtpd handler keeping the envelopes it accepted."""

    def __init__(self) -> None:
        self.received: list = []

    async def handle_DATA(self, server, session, envelope) -> str:  # aiosmtpd calls it by this name
        self.received.append(envelope)
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
