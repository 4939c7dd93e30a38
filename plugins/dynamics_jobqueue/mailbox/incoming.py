"""Incoming email of one mailbox: IMAP, POP3 or Microsoft Graph -> filter -> correlation -> Dataverse ``emails``.

IMAP (docs/reference/api-contracts.md, RFC 3501/7162): per folder the state store keeps (UIDVALIDITY, last UID, UIDNEXT,
HIGHESTMODSEQ). An idle folder costs one ``STATUS`` round trip. A changed UIDVALIDITY invalidates the stored
UIDs: the folder is read again from UID 1 and every message already handled is recognised by its Message-ID
(``dynamics.mailbox_message``), and Dataverse would refuse a twin anyway (the activity id derives from the
Message-ID). POP3 (RFC 1939): the UIDLs taken are kept; mail stays on the server unless the mailbox says
``pop3_delete``. Graph (Exchange Online): the messages delta link per folder is kept; a message's MIME source
(``$value``) goes through the same parser and filter; replays and a ``syncStateNotFound`` resync are absorbed
by the same Message-ID dedupe.

Each message is committed on its own (message row + position in one transaction), so a crash loses nothing
and repeats nothing. No message can stop a mailbox: one that cannot be read (a POP3 ``RETR`` or IMAP ``FETCH``
the server refuses, a message over the size limit, a Graph ``$value`` refused for that message), parsed, or
that the CRM refuses is quarantined with its raw source (or what could be read of it) and the reason
(``dynamics.mailbox_quarantine``), its position is stored, and the mailbox moves on. A second, different
message with a Message-ID already taken (compared by :func:`body_digest`) is quarantined the same way with
the reason, never silently dropped; the same message read again (a replay) only counts as a duplicate.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import psycopg

from dynamics_jobqueue.hooks.errors import ApiError, NotFoundError
from dynamics_jobqueue.hooks.graph import DeltaExpiredError, GraphHook
from dynamics_jobqueue.hooks.mail import MailError, UnreadableMessage
from dynamics_jobqueue.mailbox import crm
from dynamics_jobqueue.mailbox import queries as q
from dynamics_jobqueue.mailbox.message import (
    ParsedMessage,
    UnparseableMessage,
    normalise_message_id,
    parse,
)
from dynamics_jobqueue.mailbox.records import IncomingFilter, Mailbox
from dynamics_jobqueue.mailbox.store import load_delta_link, save_delta_link

if TYPE_CHECKING:
    from dynamics_jobqueue.hooks.dataverse import DataverseHook
    from dynamics_jobqueue.hooks.mail import ImapSession, MailHook

log = logging.getLogger(__name__)


@dataclass
class IncomingResult:
    """What one incoming run did; lists hold ``(subject, detail)`` pairs for the summary."""

    tracked: list[tuple[str, str]] = field(default_factory=list)
    filtered: list[tuple[str, str]] = field(default_factory=list)
    quarantined: list[tuple[str, str]] = field(default_factory=list)
    duplicates: int = 0
    failed: int = 0
    uidvalidity_changes: list[str] = field(default_factory=list)
    #: IMAP commands (round trips) sent after login; an idle folder costs one (STATUS)
    round_trips: int = 0

    @property
    def processed(self) -> int:
        return len(self.tracked) + len(self.filtered) + len(self.quarantined)


class IncomingSync:
    """Runs the incoming workload of one mailbox.

    :param conn: an open psycopg connection to the state store (one per mailbox run).
    :param dataverse: the CRM.
    :param mail: the mailbox's mail hook (profile connection + optional per-mailbox login).
    :param resolver: a party resolver shared by the cycle (its cache saves queries).
    """

    def __init__(
        self,
        conn: psycopg.Connection,
        mailbox: Mailbox,
        dataverse: DataverseHook,
        mail: MailHook,
        resolver: crm.PartyResolver | None = None,
    ) -> None:
        self.conn = conn
        self.mailbox = mailbox
        self.dataverse = dataverse
        self.mail = mail
        self.resolver = resolver or crm.PartyResolver(dataverse)
        self.result = IncomingResult()

    def run(self) -> IncomingResult:
        """Read new mail and track it. :raises MailError: when the server cannot be used (whole workload)."""
        if self.mailbox.profile.server_type == "pop3":
            self._run_pop3()
        elif self.mailbox.profile.server_type == "exchange_online":
            graph = GraphHook(self.mailbox.profile.conn_id)
            for folder in self.mailbox.folders:
                self._run_graph_folder(graph, "inbox" if folder.upper() == "INBOX" else folder)
        else:
            with self.mail.imap() as session:
                try:
                    for folder in self.mailbox.folders:
                        self._run_imap_folder(session, folder)
                finally:
                    self.result.round_trips = session.commands
        self.conn.commit()
        return self.result

    # -- IMAP ------------------------------------------------------------------------------------------------
    def _run_imap_folder(self, session: ImapSession, folder: str) -> None:
        status = session.status(folder)
        row = self.conn.execute(
            q.FOLDER_STATE,
            (self.mailbox.mailbox_id, folder),
        ).fetchone()
        self.conn.commit()  # no read transaction left open: the schedule update after an idle check must persist
        last_uid, modseq = 0, None
        if row is not None and row[0] == status.uidvalidity:
            last_uid = int(row[1])
            modseq = int(row[3]) if row[3] is not None else None
            unchanged = status.uidnext <= last_uid + 1 or (
                row[2] == status.uidnext and modseq is not None and modseq == status.highest_modseq
            )
            if unchanged:
                return
        elif row is not None:
            note = f"{folder}: UIDVALIDITY {row[0]} -> {status.uidvalidity}, folder read again (dedupe by Message-ID)"
            log.warning("Mailbox %s: %s", self.mailbox.email_address, note)
            self.result.uidvalidity_changes.append(note)
        uids = session.new_uids(folder, last_uid, changed_since=modseq)
        for uid, raw in session.fetch(folder, uids):
            self._handle(raw, folder=folder, source_key=f"imap:{folder}:{status.uidvalidity}:{uid}")
            self._save_folder(folder, status.uidvalidity, uid, None, None)
        self._save_folder(folder, status.uidvalidity, max([last_uid, *uids]), status.uidnext, status.highest_modseq)

    def _save_folder(
        self, folder: str, uidvalidity: int, last_uid: int, uidnext: int | None, modseq: int | None
    ) -> None:
        """Store the folder position. During a pass ``uidnext``/``modseq`` are ``None`` (unknown), so a run
        that resumes after a crash never takes the "nothing changed" shortcut or a MODSEQ search."""
        self.conn.execute(
            q.SAVE_FOLDER_STATE,
            (self.mailbox.mailbox_id, folder, uidvalidity, last_uid, uidnext, modseq),
        )
        self.conn.commit()

    # -- Microsoft Graph ---------------------------------------------------------------------------------------
    def _run_graph_folder(self, graph: GraphHook, folder: str) -> None:
        """Messages delta of one folder; the delta link is stored once the round reached it (a crash before
        that replays the round, which the Message-ID dedupe absorbs). An expired link restarts fully."""
        resource = f"messages:{folder}"
        stored_link = load_delta_link(self.conn, self.mailbox.mailbox_id, resource)
        user = self.mailbox.email_address
        try:
            delta_link = self._graph_round(graph, user, folder, stored_link)
        except DeltaExpiredError:
            note = f"{folder}: Graph delta link expired (syncStateNotFound), folder read again (dedupe by Message-ID)"
            log.warning("Mailbox %s: %s", user, note)
            self.result.uidvalidity_changes.append(note)
            delta_link = self._graph_round(graph, user, folder, None)
        if delta_link:
            save_delta_link(self.conn, self.mailbox.mailbox_id, resource, delta_link)

    def _graph_round(self, graph: GraphHook, user: str, folder: str, delta_link: str | None) -> str | None:
        last_link = None
        for page in graph.iter_message_delta(user, folder, delta_link=delta_link):
            self.result.round_trips += 1
            for message in page.messages:
                source_key = f"graph:{message['id']}"
                known = self.conn.execute(
                    q.SOURCE_UID_OF_MESSAGE,
                    (self.mailbox.mailbox_id, normalise_message_id(str(message.get("internetMessageId") or ""))),
                ).fetchone()
                self.conn.commit()
                if known and known[0] == source_key:
                    # a replay of this very item: no need to download it again (another item with the same
                    # Message-ID is downloaded and compared, see _handle)
                    self.result.duplicates += 1
                    continue
                try:
                    raw: bytes | UnreadableMessage = graph.get_mime(user, str(message["id"]))
                except NotFoundError:
                    continue  # deleted since the delta listed it: nothing left to track
                except ApiError as exc:
                    if exc.is_systemic:
                        raise
                    # Graph refuses this one message's MIME source: keep what Graph told about it
                    raw = UnreadableMessage(f"Graph cannot deliver the MIME source: {exc}", _json_bytes(message))
                self._handle(raw, folder=folder, source_key=source_key)
            last_link = page.delta_link or last_link
        return last_link

    # -- POP3 ------------------------------------------------------------------------------------------------
    def _run_pop3(self) -> None:
        with self.mail.pop3() as session:
            listing = session.uidl()
            known = {r[0] for r in self.conn.execute(q.POP3_UIDLS, (self.mailbox.mailbox_id,)).fetchall()}
            self.conn.commit()
            for number, uidl in sorted(listing.items()):
                if uidl in known:
                    if self.mailbox.pop3_delete:
                        session.delete(number)
                    continue
                try:
                    raw: bytes | UnreadableMessage = session.retrieve(number)
                except UnreadableMessage as exc:
                    raw = exc
                self._handle(raw, folder="INBOX", source_key=f"pop3:{uidl}")
                self.conn.execute(
                    q.ADD_POP3_UIDL,
                    (self.mailbox.mailbox_id, uidl),
                )
                self.conn.commit()
                if self.mailbox.pop3_delete:
                    session.delete(number)

    # -- one message -----------------------------------------------------------------------------------------
    def _handle(self, raw: bytes | UnreadableMessage, *, folder: str, source_key: str) -> None:
        """Track, filter or quarantine one message; only an error of the whole workload (the mail server, the
        CRM or the state store unreachable) propagates."""
        if isinstance(raw, UnreadableMessage):
            self._quarantine(raw.partial, folder, source_key, str(raw))
            return
        try:
            message = parse(raw)
        except UnparseableMessage as exc:
            self._quarantine(raw, folder, source_key, str(exc))
            return
        digest = body_digest(raw)
        seen = self.conn.execute(
            q.SEEN_MESSAGE,
            (self.mailbox.mailbox_id, message.message_id),
        ).fetchone()
        if seen:
            self.conn.commit()
            if seen[0] is None or seen[0] == digest:
                self.result.duplicates += 1  # the same message again (replay, UIDVALIDITY change, two folders)
            else:
                reason = (
                    f"Message-ID {message.message_id} is already taken by a different message ({seen[1]});"
                    " this one was not tracked"
                )
                self._quarantine(raw, folder, source_key, reason)
            return
        try:
            outcome, reason, activity_id, regarding = self._track(message)
        except ApiError as exc:
            if exc.is_systemic:
                raise  # auth, throttling, outage: the whole workload retries later from this message
            # the CRM refuses this one message: keep it (raw source and reason) without blocking the mailbox
            self.result.failed += 1
            self._quarantine(raw, folder, source_key, f"CRM refused the email activity: {exc}")
            return
        except Exception as exc:
            if _workload_error(exc):
                raise
            # a message nothing foresaw must not jam the mailbox: keep it with the error, move on
            log.exception("Mailbox %s: message %s could not be tracked", self.mailbox.email_address, source_key)
            self.result.failed += 1
            self._quarantine(raw, folder, source_key, f"not tracked: {type(exc).__name__}: {exc}")
            return
        self.conn.execute(
            q.RECORD_MESSAGE,
            (
                self.mailbox.mailbox_id,
                message.message_id,
                outcome,
                reason,
                activity_id,
                regarding,
                message.subject[:400],
                folder,
                source_key,
                digest,
            ),
        )
        self.conn.commit()
        target = self.result.tracked if outcome == "tracked" else self.result.filtered
        target.append((message.subject, reason))

    def _track(self, message: ParsedMessage) -> tuple[str, str, str | None, str | None]:
        """Apply the filter option; create the activity when it passes. Returns (outcome, reason, id, regarding)."""
        option = self.mailbox.incoming_filter
        if option is IncomingFilter.NONE:
            return "filtered", "incoming filter is None", None, None
        after = self.mailbox.process_after
        if after and message.date and message.date < after:
            return "filtered", f"received before {after:%Y-%m-%d %H:%M} UTC (process email received after)", None, None
        correlated = None
        if message.correlation_ids() or message.tracking_token:
            correlated = crm.find_tracked(self.dataverse, message.correlation_ids(), message.tracking_token)
        parties = self.resolver.resolve([message.sender, *message.to, *message.cc])
        sender = parties.get(message.sender, crm.Party(message.sender))
        if option is IncomingFilter.REPLIES_TO_TRACKED and correlated is None:
            return "filtered", "not a reply to a tracked email", None, None
        if option is IncomingFilter.FROM_CRM_RECORDS and not sender.regarding_candidate:
            return "filtered", f"sender {message.sender} is not a CRM contact or account", None, None
        if option is IncomingFilter.FROM_EMAIL_ENABLED_RECORDS and not sender.resolved:
            return "filtered", f"sender {message.sender} is not an email-enabled CRM record", None, None
        regarding = None
        if correlated and correlated.regarding_set and correlated.regarding_id:
            regarding = (correlated.regarding_set, correlated.regarding_id)
        activity_id, created = crm.track_email(
            self.dataverse, message, owner_id=self.mailbox.crm_user_id, parties=parties, regarding=regarding
        )
        how = "reply to tracked email" if correlated else f"filter {option.value}"
        where = f"regarding {regarding[0]}({regarding[1]})" if regarding else "no regarding record"
        detail = f"{how}; {where}" + ("" if created else "; activity already existed")
        return "tracked", detail, activity_id, f"{regarding[0]}({regarding[1]})" if regarding else None

    def _quarantine(self, raw: bytes, folder: str, source_key: str, reason: str) -> None:
        self.conn.rollback()  # nothing half-done of this message goes in with its quarantine row
        # an unreadable message may have no bytes at all: its source key then tells it apart
        digest = hashlib.sha256(raw or source_key.encode()).hexdigest()
        self.conn.execute(
            q.QUARANTINE,
            (self.mailbox.mailbox_id, f"sha256:{digest}", folder, reason, raw),
        )
        inserted = self.conn.execute(
            q.RECORD_QUARANTINED_MESSAGE,
            (self.mailbox.mailbox_id, f"<{digest[:40]}@quarantine.invalid>", reason, folder, source_key),
        ).fetchone()
        self.conn.commit()
        if inserted:
            log.warning("Mailbox %s: message %s quarantined: %s", self.mailbox.email_address, source_key, reason)
            self.result.quarantined.append((source_key, reason))
        else:
            self.result.duplicates += 1


def body_digest(raw: bytes) -> str:
    """SHA-256 of a message's body (after the header section, line endings normalised): two copies of one
    message share it even when transport headers differ; two different messages with one Message-ID do not."""
    body = raw.split(b"\r\n\r\n", 1)[-1] if b"\r\n\r\n" in raw else raw.split(b"\n\n", 1)[-1]
    return hashlib.sha256(body.replace(b"\r\n", b"\n").rstrip(b"\n")).hexdigest()


def _workload_error(exc: Exception) -> bool:
    """Errors of the whole workload (mail server, CRM service, state store), not of one message."""
    return isinstance(exc, (MailError, psycopg.Error))


def _json_bytes(item: dict[str, object]) -> bytes:
    return json.dumps(item, default=str, indent=1).encode()
