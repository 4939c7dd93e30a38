"""The real-world corpus (tests/mailbox_corpus, sources in its README) through real Dovecot mailboxes (IMAP and
POP3) and the sandbox's Exchange Online (Microsoft Graph), into the sandbox's Dataverse.

Per message the outcome and the decoded fields are checked against the stdlib's own reading of the raw file
(``email`` with ``policy.default``), not against this package's parser: a message whose From/Sender has no
address is quarantined with that reason; a second, different message with a Message-ID already taken is
quarantined with that reason (the corpus has several: CPython's test messages reuse Message-IDs); the same
message again only counts as a duplicate; every other message is tracked with the subject, sender, To
recipients, body text (the top-level message's own HTML, else plain text) and attachment names the stdlib
reads. A second cycle tracks nothing twice.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest
from test_mailbox_sync import make_due, make_mailbox

from dynamics_jobqueue.hooks.dataverse import DataverseHook
from dynamics_jobqueue.hooks.mail import MailHook
from dynamics_jobqueue.mailbox import records
from dynamics_jobqueue.mailbox.cycle import sync_mailbox
from dynamics_jobqueue.mailbox.message import CHARSET_ALIASES, MAX_BODY_CHARS
from dynamics_jobqueue.mailbox.records import IncomingFilter

CORPUS = Path(__file__).resolve().parents[2] / "mailbox_corpus"
FILES = sorted(p for p in CORPUS.glob("*/*") if p.is_file())
_MSGID = re.compile(r"<[^<>\s]+>")
#: Where this package reads a message differently from ``policy.default`` on purpose, and what it reads.
BY_DESIGN = {
    # "From: alice@example.com <bob@example.com>": the address is the angle-addr, where a reply goes (RFC 5322
    # name-addr); policy.default takes the address-looking display name
    "mail-parser/mail_test_19.eml": {"sender": "bob@example.com"},
}


def words(text: str) -> str:
    return " ".join(text.split())


@dataclass
class Expected:
    """What the stdlib reads in one corpus file, and the outcome the mailbox rules give it."""

    name: str
    outcome: str  # tracked, quarantined or duplicate
    reason: str = ""
    subject: str = ""
    sender: str = ""
    to: tuple[str, ...] = ()
    body: str = ""
    attachments: int = 0
    attachment_names: tuple[str, ...] = ()


def addresses(msg: EmailMessage, name: str) -> list[str]:
    found = []
    for header in msg.get_all(name, failobj=[]):
        for address in getattr(header, "addresses", ()):
            # raw 8-bit the stdlib keeps as surrogate escapes, read as UTF-8 first (RFC 6532)
            spec = str(address.addr_spec).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            if "@" in spec and " " not in spec:
                found.append(spec.lower())
    return list(dict.fromkeys(found))


def aliased(raw: bytes) -> bytes:
    """The message with RFC 2047 charset labels replaced by the code pages Microsoft mail means
    (``CHARSET_ALIASES``, e.g. gb2312 -> gbk)."""
    return re.sub(
        rb"=\?([^?*\s]+)\?",
        lambda m: b"=?" + CHARSET_ALIASES.get(m.group(1).decode().lower(), m.group(1).decode()).encode() + b"?",
        raw,
    )


def text_of(part: EmailMessage) -> str:
    """The stdlib's text of a body part; where the stdlib had to replace characters (a label that means a
    larger code page, UTF-8 declared as something else), the part decoded strictly with the aliased charset,
    else as UTF-8 (the per-part fallback rule), else the stdlib's reading."""
    content = part.get_content()
    if "\ufffd" not in content:
        return content
    payload = part.get_payload(decode=True)
    charset = str(part.get_content_charset() or "utf-8")
    for codec in (CHARSET_ALIASES.get(charset, charset), "utf-8"):
        try:
            return payload.decode(codec)
        except (LookupError, UnicodeDecodeError):
            continue
    return content


def body_of(raw: bytes) -> bytes:
    """The body section with line endings normalised (how a replay is told apart from another message)."""
    parts = re.split(rb"\r?\n\r?\n", raw, maxsplit=1)
    return parts[-1].replace(b"\r\n", b"\n").rstrip(b"\n")


def expectations() -> list[Expected]:
    taken: dict[str, bytes] = {}
    result = []
    for path in FILES:
        raw = path.read_bytes()
        name = f"{path.parent.name}/{path.name}"
        msg = BytesParser(policy=policy.default).parsebytes(raw)
        assert isinstance(msg, EmailMessage)
        subject = words(str(msg.get("subject") or ""))
        if "\ufffd" in subject:  # a charset label that means a larger code page (gb2312 holding GBK)
            subject = words(str(BytesParser(policy=policy.default).parsebytes(aliased(raw))["subject"]))
        sender = (addresses(msg, "from") or addresses(msg, "sender") or [""])[0]
        if not sender:
            why = "no sender address" if msg.keys() else "no RFC 5322 header section"
            result.append(Expected(name, "quarantined", why))
            continue
        found = _MSGID.search(str(msg.get("message-id") or ""))
        if found:
            earlier = taken.get(found.group(0))
            if earlier is not None:
                same = earlier == body_of(raw)
                result.append(Expected(name, "duplicate" if same else "quarantined", "" if same else "already taken"))
                continue
            taken[found.group(0)] = body_of(raw)
        part = msg.get_body(preferencelist=("html", "plain"))
        files = list(msg.iter_attachments()) if msg.is_multipart() else []
        override = BY_DESIGN.get(name, {})
        result.append(
            Expected(
                name,
                "tracked",
                subject=subject[:400],
                sender=str(override.get("sender", sender)),
                to=tuple(override.get("to", addresses(msg, "to"))),
                body=words(text_of(part)[:MAX_BODY_CHARS]) if part is not None else "",
                attachments=len(files),
                attachment_names=tuple(str(f.get_filename()) for f in files if f.get_filename()),
            )
        )
    return result


