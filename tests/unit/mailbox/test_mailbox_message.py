"""MIME parsing of a corpus of ordinary, exotic and malformed messages (stdlib ``email``, no server needed)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from dynamics_jobqueue.mailbox.message import UnparseableMessage, parse

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
    body = parse(raw).content()
    assert (body.text, body.is_html, body.attachments) == ("<p>HTML version</p>", True, ["order.pdf"])
    assert body.files[0].mimetype == "application/pdf" and body.files[0].data == b"%PDF-1.4\n"


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
    # the same message as POP3 hands it over (CRLF, one more line end) has the same id
    assert parse(raw.replace(b"\n", b"\r\n") + b"\r\n").message_id == first.message_id


def test_raw_8bit_headers_decode_as_text_never_one_replacement_per_byte() -> None:
    subject = "測試主旨"  # a Big5 subject written raw by an old client
    raw = (
        b"From: =?utf-8?q?J=C3=B6rg?= <jorg@example.de>\nTo: \xc3\xbcser@example.de, jo@contoso.com\n"
        b"Subject: " + subject.encode("big5") + b"\nMessage-ID: <big5@x>\n"
        b"Content-Type: text/plain; charset=big5\n\n" + "內容".encode("big5") + b"\n"
    )
    msg = parse(raw)
    assert msg.subject == subject
    assert msg.to == ["\xfcser@example.de", "jo@contoso.com"]
    assert msg.sender_name == "J\xf6rg"
    assert msg.content().text.strip() == "內容"
    # raw UTF-8 inside an RFC 2047 word: decoded, never the literal text \ufffd
    inside = parse(b"From: a@x.org\nSubject: =?utf-8?q?caf\xc3\xa9_cr\xc3\xa8me?=\n\nx\n")
    assert inside.subject == "caf\xe9 cr\xe8me" and "\ufffd" not in inside.subject


def test_raw_8bit_content_disposition_names_the_attachment() -> None:
    raw = (
        b"From: a@example.com\nSubject: cv\nMessage-ID: <cd@x>\nMIME-Version: 1.0\n"
        b'Content-Type: multipart/mixed; boundary="B"\n\n--B\nContent-Type: text/plain\n\nsee attached\n'
        b'--B\nContent-Type: application/pdf\nContent-Disposition: attachment; filename="r\xc3\xa9sum\xc3\xa9.pdf"\n\n'
        b"%PDF\n--B--\n"
    )
    body = parse(raw).content()
    assert body.text.strip() == "see attached" and body.attachments == ["r\xe9sum\xe9.pdf"]


def test_body_is_the_top_level_message_not_the_bounced_original() -> None:
    raw = (
        b"From: MAILER-DAEMON@example.com\nTo: jo@contoso.com\nSubject: Undeliverable: quote\n"
        b"Message-ID: <ndr@x>\nMIME-Version: 1.0\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="R"\n\n'
        b"--R\nContent-Type: text/plain\n\nDelivery has failed to these recipients.\n"
        b"--R\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; example.com\n\n"
        b"Final-Recipient: rfc822; gone@example.com\nAction: failed\nStatus: 5.1.1\n\n"
        b"--R\nContent-Type: message/rfc822\n\nFrom: jo@contoso.com\nSubject: quote\n"
        b"Content-Type: text/html\n\n<p>the original quote</p>\n--R--\n"
    )
    body = parse(raw).content()
    assert (body.text.strip(), body.is_html) == ("Delivery has failed to these recipients.", False)
    assert "quote.eml" in body.attachments


@pytest.mark.parametrize(
    ("charset", "text", "codec"),
    [
        ("ks_c_5601-1987", "한글 볍복", "cp949"),  # a cp949-only syllable
        ("gb2312", "镕龘 你好", "gbk"),  # GBK characters outside GB 2312
        ("x-mac-cyrillic", "Привет", "mac_cyrillic"),
        ("utf-7", "Grüße €", "utf-7"),
    ],
)
def test_charsets_microsoft_mail_uses(charset: str, text: str, codec: str) -> None:
    raw = (
        f"From: a@example.com\nSubject: x\nMessage-ID: <{charset}@x>\n"
        f"Content-Type: text/plain; charset={charset}\nContent-Transfer-Encoding: 8bit\n\n"
    ).encode() + text.encode(codec)
    assert parse(raw).content().text.strip() == text


def test_one_bad_byte_costs_one_character_not_the_whole_part() -> None:
    good = "Здравствуйте"
    raw = (
        (
            b"From: a@example.com\nSubject: x\nMessage-ID: <bad-byte@x>\n"
            b"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"
        )
        + good.encode()
        + b" \xff "
        + good.encode()
    )
    assert parse(raw).content().text.strip() == f"{good} \ufffd {good}"


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


def test_encoded_word_labelled_gb2312_is_read_as_gbk() -> None:
    text = "\u9555\u9f98 \u4f60\u597d"  # GBK characters outside GB 2312
    word = base64.b64encode(text.encode("gbk")).decode()
    raw = f"From: a@example.com\nSubject: =?gb2312?B?{word}?=\nMessage-ID: <ew-gbk@x>\n\nx\n".encode()
    assert parse(raw).subject == text
