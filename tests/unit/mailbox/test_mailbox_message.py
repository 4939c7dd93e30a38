"""MIME parsing of a corpus of ordinary, exotic and malformed messages (stdlib ``email``, no server needed)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dynamics_jobqueue.mailbox.message import MessageBody, UnparseableMessage, parse

PLAIN = (
    b"From: Robert Townes <Robert.Townes@contoso.com>\r\n"
    b'To: JO@contoso.com, "Helen Ray" <helen.ray@contoso.com>\r\n'
    b"Cc: lina@contoso.com\r\n"
    b"Subject: Re: Quote 1001 CRM:0001234\r\n"
    b"Date: Tue, 03 Nov 2026 10:15:00 +0100\r\n"
    b"Message-ID: <reply-1@contoso.com>\r\n"
    b"In-Reply-To: <quote-1001@cronus.test>\r\n"
    b"References: <first@cronus.test> <quote-1001@cronus.test>\r\n"
    b"\r\n"
    b"Thanks, we accept the quote.\r\n"
)


def test_plain_message_fields() -> None:
    msg = parse(PLAIN)
    assert msg.message_id == "<reply-1@contoso.com>"
    assert msg.sender == "robert.townes@contoso.com"
    assert msg.sender_name == "Robert Townes"
    assert msg.to == ["jo@contoso.com", "helen.ray@contoso.com"]
    assert msg.cc == ["lina@contoso.com"]
    assert msg.tracking_token == "CRM:0001234"
    assert msg.date == datetime(2026, 11, 3, 9, 15, tzinfo=UTC)
    assert msg.content().text.strip() == "Thanks, we accept the quote."
    # In-Reply-To first, then References from the newest (direct parent) back
    assert msg.correlation_ids() == ["<quote-1001@cronus.test>", "<first@cronus.test>"]


def test_latin1_body_and_encoded_word_subject() -> None:
    raw = (
        b"From: =?iso-8859-1?q?J=FCrgen_M=FCller?= <jm@example.de>\n"
        b"To: jo@contoso.com\n"
        b"Subject: =?iso-8859-1?q?Gr=FC=DFe_aus_M=FCnchen?=\n"
        b"Message-ID: <latin1@example.de>\n"
        b"MIME-Version: 1.0\n"
        b"Content-Type: text/plain; charset=iso-8859-1\n"
        b"Content-Transfer-Encoding: 8bit\n\n"
    ) + "Schöne Grüße, Jürgen\n".encode("latin-1")
    msg = parse(raw)
    assert msg.subject == "Grüße aus München"
    assert msg.sender_name == "Jürgen Müller"
    assert "Schöne Grüße, Jürgen" in msg.content().text


def test_shift_jis_and_windows_1252() -> None:
    for charset, text in (
        ("shift_jis", "見積もりありがとうございます"),
        ("windows-1252", "Price: \u20ac1,200 \u2013 \u201cfinal\u201d"),
    ):
        raw = (
            f"From: a@example.jp\nTo: jo@contoso.com\nSubject: x\nMessage-ID: <{charset}@x>\n"
            f"Content-Type: text/plain; charset={charset}\nContent-Transfer-Encoding: 8bit\n\n"
        ).encode() + text.encode(charset)
        assert text in parse(raw).content().text


def test_multipart_alternative_prefers_html_and_lists_attachments() -> None:
    raw = (
        b"From: a@example.com\nTo: jo@contoso.com\nSubject: order\nMessage-ID: <mp@x>\nMIME-Version: 1.0\n"
        b'Content-Type: multipart/mixed; boundary="OUT"\n\n'
        b"--OUT\n"
        b'Content-Type: multipart/alternative; boundary="ALT"\n\n'
        b"--ALT\nContent-Type: text/plain; charset=utf-8\n\nplain version\n"
        b"--ALT\nContent-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: base64\n\n"
        b"PHA+SFRNTCB2ZXJzaW9uPC9wPg==\n"
        b"--ALT--\n"
        b"--OUT\nContent-Type: application/pdf; name=order.pdf\n"
        b"Content-Disposition: attachment; filename=order.pdf\nContent-Transfer-Encoding: base64\n\nJVBERi0xLjQK\n"
        b"--OUT--\n"
    )
    msg = parse(raw)
    assert msg.content() == MessageBody("<p>HTML version</p>", True, ["order.pdf"])


def test_unknown_charset_and_broken_base64_do_not_quarantine() -> None:
    raw = (
        b"From: a@example.com\nTo: jo@contoso.com\nSubject: odd\nMessage-ID: <odd@x>\n"
        b"Content-Type: text/plain; charset=x-no-such-charset\nContent-Transfer-Encoding: base64\n\n"
        b"SGVsbG8gd29y!!bGQ\n"
    )
    msg = parse(raw)
    assert msg.message_id == "<odd@x>"
    assert isinstance(msg.content().text, str)


def test_missing_message_id_gets_a_stable_synthetic_one() -> None:
    raw = b"From: a@example.com\nTo: jo@contoso.com\nSubject: no id\n\nbody\n"
    first, second = parse(raw), parse(raw)
    assert first.synthetic_id
    assert first.message_id == second.message_id
    assert first.message_id.endswith("@dynamics-jobqueue.invalid>")


def test_header_junk_and_folded_headers() -> None:
    raw = (
        b'From: "Broken, Name" <broken@example.com>\n'
        b"To: undisclosed-recipients:;\n"
        b"Subject: folded\n subject line\n"
        b"Date: not a date\n"
        b"Message-ID:   junk before <id-with-junk@x> junk after\n\n"
        b"body\n"
    )
    msg = parse(raw)
    assert msg.subject == "folded subject line"
    assert msg.to == []
    assert msg.date is None
    assert msg.message_id == "<id-with-junk@x>"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty message"),
        (b"   \r\n\r\n", "empty message"),
        (b"\x89PNG\r\n\x1a\n\x00\x00binary garbage", "no RFC 5322 header section"),
        (b"Subject: no sender\nMessage-ID: <ns@x>\n\nbody\n", "no sender address"),
        (b"From: not an address\nSubject: x\n\nbody\n", "no sender address"),
    ],
)
def test_unparseable_messages_say_why(raw: bytes, reason: str) -> None:
    with pytest.raises(UnparseableMessage, match=reason):
        parse(raw)