def test_the_corpus_has_at_least_30_messages_each_listed_in_the_readme() -> None:
    readme = (CORPUS / "README.md").read_text(encoding="utf-8")
    assert len(FILES) >= 30
    for path in FILES:
        assert f"`{path.parent.name}/{path.name}`" in readme, f"{path.name} has no provenance in the README"


def handled(state_store, mailbox_id: int) -> dict[str, tuple[str, str, str | None]]:
    """source key -> (outcome, reason, activity id) of every message the mailbox handled."""
    with state_store.transaction() as cur:
        cur.execute(
            "SELECT source_uid, outcome, reason, activity_id::text FROM dynamics.mailbox_message WHERE mailbox_id = %s",
            (mailbox_id,),
        )
        return {row[0]: (row[1], row[2], row[3]) for row in cur.fetchall()}


def source_keys(account, server_type: str, mailbox_id: int, state_store) -> list[str]:
    """The source key of each corpus file, in delivery order (IMAP UIDs 1..n, POP3 message numbers 1..n)."""
    if server_type == "pop3":
        with MailHook(account.conn_id).pop3() as session:
            listing = session.uidl()
        return [f"pop3:{listing[n]}" for n in sorted(listing)]
    with state_store.transaction() as cur:
        cur.execute(
            "SELECT uidvalidity FROM dynamics.mailbox_folder_state WHERE mailbox_id = %s AND folder = 'INBOX'",
            (mailbox_id,),
        )
        (uidvalidity,) = cur.fetchone()
    return [f"imap:INBOX:{uidvalidity}:{uid}" for uid in range(1, len(FILES) + 1)]


@pytest.mark.parametrize("server_type", ["imap", "pop3", "exchange_online"])
def test_real_world_corpus_tracked_or_quarantined_with_reason_decoded_as_the_stdlib_reads_it(
    state_store, sandbox, crm, make_account, request, server_type
) -> None:
    if server_type == "exchange_online":
        mailbox = request.getfixturevalue("graph_mailbox")
        records.update_mailbox(
            state_store, mailbox.mailbox_id, incoming_filter=IncomingFilter.ALL, outgoing_method="none"
        )
        keys = []
        for path in FILES:
            body = {"mime": base64.b64encode(path.read_bytes()).decode()}
            keys.append(f"graph:{sandbox.admin(f'graph/users/{mailbox.email_address}/messages', body)['id']}")
    else:
        account = make_account(f"corpus-{server_type}")
        account.deliver(*(path.read_bytes() for path in FILES))
        mailbox = make_mailbox(
            state_store, account, crm, server_type=server_type, outgoing_method="none",
            incoming_filter=IncomingFilter.ALL,
        )  # fmt: skip
        records.map_user(state_store, mailbox.mailbox_id, crm["bc" if server_type == "imap" else "jo"], confirm=True)
    first = sync_mailbox(state_store, mailbox.mailbox_id)
    assert first.errors == []

    rows = handled(state_store, mailbox.mailbox_id)
    if server_type != "exchange_online":
        keys = source_keys(account, server_type, mailbox.mailbox_id, state_store)
    dataverse = DataverseHook()
    checked = {"tracked": 0, "quarantined": 0, "duplicate": 0}
    for key, expected in zip(keys, expectations(), strict=True):
        where = f"{expected.name} ({key})"
        checked[expected.outcome] += 1
        if expected.outcome == "duplicate":
            assert key not in rows, where
            continue
        outcome, reason, activity_id = rows[key]
        assert outcome == expected.outcome, f"{where}: {reason}"
        if outcome == "quarantined":
            assert expected.reason in reason, where
            continue
        email = dataverse.get("emails", activity_id, select=["subject", "sender", "torecipients", "description"])
        assert words(email["subject"] or "") == expected.subject, where
        assert email["sender"] == expected.sender, where
        assert (email["torecipients"] or "") == ";".join(expected.to)[:500], where
        assert words(email["description"] or "") == expected.body, where
        files = [
            row["filename"]
            for page in dataverse.iter_pages(
                "activitymimeattachments", filter=f"_objectid_value eq {activity_id}", select=["filename"]
            )
            for row in page
        ]
        assert len(files) == expected.attachments, where
        assert set(expected.attachment_names) <= set(files), where
    assert checked["tracked"] >= 30 and checked["quarantined"] >= 5
    assert first.duplicates == checked["duplicate"]
    assert len(first.tracked) == checked["tracked"] and len(first.quarantined) == checked["quarantined"]

    make_due(state_store, mailbox.mailbox_id)
    again = sync_mailbox(state_store, mailbox.mailbox_id)
    assert (again.tracked, again.quarantined, again.filtered, again.errors) == ([], [], [], [])
