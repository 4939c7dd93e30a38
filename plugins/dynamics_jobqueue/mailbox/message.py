"""Incoming messages: MIME parsing (stdlib ``email``), conversation keys and the tracking token.

Headers are read as the modern ``email`` parser reads them (``policy.default``): RFC 2047 words, raw UTF-8
bytes (RFC 6532) and RFC 2231 parameters are decoded by the stdlib. Raw 8-bit bytes that are not UTF-8 (a
Big5 or Windows-1252 subject written by an old client) are read with the message's declared charset, else
Windows-1252, before the parser sees them, so they never turn into one U+FFFD per byte. Header sections that
are plain ASCII with no encoded word read the same under every policy and take the ``compat32`` path, which
is ~20x faster (that is what keeps an initial fetch of a large mailbox within the benchmark's budget).

:func:`parse` turns raw RFC 5322 bytes into a :class:`ParsedMessage` or raises :class:`UnparseableMessage`
with a reason (the caller quarantines the raw source). A missing ``Message-ID`` gets a stable one derived from
the content with line endings normalised (so IMAP and POP3 copies of one message get the same id). It refuses
what cannot be tracked: no headers at all, or no sender address.

The body kept on the CRM activity is the top-level message's own ``text/html`` (else ``text/plain``) as
``EmailMessage.get_body`` finds it: never a part inside an attached or bounced ``message/rfc822``. Each part is
decoded with its declared charset (aliases Microsoft mail uses, :data:`CHARSET_ALIASES`), falling back to
UTF-8 and then to the declared charset with per-character replacement: one bad byte costs one character,
never the whole part. Attachments (``EmailMessage.iter_attachments``) keep their bytes and MIME type, for
the CRM's ``activitymimeattachment`` records.

Correlation keys (docs/reference/dynamics-semantics.md section 3, in the reference's order): ``In-Reply-To``, the
tracking token in the subject (``CRM:`` plus digits), then ``References``.
"""

from __future__ import annotations

import codecs
import functools
import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any

#: The tracking token the CRM puts in the subject of emails it sends: "CRM:" plus digits.
TRACKING_TOKEN = re.compile(r"CRM:(\d{4,})", re.IGNORECASE)
_MSGID = re.compile(r"<[^<>\s]+>")
_HEADER_LINE = re.compile(rb"^[!-9;-~]+:", re.MULTILINE)
_CHARSET_PARAM = re.compile(rb"^content-type:[^\n]*?charset\s*=\s*\"?([A-Za-z0-9_.:-]+)", re.IGNORECASE | re.MULTILINE)
_LINE_END = re.compile(rb"\r?\n")
#: Body text kept on the CRM activity (Dataverse ``description`` holds up to ~1 MB; long mails are cut).
MAX_BODY_CHARS = 100_000
#: Charset labels Microsoft mail writes that Python names differently or reads too narrowly: Outlook's
#: ``ks_c_5601-1987`` is Windows code page 949 and its ``gb2312`` holds GBK (WHATWG Encoding Standard,
#: https://encoding.spec.whatwg.org/#names-and-labels, maps both the same way).
CHARSET_ALIASES = {
    "ks_c_5601-1987": "cp949",
    "ks_c_5601": "cp949",
    "euc-kr": "cp949",
    "gb2312": "gbk",
    "gb_2312-80": "gbk",
    "x-gbk": "gbk",
    "x-mac-cyrillic": "mac_cyrillic",
    "x-mac-ukrainian": "mac_cyrillic",
    "x-mac-roman": "mac_roman",
    "macintosh": "mac_roman",
    "windows-874": "cp874",
    "iso-8859-8-i": "iso8859_8",
    "x-sjis": "cp932",
    "shift_jis": "cp932",
    "big5": "big5hkscs",
    "unicode-1-1-utf-7": "utf-7",
    "x-unicode20utf8": "utf-8",
}
_REGISTRY = HeaderRegistry()


@functools.lru_cache(maxsize=1024)
def _header_object(name: str, value: str) -> BaseHeader:
    """``policy.default``'s header objects, memoised: the parser asks for a part's Content-Type six times while
    it walks a message, and header objects are immutable."""
    return _REGISTRY(name, value)


#: ``policy.default`` with memoised header objects (same readings, a third of the parse time).
POLICY = policy.default.clone(header_factory=_header_object)
#: What undeclared 8-bit text most likely is in mail from Microsoft clients (after UTF-8 failed).
FALLBACK_CHARSET = "cp1252"


class UnparseableMessage(Exception):
    """The message cannot be tracked; ``str(exc)`` is the reason kept with the quarantined source."""


