"""Outgoing email of one mailbox: CRM emails in Pending Send -> SMTP (or Graph sendMail) -> marked Sent, exactly
once.

Protocol (a killed and retried task never sends twice, never loses a send):

1. ``intent``: the message is built once — Message-ID, tracking token, exact bytes — and committed to
   ``dynamics.mailbox_outgoing`` before any byte goes to the SMTP server;
2. ``sent``: committed the moment the server answers 250 to the message (before ``QUIT``);
3. ``marked``: after the CRM email is updated to Sent with that Message-ID and tracking token.

On a retry a ``sent`` row only needs step 3. An ``intent`` row means the previous attempt died before the
250 was recorded; the same bytes (same Message-ID) are sent again. The only window in which that repeats a
delivery is between the server's 250 and the commit of step 2 (one local database commit, no SMTP round
trip), and receivers deduplicate by Message-ID. SMTP offers no way to close it entirely.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime, getaddresses
from typing import TYPE_CHECKING, Any

from dynamics_jobqueue.hooks.errors import ApiError, NotFoundError
from dynamics_jobqueue.hooks.graph import GraphHook
from dynamics_jobqueue.hooks.mail import MailError
from dynamics_jobqueue.mailbox import crm
from dynamics_jobqueue.mailbox import queries as q
from dynamics_jobqueue.mailbox.message import TRACKING_TOKEN

if TYPE_CHECKING:
    import psycopg

    from dynamics_jobqueue.hooks.dataverse import DataverseHook
    from dynamics_jobqueue.hooks.mail import MailHook
    from dynamics_jobqueue.mailbox.records import Mailbox

log = logging.getLogger(__name__)
_HTML = re.compile(r"<\s*(html|body|p|div|br|table)\b", re.IGNORECASE)
STATUS_FAILED = 8


@dataclass
class OutgoingResult:
    """What one outgoing run did: ``sent`` holds ``(subject, recipients)``, ``failed`` ``(subject, reason)``."""

    sent: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def processed(self) -> int:
        return len(self.sent) + len(self.failed)


def build_message(mailbox: Mailbox, email: dict[str, Any], token: str) -> tuple[str, bytes, list[str]]:
    """The MIME message of a CRM email: ``(Message-ID, bytes, envelope recipients)``.

    The subject carries the tracking token so replies correlate even when a client drops In-Reply-To.
    """
    domain = mailbox.email_address.rpartition("@")[2] or "dynamics-jobqueue.invalid"
    message_id = f"<{email['activityid']}.{token.replace(':', '')}@{domain}>"
    to = [a for _, a in getaddresses([str(email.get("torecipients") or "").replace(";", ",")]) if a]
    cc = [a for _, a in getaddresses([str(email.get("ccrecipients") or "").replace(";", ",")]) if a]
    subject = str(email.get("subject") or "")
    if not TRACKING_TOKEN.search(subject):
        subject = f"{subject} {token}".strip()
    msg = EmailMessage()
    msg["From"] = mailbox.email_address
    if to:
        msg["To"] = ", ".join(to)
    if cc:
        msg["Cc"] = ", ".join(cc)
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = message_id
    if email.get("inreplyto"):
        msg["In-Reply-To"] = str(email["inreplyto"])
        msg["References"] = str(email["inreplyto"])
    body = str(email.get("description") or "")
    msg.set_content(body, subtype="html" if _HTML.search(body) else "plain")
    return message_id, msg.as_bytes(), to + cc


class OutgoingSync:
    """Sends the Pending Send emails of one mailbox's user.

    :param pending: the user's Pending Send emails when the cycle already read them (one query for many
        mailboxes); ``None`` to query Dataverse here.
    """

    def __init__(
        self,
        conn: psycopg.Connection,
        mailbox: Mailbox,
        dataverse: DataverseHook,
        mail: MailHook,
        pending: list[dict[str, Any]] | None = None,
    ) -> None:
        self.conn = conn
        self.mailbox = mailbox
        self.dataverse = dataverse
        self.mail = mail
        self.pending = pending
        self.result = OutgoingResult()

    def run(self) -> OutgoingResult:
        """Send every pending email once. :raises MailError: when the SMTP server cannot be used at all."""
        if not self.mailbox.crm_user_id:
            return self.result
        emails = (
            self.pending if self.pending is not None else crm.pending_send(self.dataverse, [self.mailbox.crm_user_id])
        )
        unfinished = self.conn.execute(
            q.UNFINISHED_SENDS,
            (self.mailbox.mailbox_id,),
        ).fetchall()
        self.conn.commit()
        ids = {str(e["activityid"]) for e in emails}
        for (activity_id,) in unfinished:
            if activity_id not in ids:
                emails.append({"activityid": activity_id})
        for email in emails:
            self._send_one(email)
        return self.result

    def _send_one(self, email: dict[str, Any]) -> None:
        activity_id = str(email["activityid"])
        row = self.conn.execute(
            q.LOCK_OUTGOING,
            (activity_id,),
        ).fetchone()
        if row is None:
            token = str(email.get("trackingtoken") or "")
            if not token:
                seq = self.conn.execute(q.NEXT_TRACKING_TOKEN).fetchone()
                token = f"CRM:{int(seq[0]) if seq else 0:07d}"
            message_id, raw, _ = build_message(self.mailbox, email, token)
            self.conn.execute(
                q.OUTGOING_INTENT,
                (activity_id, self.mailbox.mailbox_id, message_id, raw),
            )
            state, raw_bytes = "intent", raw
        else:
            state, message_id, raw_bytes = row[0], row[1], bytes(row[2])
        self.conn.commit()
        if state in ("marked", "failed"):
            return
        parsed_subject, recipients = _envelope(raw_bytes)
        if state == "intent":
            self.conn.execute(q.OUTGOING_ATTEMPT, (activity_id,))
            self.conn.commit()

            def accepted() -> None:
                self.conn.execute(
                    q.OUTGOING_SENT,
                    (activity_id,),
                )
                self.conn.commit()

            try:
                if self.mailbox.profile.server_type == "exchange_online":
                    self._send_graph(raw_bytes, message_id)
                    accepted()
                else:
                    self.mail.send(raw_bytes, self.mailbox.email_address, recipients, on_accepted=accepted)
            except ApiError as exc:
                if exc.is_systemic or exc.status is None or exc.status >= 500:
                    raise
                self._fail(activity_id, parsed_subject, str(exc))
                return
            except MailError as exc:
                if exc.code != "smtp_refused":
                    raise
                self._fail(activity_id, parsed_subject, str(exc))
                return
        sent_at = self.conn.execute(q.OUTGOING_SENT_AT, (activity_id,)).fetchone()
        self.conn.commit()
        sent_on = (sent_at[0] if sent_at and sent_at[0] else datetime.now(UTC)).astimezone(UTC)
        token_match = TRACKING_TOKEN.search(parsed_subject)
        try:
            crm.mark_sent(
                self.dataverse,
                activity_id,
                message_id,
                f"CRM:{token_match.group(1)}" if token_match else "",
                sent_on.strftime("%Y-%m-%dT%H:%M:%SZ"),
            )
        except NotFoundError:
            # deleted in the CRM after it went out: nothing left to mark, and nothing to send again
            log.warning("Email %s was sent but deleted in the CRM before it could be marked Sent", activity_id)
        self.conn.execute(
            q.OUTGOING_MARKED,
            (activity_id,),
        )
        self.conn.commit()
        self.result.sent.append((parsed_subject, ", ".join(recipients)))

    def _send_graph(self, raw: bytes, message_id: str) -> None:
        """Send the built message through Graph ``sendMail`` (Exchange Online profiles)."""
        msg = BytesParser(policy=policy.default).parsebytes(raw)
        body = msg.get_body(preferencelist=("html", "plain"))
        content = body.get_content() if body is not None else ""
        is_html = body is not None and body.get_content_subtype() == "html"

        def people(name: str) -> list[dict[str, Any]]:
            return [
                {"emailAddress": {"address": a}} for _, a in getaddresses([str(v) for v in msg.get_all(name, [])]) if a
            ]

        message: dict[str, Any] = {
            "subject": str(msg["subject"] or ""),
            "body": {"contentType": "HTML" if is_html else "Text", "content": content},
            "toRecipients": people("to"),
            "ccRecipients": people("cc"),
            "internetMessageId": message_id,
        }
        GraphHook(self.mailbox.profile.conn_id).send_mail(self.mailbox.email_address, message)

    def _fail(self, activity_id: str, subject: str, reason: str) -> None:
        self.conn.execute(
            q.OUTGOING_FAILED,
            (reason, activity_id),
        )
        self.conn.commit()
        self.dataverse.upsert("emails", activity_id, {"statuscode": STATUS_FAILED}, mode="update")
        self.result.failed.append((subject, reason))


def _envelope(raw: bytes) -> tuple[str, list[str]]:
    """Subject and recipients (To + Cc) of a message this module built."""
    msg = BytesParser(policy=policy.default).parsebytes(raw, headersonly=True)
    recipients = [a for _, a in getaddresses([str(v) for v in msg.get_all("to", []) + msg.get_all("cc", [])]) if a]
    return str(msg.get("subject") or ""), recipients
