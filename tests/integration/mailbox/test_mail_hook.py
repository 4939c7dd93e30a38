"""MailHook against a real Dovecot and a real SMTP server: STATUS, UID search, BODY.PEEK, POP3 UIDL, SMTP."""

from __future__ import annotations

import imaplib
import json

import pytest

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