@dataclass(frozen=True)
class Attachment:
    """One attachment: ``filename`` (decoded), ``mimetype`` and the decoded ``data`` bytes."""

    filename: str
    mimetype: str
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class MessageBody:
    """The body kept on the CRM activity: ``text`` (HTML preferred), ``is_html`` and the attachments."""

    text: str
    is_html: bool
    files: list[Attachment] = field(default_factory=list)

    @property
    def attachments(self) -> list[str]:
        """The attachments' file names, in message order."""
        return [a.filename for a in self.files]


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
        """Parse the body (see the module rules), cut at :data:`MAX_BODY_CHARS`, with the attachments."""
        try:
            msg = BytesParser(policy=POLICY).parsebytes(self.raw)
            assert isinstance(msg, EmailMessage)
            text, is_html = _body(msg)
            files = _attachments(msg)
        except Exception as exc:  # a body the email package cannot walk: track the headers, say so in the text
            return MessageBody(f"(body not readable: {type(exc).__name__}: {exc})", False, [])
        return MessageBody(text[:MAX_BODY_CHARS], is_html, files)

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


def content_digest(raw: bytes) -> str:
    """SHA-256 of a message with line endings normalised and trailing blank lines dropped: the same message
    read over IMAP (as stored) and POP3 (``RETR`` adds a final CRLF) has the same digest."""
    return hashlib.sha256(_LINE_END.sub(b"\n", raw).rstrip(b"\n")).hexdigest()


def synthetic_message_id(raw: bytes) -> str:
    """The stable Message-ID given to a message that has none (see :func:`content_digest`)."""
    return f"<{content_digest(raw)[:40]}@dynamics-jobqueue.invalid>"


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
        headers = _Headers(head)
        sender_name, sender = headers.first_address("from") or headers.first_address("sender") or ("", "")
        if not sender:
            raise UnparseableMessage("no sender address in From or Sender")
        subject = headers.text("subject")
        raw_id = headers.text("message-id")
        synthetic = not _MSGID.search(raw_id)
        message_id = synthetic_message_id(raw) if synthetic else normalise_message_id(raw_id)
        in_reply_to_raw = headers.text("in-reply-to")
        in_reply_to = normalise_message_id(in_reply_to_raw) if _MSGID.search(in_reply_to_raw) else None
        references = _MSGID.findall(headers.text("references"))
        token = TRACKING_TOKEN.search(subject)
        return ParsedMessage(
            message_id=message_id,
            subject=subject,
            sender=sender,
            sender_name=sender_name,
            to=headers.addresses("to"),
            cc=headers.addresses("cc"),
            in_reply_to=in_reply_to,
            references=references,
            date=_date(headers.text("date")),
            tracking_token=f"CRM:{token.group(1)}" if token else None,
            raw=raw,
            synthetic_id=synthetic,
        )
    except UnparseableMessage:
        raise
    except Exception as exc:  # the email package raises many types on hostile input; all mean "quarantine"
        raise UnparseableMessage(f"{type(exc).__name__}: {exc}") from exc


def codec_for(charset: str | None) -> str | None:
    """The Python codec of a MIME charset label (with :data:`CHARSET_ALIASES`), or ``None`` when unknown."""
    if not charset:
        return None
    label = charset.strip().strip('"').lower()
    label = CHARSET_ALIASES.get(label, label)
    try:
        return codecs.lookup(label).name
    except LookupError:
        return None


def decode_text(data: bytes, charset: str | None) -> str:
    """Text of a part: its declared charset, else UTF-8, else the declared charset (or Windows-1252) with
    per-character replacement."""
    codec = codec_for(charset)
    for candidate in dict.fromkeys(c for c in (codec, "utf-8") if c):
        try:
            return data.decode(candidate)
        except UnicodeDecodeError:
            continue
    readable = codec if codec not in (None, "ascii") else FALLBACK_CHARSET  # 8-bit text declared ASCII
    return data.decode(readable, "replace")


class _Headers:
    """The header section read with ``policy.default``.

    Sections that are plain ASCII without encoded words read the same under every policy; for them the fields
    are split here (RFC 5322 unfolding) and simple address lists (``Name <a@b>``, ``a@b``, comma-separated)
    are read with one pattern, anything else with ``email.utils.getaddresses``. An unusual line (an mbox
    ``From `` line, a field name the RFC does not allow) sends the section to the stdlib parser.
    """

    def __init__(self, head: bytes) -> None:
        self.modern = not head.isascii() or b"=?" in head
        self.fields = None if self.modern else _split_fields(head)
        if self.fields is None:
            chosen = POLICY if self.modern else policy.compat32
            source = _to_utf8(alias_encoded_words(head)) if self.modern else head
            msg = BytesParser(policy=chosen).parsebytes(source + b"\r\n\r\n", headersonly=True)
            self.msg: Message | None = msg
        else:
            self.msg = None

    def all(self, name: str) -> list[str]:
        if self.fields is not None:
            return self.fields.get(name, [])
        assert self.msg is not None
        return [str(v) for v in self.msg.get_all(name, failobj=[])]

    def text(self, name: str) -> str:
        found = self.all(name)
        return " ".join(_unescape(found[0]).split()) if found else ""

    def pairs(self, name: str) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        if self.modern:
            assert self.msg is not None
            for value in self.msg.get_all(name, failobj=[]):
                for address in getattr(value, "addresses", ()):
                    found.append((str(address.display_name), str(address.addr_spec)))
        else:
            for value in self.all(name):
                found += _simple_addresses(value)
        return [
            (" ".join(_unescape(n).split()), _unescape(a).strip().lower())
            for n, a in found
            if "@" in a and " " not in a.strip()
        ]

    def first_address(self, name: str) -> tuple[str, str] | None:
        found = self.pairs(name)
        return found[0] if found else None

    def addresses(self, name: str) -> list[str]:
        return list(dict.fromkeys(addr for _, addr in self.pairs(name)))


