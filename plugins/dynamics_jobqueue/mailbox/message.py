"""Incoming messages: MIME parsing (stdlib ``email``), conversation keys and the tracking token.

The parser uses the ``compat32`` policy with explicit decoding: ``policy.default`` builds header objects that
made it 10x slower, which dominated the cost of an initial fetch of a large mailbox.

:func:`parse` turns raw RFC 5322 bytes into a :class:`ParsedMessage` or raises :class:`UnparseableMessage`
with a reason (the caller quarantines the raw source). It is lenient where mail in the wild is broken but
still readable: undeclared or unknown charsets fall back to UTF-8 then Latin-1 with replacement, encoded words
in headers are decoded, a missing ``Message-ID`` gets a stable one derived from the content (so reruns still
deduplicate). It refuses what cannot be tracked: no headers at all, or no sender address.

Correlation keys (dynamics-semantics.md section 3, in the reference's order): ``In-Reply-To``, the tracking
token in the subject (``CRM:`` plus digits), then ``References``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.header import Header, decode_header
from email.message import Message
from email.parser import BytesParser
from email.utils import getaddresses, parsedate_to_datetime

#: The tracking token the CRM puts in the subject of emails it sends: "CRM:" plus digits.
TRACKING_TOKEN = re.compile(r"CRM:(\d{4,})", re.IGNORECASE)
_MSGID = re.compile(r"<[^<>\s]+>")
_HEADER_LINE = re.compile(rb"^[!-9;-~]+:", re.MULTILINE)
#: Body text kept on the CRM activity (Dataverse ``description`` holds up to ~1 MB; long mails are cut).
MAX_BODY_CHARS = 100_000


class UnparseableMessage(Exception):
    """The message cannot be tracked; ``str(exc)`` is the reason kept with the quarantined source."""


@dataclass(frozen=True)
class MessageBody:
    """The body kept on the CRM activity: ``text`` (HTML preferred), ``is_html`` and attachment names."""

    text: str
    is_html: bool
    attachments: list[str]


@dataclass(frozen=True)
class ParsedMessage:
    """What tracking needs from one message. Addresses are lower-case; ``date`` is UTC.

    Only the header section is parsed up front (that is all the incoming filter and correlation read);
    :meth:`content` parses the MIME body on demand, for messages that are tracked.
    """

    message_id: str
    subject: str
    sender: str
    sender_name: str
    to: list[str]
    cc: list[str]
    in_reply_to: str | None
    references: list[str]
    date: datetime | None
    tracking_token: str | None
    raw: bytes = field(repr=False)
    synthetic_id: bool = False

    def content(self) -> MessageBody:
        """Parse the body: the first HTML part, else the first plain-text part, decoded with its charset
        (falling back to UTF-8, then Latin-1), cut at :data:`MAX_BODY_CHARS`; attachments by file name."""
        try:
            text, is_html, attachments = _body(BytesParser(policy=policy.compat32).parsebytes(self.raw))
        except Exception as exc:  # a body the email package cannot walk: track the headers, say so in the text
            return MessageBody(f"(body not readable: {type(exc).__name__}: {exc})", False, [])
        return MessageBody(text[:MAX_BODY_CHARS], is_html, attachments)

    def correlation_ids(self) -> list[str]:
        """Message-IDs this message replies to, in correlation order: In-Reply-To, then References
        (newest first, as the last reference is the direct parent)."""
        ids = [self.in_reply_to] if self.in_reply_to else []
        ids.extend(ref for ref in reversed(self.references) if ref not in ids)
        return ids


def normalise_message_id(value: str) -> str:
    """``<id@host>`` with surrounding junk removed; the dedupe key of a message."""
    match = _MSGID.search(value)
    return match.group(0) if match else f"<{value.strip().strip('<>')}>"


def parse(raw: bytes) -> ParsedMessage:
    """Parse one raw message.

    :param raw: the message as the server returned it (CRLF or LF).
    :raises UnparseableMessage: with the reason, when the message cannot be tracked.
    """
    if not raw or not raw.strip():
        raise UnparseableMessage("empty message")
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    if not _HEADER_LINE.search(head):
        raise UnparseableMessage("no RFC 5322 header section (the message does not start with header fields)")
    try:
        msg = BytesParser(policy=policy.compat32).parsebytes(head + b"\r\n\r\n", headersonly=True)
        sender_name, sender = _first_address(msg, "from") or _first_address(msg, "sender") or ("", "")
        if not sender:
            raise UnparseableMessage("no sender address in From or Sender")
        subject = _header(msg, "subject")
        raw_id = _header(msg, "message-id")
        synthetic = not _MSGID.search(raw_id)
        message_id = (
            f"<{hashlib.sha256(raw).hexdigest()[:40]}@dynamics-jobqueue.invalid>"
            if synthetic
            else normalise_message_id(raw_id)
        )
        in_reply_to_raw = _header(msg, "in-reply-to")
        in_reply_to = normalise_message_id(in_reply_to_raw) if _MSGID.search(in_reply_to_raw) else None
        references = _MSGID.findall(_header(msg, "references"))
        token = TRACKING_TOKEN.search(subject)
        return ParsedMessage(
            message_id=message_id,
            subject=subject,
            sender=sender,
            sender_name=sender_name,
            to=_addresses(msg, "to"),
            cc=_addresses(msg, "cc"),
            in_reply_to=in_reply_to,
            references=references,
            date=_date(_header(msg, "date")),
            tracking_token=f"CRM:{token.group(1)}" if token else None,
            raw=raw,
            synthetic_id=synthetic,
        )
    except UnparseableMessage:
        raise
    except Exception as exc:  # the email package raises many types on hostile input; all mean "quarantine"
        raise UnparseableMessage(f"{type(exc).__name__}: {exc}") from exc


def _decode_words(value: str) -> str:
    """Decode RFC 2047 encoded words; unknown charsets fall back to UTF-8/Latin-1 instead of failing."""
    parts = []
    for chunk, charset in decode_header(value):
        if isinstance(chunk, str):
            parts.append(chunk)
        else:
            parts.append(_decode_bytes(chunk, charset))
    # decode_header splits plain text around encoded words; RFC 2047 whitespace rules are close enough here
    return "".join(parts) if len(parts) > 1 else (parts[0] if parts else "")


def _decode_bytes(data: bytes, charset: str | None) -> str:
    for candidate in (charset, "utf-8", "latin-1"):
        if not candidate:
            continue
        try:
            return data.decode(candidate)
        except (LookupError, UnicodeDecodeError):
            continue
    return data.decode("utf-8", "replace")


def _header(msg: Message, name: str) -> str:
    value = msg.get(name)
    if value is None:
        return ""
    if isinstance(value, Header):  # undecodable bytes in the header: the parser kept them as a Header
        value = str(value)
    return " ".join(_decode_words(" ".join(str(value).split())).split())


def _first_address(msg: Message, name: str) -> tuple[str, str] | None:
    found = _address_pairs(msg, name)
    return found[0] if found else None


def _address_pairs(msg: Message, name: str) -> list[tuple[str, str]]:
    values = [str(v) for v in msg.get_all(name, failobj=[])]
    pairs = []
    for display, addr in getaddresses(values):
        if "@" in addr and " " not in addr.strip():
            pairs.append((_decode_words(display), addr.strip().lower()))
    return pairs


def _addresses(msg: Message, name: str) -> list[str]:
    return list(dict.fromkeys(addr for _, addr in _address_pairs(msg, name)))


def _date(value: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _body(msg: Message) -> tuple[str, bool, list[str]]:
    """The preferred body (first HTML part, else first plain-text part) and the attachment file names."""
    html = plain = None
    attachments = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        disposition = (part.get("content-disposition") or "").split(";")[0].strip().lower()
        filename = part.get_filename()
        if disposition == "attachment" or (filename and disposition != "inline"):
            attachments.append(_decode_words(filename or "attachment"))
            continue
        kind = part.get_content_type()
        if kind == "text/html" and html is None:
            html = part
        elif kind == "text/plain" and plain is None:
            plain = part
    chosen = html or plain
    if chosen is None:
        return "", False, attachments
    payload = chosen.get_payload(decode=True)
    data = payload if isinstance(payload, bytes) else b""
    return _decode_bytes(data, chosen.get_content_charset()), chosen is html, attachments