_FIELD = re.compile(r"([!-9;-~]+):(.*)", re.DOTALL)
_SIMPLE_ITEM = re.compile(r"\s*(?:([^<>]*?)\s*<([^<>\s]+)>|([^<>\s]+))\s*")


def _split_fields(head: bytes) -> dict[str, list[str]] | None:
    """Field name (lower case) -> values of an ASCII header section, unfolded; ``None`` when a line is not a
    plain field or its continuation (the stdlib parser then reads the section)."""
    fields: dict[str, list[str]] = {}
    last: list[str] | None = None
    for line in head.decode("ascii").split("\n"):
        line = line.rstrip("\r")
        if line[:1] in (" ", "\t"):
            if last is None:
                return None
            last[-1] += " " + line
            continue
        match = _FIELD.fullmatch(line)
        if match is None:
            return None
        last = fields.setdefault(match.group(1).lower(), [])
        last.append(match.group(2))
    return fields


def _simple_addresses(value: str) -> list[tuple[str, str]]:
    """``(display name, address)`` of a plain address list; quoted names, comments, groups and escapes go
    through ``getaddresses``."""
    if any(ch in value for ch in '"():;\\'):
        return getaddresses([value])
    found = []
    for item in value.split(","):
        if not item.strip():
            continue
        match = _SIMPLE_ITEM.fullmatch(item)
        if match is None:
            return getaddresses([value])
        found.append((match.group(1) or "", match.group(2) or match.group(3)))
    return found


def _unescape(value: str) -> str:
    """Raw UTF-8 the parser kept as surrogate escapes (in address tokens) back as text."""
    if value.isascii() or not any("\udc80" <= ch <= "\udcff" for ch in value):
        return value
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


_EW_CHARSET = re.compile(rb"=\?([^?*\s]+)((?:\*[^?\s]*)?\?[bBqQ]\?)")


def alias_encoded_words(head: bytes) -> bytes:
    """RFC 2047 encoded words with their charset label replaced by :data:`CHARSET_ALIASES`' code page
    (``=?gb2312?B?...?=`` is read as GBK), so the stdlib decodes them as Microsoft mail means them."""

    def swap(match: re.Match[bytes]) -> bytes:
        label = match.group(1).decode("ascii", "replace").lower()
        alias = CHARSET_ALIASES.get(label)
        return b"=?" + alias.encode() + match.group(2) if alias else match.group(0)

    return _EW_CHARSET.sub(swap, head) if b"=?" in head else head


def _to_utf8(head: bytes) -> bytes:
    """Header lines whose raw 8-bit bytes are not UTF-8, re-encoded as UTF-8 from the declared charset (else
    Windows-1252), so the parser decodes them as text (RFC 6532) instead of one U+FFFD per byte."""
    if head.isascii():
        return head
    try:
        head.decode("utf-8")
        return head
    except UnicodeDecodeError:
        pass
    declared = _CHARSET_PARAM.search(head)
    codec = codec_for(declared.group(1).decode("ascii")) if declared else None
    lines = []
    for line in head.split(b"\n"):
        if not line.isascii():
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                line = decode_text(line, codec or FALLBACK_CHARSET).encode("utf-8")
        lines.append(line)
    return b"\n".join(lines)


def _date(value: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _body(msg: EmailMessage) -> tuple[str, bool]:
    """The top-level message's own body: HTML preferred, else plain text (``get_body``), decoded."""
    part = msg.get_body(preferencelist=("html", "plain"))
    if part is None:
        return "", False
    payload = part.get_payload(decode=True)
    data = payload if isinstance(payload, bytes) else b""
    return decode_text(data, part.get_content_charset()), part.get_content_subtype() == "html"


def _attachments(msg: EmailMessage) -> list[Attachment]:
    """The message's attachments (``iter_attachments``): an attached message is one ``.eml`` file."""
    files = []
    for number, part in enumerate(msg.iter_attachments() if msg.is_multipart() else [], start=1):
        kind = part.get_content_type()
        name = part.get_filename()
        payload: Any = part.get_payload()
        if part.get_content_maintype() == "message" and isinstance(payload, list) and payload:
            inner: Message = payload[0]
            data = inner.as_bytes()
            if not name and inner.get("subject"):
                name = f"{' '.join(str(inner['subject']).split())}.eml"
        elif part.is_multipart():
            data = part.as_bytes()
        else:
            decoded = part.get_payload(decode=True)
            data = decoded if isinstance(decoded, bytes) else b""
        files.append(Attachment(name or f"attachment-{number}", kind, data))
    return files
