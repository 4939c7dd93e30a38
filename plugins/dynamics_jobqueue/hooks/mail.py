"""Hook to a mail server: IMAP and POP3 for incoming email, SMTP for outgoing (POP3/IMAP + SMTP profiles).

One Airflow connection per email server profile (conn type ``dynamics_mail``):

- ``host``: the server name; ``login``/``password``: the profile's login (a service account);
- ``extra``: ``imap_port`` (default 143), ``pop3_port`` (110), ``smtp_port`` (25), ``imap_ssl``,
  ``pop3_ssl``, ``smtp_ssl`` (implicit TLS, default false), ``smtp_starttls`` (default false),
  ``smtp_host`` (default ``host``), ``timeout`` (seconds, default 60).

A mailbox may sign in with its own login: pass ``credentials_conn_id``, a connection whose ``login`` and
``password`` replace the profile's (host and ports stay the profile's). Passwords never reach the logs.

Wire rules (docs/reference/api-contracts.md "IMAP, POP3, SMTP"; RFC 3501, 7162, 1939): ``STATUS`` answers "anything
new?" in one round trip without selecting the folder; messages are read with ``BODY.PEEK[]`` from a folder opened with
``EXAMINE`` so nothing is ever marked read; new mail is ``UID SEARCH UID <last+1>:*`` (plus ``MODSEQ`` when the
server offers CONDSTORE) with results ``<= last`` dropped, because ``n:*`` always matches the highest UID.
"""

from __future__ import annotations

import imaplib
import poplib
import re
import smtplib
import ssl
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from airflow.sdk import BaseHook

#: Messages fetched per ``UID FETCH``: bounds memory to ~batch x message size.
FETCH_BATCH = 200
#: Bytes of one message kept at most; a larger message is read to its end but kept cut (and quarantined).
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
#: POP3 lines are read in pieces of this size: ``poplib`` refuses lines over 2,048 bytes (``line too long``),
#: which real mail has (unfolded HTML, long base64 lines), so ``RETR`` is read here without that limit.
_POP3_PIECE = 1024 * 1024

_STATUS_ITEM = re.compile(rb"(UIDNEXT|UIDVALIDITY|HIGHESTMODSEQ|MESSAGES)\s+(\d+)")
_FETCH_UID = re.compile(rb"UID\s+(\d+)")


class UnreadableMessage(Exception):
    """One message could not be read in full; the session is still usable for the next one.

    :param reason: why, in words for the quarantine.
    :param partial: what could be read of the message (may be empty).
    """

    def __init__(self, reason: str, partial: bytes = b"") -> None:
        super().__init__(reason)
        self.partial = partial


class MailError(Exception):
    """A mail server refused or failed a command.

    :param message: what failed, in words a mailbox owner can act on.
    :param code: a stable code for the mailbox record (``auth_failed``, ``connection_failed``, ``protocol``).
    :param permanent: ``True`` when retrying cannot help until someone fixes something (bad credentials).
    :param fix: what to fix, for the alert.
    """

    def __init__(self, message: str, *, code: str, permanent: bool = False, fix: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.permanent = permanent
        self.fix = fix


@dataclass(frozen=True)
class FolderStatus:
    """``STATUS`` of one IMAP folder: ``uidvalidity``, ``uidnext``, ``messages`` and, with CONDSTORE,
    ``highest_modseq`` (else ``None``)."""

    uidvalidity: int
    uidnext: int
    messages: int
    highest_modseq: int | None


class ImapSession:
    """A signed-in IMAP connection (see :meth:`MailHook.imap`).

    :ivar condstore: the server announced CONDSTORE (RFC 7162) after login.
    :ivar commands: commands sent since login, for the benchmark's round-trip count.
    """

    def __init__(self, client: imaplib.IMAP4, reconnect: Callable[[], imaplib.IMAP4] | None = None) -> None:
        self.client = client
        self._reconnect = reconnect
        # Servers send the post-login capabilities in the LOGIN answer ([CAPABILITY ...]); asking again
        # only when they did not keeps an idle check at one round trip after login.
        announced = client.untagged_responses.pop("CAPABILITY", None)
        if announced:
            names = b" ".join(c for c in announced if isinstance(c, bytes)).decode("ascii", "replace").split()
        else:
            _, data = client.capability()
            names = b" ".join(c for c in data if isinstance(c, bytes)).decode("ascii", "replace").split()
        self.capabilities = frozenset(c.upper() for c in names)
        self.condstore = "CONDSTORE" in self.capabilities
        self.commands = 0
        self._selected: str | None = None

    def status(self, folder: str) -> FolderStatus:
        """One ``STATUS`` round trip. :raises MailError: when the folder does not exist."""
        items = "UIDNEXT UIDVALIDITY MESSAGES" + (" HIGHESTMODSEQ" if self.condstore else "")
        typ, data = self._run("status", _quote(folder), f"({items})")
        if typ != "OK" or not data or data[0] is None:
            raise MailError(
                f"IMAP folder {folder!r} cannot be read: {data!r}",
                code="folder_missing",
                fix=(f"create the folder {folder!r} on the server or remove it from the mailbox's folders"),
            )
        raw = data[0] if isinstance(data[0], bytes) else b""
        values = {k.decode(): int(v) for k, v in _STATUS_ITEM.findall(raw)}
        return FolderStatus(
            uidvalidity=values["UIDVALIDITY"],
            uidnext=values.get("UIDNEXT", 0),
            messages=values.get("MESSAGES", 0),
            highest_modseq=values.get("HIGHESTMODSEQ"),
        )

    def new_uids(self, folder: str, last_uid: int, *, changed_since: int | None = None) -> list[int]:
        """UIDs above ``last_uid`` in ``folder`` (opened read-only), ascending.

        :param changed_since: a stored HIGHESTMODSEQ; with CONDSTORE only messages whose mod-sequence is
            higher are searched (new messages always are), without it the plain UID range is used.
        """
        self._examine(folder)
        criteria = [f"UID {last_uid + 1}:*"]
        if changed_since is not None and self.condstore:
            criteria.append(f"MODSEQ {changed_since + 1}")  # MODSEQ n matches mod-sequences >= n
        typ, data = self._run("uid", "SEARCH", *criteria)
        if typ != "OK":
            raise MailError(f"IMAP UID SEARCH failed in {folder!r}: {data!r}", code="protocol")
        found: list[int] = []
        for chunk in data:
            if isinstance(chunk, bytes):
                # ``(MODSEQ n)`` trails the result when the search used MODSEQ
                found.extend(int(tok) for tok in chunk.split(b"(")[0].split() if tok.isdigit())
        return sorted(uid for uid in set(found) if uid > last_uid)

    def fetch(self, folder: str, uids: Sequence[int]) -> Iterator[tuple[int, bytes | UnreadableMessage]]:
        """Yield ``(uid, raw message)`` for ``uids`` with ``BODY.PEEK[]`` (no ``\\Seen`` set), in batches.

        A batch the server refuses, or during which it drops the connection (Dovecot does so on a corrupt
        Maildir file), is fetched again message by message after signing in again; a message the server still
        cannot deliver (refused, or the connection dropped twice on it) is yielded as ``(uid,
        UnreadableMessage)`` with the server's answer, so the caller can quarantine it and move on. A message
        the server no longer has (expunged meanwhile) is skipped.
        """
        self._examine(folder)
        for start in range(0, len(uids), FETCH_BATCH):
            chunk = uids[start : start + FETCH_BATCH]
            try:
                typ, data = self._run("uid", "FETCH", _uid_set(chunk), "(UID BODY.PEEK[])")
            except MailError as exc:
                self._reopen(folder, exc)
                typ, data = "NO", [str(exc).encode()]
            if typ == "OK":
                yield from sorted(_fetched(data))
                continue
            for uid in chunk:
                yield from self._fetch_one(folder, uid)

    def _fetch_one(self, folder: str, uid: int) -> Iterator[tuple[int, bytes | UnreadableMessage]]:
        for attempt in (1, 2):
            try:
                typ, data = self._run("uid", "FETCH", str(uid), "(UID BODY.PEEK[])")
            except MailError as exc:
                self._reopen(folder, exc)
                if attempt == 2:
                    reason = f"the IMAP server drops the connection when asked for UID {uid} in {folder!r}: {exc}"
                    yield uid, UnreadableMessage(reason)
                continue
            found = _fetched(data) if typ == "OK" else []
            if found:
                yield found[0]
            elif typ != "OK":
                yield uid, UnreadableMessage(f"the IMAP server cannot deliver UID {uid} in {folder!r}: {data!r}")
            return

    def _reopen(self, folder: str, cause: MailError) -> None:
        """Sign in again after the server dropped the connection; re-raise ``cause`` when that is impossible."""
        if cause.code != "connection_failed" or self._reconnect is None:
            raise cause
        with suppress(OSError):
            self.client.shutdown()
        self.client = self._reconnect()
        self._selected = None
        self._examine(folder)

    def search_header(self, folder: str, name: str, value: str) -> list[int]:
        """UIDs of messages in ``folder`` whose header ``name`` contains ``value``."""
        self._examine(folder)
        typ, data = self._run("uid", "SEARCH", "HEADER", name, _quote(value))
        if typ != "OK":
            return []
        return [int(tok) for chunk in data if isinstance(chunk, bytes) for tok in chunk.split()]

    def append(self, folder: str, raw: bytes, flags: str = "(\\Seen)") -> None:
        """Store ``raw`` in ``folder`` (creating the folder when missing), e.g. a copy in Sent."""
        typ, _ = self._run("append", _quote(folder), flags, None, raw)
        if typ != "OK":
            self._run("create", _quote(folder))
            typ, data = self._run("append", _quote(folder), flags, None, raw)
            if typ != "OK":
                raise MailError(f"IMAP APPEND to {folder!r} failed: {data!r}", code="protocol")

    def _examine(self, folder: str) -> None:
        if self._selected == folder:
            return
        typ, data = self._run("select", _quote(folder), True)
        if typ != "OK":
            raise MailError(f"IMAP folder {folder!r} cannot be opened: {data!r}", code="folder_missing")
        self._selected = folder

    def _run(self, command: str, *args: Any) -> tuple[str, list[Any]]:
        self.commands += 1
        try:
            typ, data = getattr(self.client, command)(*args)
        except imaplib.IMAP4.abort as exc:
            raise MailError(f"IMAP connection lost during {command.upper()}: {exc}", code="connection_failed") from exc
        except imaplib.IMAP4.error as exc:
            return "NO", [str(exc).encode()]
        return str(typ), list(data)


class Pop3Session:
    """A signed-in POP3 connection (see :meth:`MailHook.pop3`)."""

    def __init__(self, client: poplib.POP3) -> None:
        self.client = client

    def uidl(self) -> dict[int, str]:
        """Message number -> UIDL (RFC 1939): the persistent id the client must remember."""
        _, lines, _ = self.client.uidl()
        result = {}
        for line in lines:
            number, _, uid = line.decode("ascii", "replace").partition(" ")
            result[int(number)] = uid.strip()
        return result

    def retrieve(self, number: int) -> bytes:
        """The raw message ``number`` (``RETR``), dot-stuffing undone, line endings as the server sent them.

        Lines of any length are read (RFC 1939 sets no limit; ``poplib.retr`` stops at 2,048 bytes).

        :raises UnreadableMessage: the server refused ``RETR`` (the session stays usable), or the message is
            larger than :data:`MAX_MESSAGE_BYTES` (read to its end, kept cut).
        :raises MailError: ``connection_failed`` when the connection broke mid-message.
        """
        client: Any = self.client  # poplib's own command/response primitives, as its retr() uses them
        try:
            client._putcmd(f"RETR {number}")
            client._getresp()
        except poplib.error_proto as exc:
            raise UnreadableMessage(f"the POP3 server refused RETR {number}: {exc}") from exc
        except OSError as exc:
            raise MailError(f"POP3 connection lost during RETR {number}: {exc}", code="connection_failed") from exc
        pieces: list[bytes] = []
        size, line_start, cut = 0, True, False
        while True:
            try:
                piece = self.client.file.readline(_POP3_PIECE)
            except OSError as exc:
                raise MailError(f"POP3 connection lost during RETR {number}: {exc}", code="connection_failed") from exc
            if not piece:
                raise MailError(f"POP3 connection closed during RETR {number}", code="connection_failed")
            if line_start:
                if piece in (b".\r\n", b".\n"):
                    break
                if piece.startswith(b".."):
                    piece = piece[1:]
            line_start = piece.endswith(b"\n")
            if size + len(piece) > MAX_MESSAGE_BYTES:
                cut = True
            else:
                pieces.append(piece)
                size += len(piece)
        raw = b"".join(pieces)
        if cut:
            raise UnreadableMessage(f"message {number} is larger than {MAX_MESSAGE_BYTES:,} bytes", raw)
        return raw

    def delete(self, number: int) -> None:
        """Mark ``number`` for deletion; the server deletes it at QUIT."""
        self.client.dele(number)


class MailHook(BaseHook):
    """IMAP, POP3 and SMTP access with the credentials of one email server profile.

    :param mail_conn_id: the profile's Airflow connection (default ``mail_default``).
    :param credentials_conn_id: optional per-mailbox connection whose login/password replace the profile's.
    """

    conn_name_attr = "mail_conn_id"
    default_conn_name = "mail_default"
    conn_type = "dynamics_mail"
    hook_name = "Mail server (IMAP/POP3/SMTP)"

    def __init__(self, mail_conn_id: str | None = None, credentials_conn_id: str | None = None) -> None:
        super().__init__()
        self.mail_conn_id = mail_conn_id or self.default_conn_name
        self.credentials_conn_id = credentials_conn_id
        self._settings: dict[str, Any] | None = None

    @property
    def settings(self) -> dict[str, Any]:
        """Host, ports, TLS switches and the login of this hook (credentials override applied)."""
        if self._settings is None:
            conn = self.get_connection(self.mail_conn_id)
            extra = conn.extra_dejson
            login, password = conn.login, conn.password
            if self.credentials_conn_id:
                own = self.get_connection(self.credentials_conn_id)
                login, password = own.login, own.password
            self._settings = {
                "host": conn.host or "127.0.0.1",
                "login": login or "",
                "password": password or "",
                # the connection form stores empty fields as null: "or" falls back to the protocol's default
                "imap_port": int(extra.get("imap_port") or (993 if extra.get("imap_ssl") else 143)),
                "pop3_port": int(extra.get("pop3_port") or (995 if extra.get("pop3_ssl") else 110)),
                "smtp_port": int(extra.get("smtp_port") or (465 if extra.get("smtp_ssl") else 25)),
                "smtp_host": extra.get("smtp_host") or conn.host or "127.0.0.1",
                "imap_ssl": bool(extra.get("imap_ssl", False)),
                "pop3_ssl": bool(extra.get("pop3_ssl", False)),
                "smtp_ssl": bool(extra.get("smtp_ssl", False)),
                "smtp_starttls": bool(extra.get("smtp_starttls", False)),
                "timeout": float(extra.get("timeout") or 60),
            }
        return self._settings

    def test_connection(self) -> tuple[bool, str]:
        """The Connections form's "Test" button: sign in over IMAP and POP3 and reach the SMTP server.

        A server profile may offer IMAP or POP3 (or both) for incoming mail; the test passes when at least one of
        them accepts the login and the SMTP server answers.

        :return: ``(True, what was proven)`` or ``(False, each protocol's error with its fix)``; never raises.
        """
        proven: list[str] = []
        problems: list[str] = []
        try:
            with self.imap() as session:
                proven.append(f"IMAP login ok (INBOX: {session.status('INBOX').messages} messages)")
        except MailError as exc:
            problems.append(f"{exc} ({exc.fix})")
        try:
            with self.pop3() as pop3:
                proven.append(f"POP3 login ok ({len(pop3.uidl())} messages)")
        except MailError as exc:
            problems.append(f"{exc} ({exc.fix})")
        s = self.settings
        try:  # the same TLS as sending: a server whose certificate sending would refuse fails the test too
            with self._smtp() as client:
                client.noop()
            proven.append(f"SMTP server {s['smtp_host']}:{s['smtp_port']} answers")
        except MailError as exc:
            problems.append(str(exc))
        incoming_ok = any(p.startswith(("IMAP", "POP3")) for p in proven)
        smtp_ok = any(p.startswith("SMTP") for p in proven)
        if incoming_ok and smtp_ok:
            return True, "; ".join(proven)
        return False, "; ".join(problems)

    def _auth_error(self, protocol: str, detail: object) -> MailError:
        where = f"connection {self.credentials_conn_id or self.mail_conn_id!r}"
        return MailError(
            f"{protocol} login as {self.settings['login']!r} refused by {self.settings['host']}: {detail}",
            code="auth_failed",
            permanent=True,
            fix=f"correct the login/password in the Airflow {where}; the mailbox recovers on its next retest",
        )

    def _connect_error(self, protocol: str, port: int, exc: Exception) -> MailError:
        host = self.settings["smtp_host"] if protocol == "SMTP" else self.settings["host"]
        if isinstance(exc, ssl.SSLCertVerificationError):
            return MailError(
                f"{protocol} server {host}:{port}: its TLS certificate does not verify: {exc.verify_message}",
                code="connection_failed",
                fix=f"use the host name the certificate names in connection {self.mail_conn_id!r}, or trust the "
                "certificate's CA on the workers (system store or SSL_CERT_FILE)",
            )
        return MailError(
            f"{protocol} server {host}:{port} unreachable: {exc}",
            code="connection_failed",
            fix=f"check that the {protocol} server is up and host/port in connection {self.mail_conn_id!r}",
        )

    @contextmanager
    def imap(self) -> Iterator[ImapSession]:
        """A signed-in IMAP session, logged out on exit; it can sign in again (see :meth:`ImapSession.fetch`).

        :raises MailError: ``connection_failed`` (transient) or ``auth_failed`` (permanent).
        """
        session = ImapSession(self._imap_login(), reconnect=self._imap_login)
        try:
            yield session
        finally:
            try:
                session.client.logout()
            except (OSError, imaplib.IMAP4.error):
                session.client.shutdown()

    def _imap_login(self) -> imaplib.IMAP4:
        s = self.settings
        try:
            if s["imap_ssl"]:
                client: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                    s["host"], s["imap_port"], ssl_context=ssl.create_default_context(), timeout=s["timeout"]
                )
            else:
                client = imaplib.IMAP4(s["host"], s["imap_port"], timeout=s["timeout"])
        except (OSError, imaplib.IMAP4.error) as exc:
            raise self._connect_error("IMAP", s["imap_port"], exc) from exc
        try:
            client.login(s["login"], s["password"])
        except imaplib.IMAP4.error as exc:
            client.shutdown()
            raise self._auth_error("IMAP", exc) from exc
        return client

    @contextmanager
    def pop3(self) -> Iterator[Pop3Session]:
        """A signed-in POP3 session; ``QUIT`` on exit (which applies deletions).

        :raises MailError: ``connection_failed`` (transient) or ``auth_failed`` (permanent).
        """
        s = self.settings
        try:
            if s["pop3_ssl"]:
                client: poplib.POP3 = poplib.POP3_SSL(
                    s["host"], s["pop3_port"], context=ssl.create_default_context(), timeout=s["timeout"]
                )
            else:
                client = poplib.POP3(s["host"], s["pop3_port"], timeout=s["timeout"])
        except (OSError, poplib.error_proto) as exc:
            raise self._connect_error("POP3", s["pop3_port"], exc) from exc
        try:
            try:
                client.user(s["login"])
                client.pass_(s["password"])
            except poplib.error_proto as exc:
                raise self._auth_error("POP3", exc) from exc
            yield Pop3Session(client)
            client.quit()
        except BaseException:
            client.close()
            raise

    def send(
        self, raw: bytes, sender: str, recipients: Sequence[str], on_accepted: Callable[[], None] | None = None
    ) -> None:
        """Send one message over SMTP (one transaction; the server's 250 means it took responsibility).

        :param on_accepted: called as soon as the server accepted the message, before ``QUIT``, so the
            caller can record the delivery with the least possible delay.

        :raises MailError: ``auth_failed`` (permanent), ``connection_failed`` or ``smtp_refused`` (the server
            refused the sender or every recipient; permanent for this message).
        """
        s = self.settings
        with self._smtp() as smtp:
            try:
                if s["login"] and smtp.has_extn("auth"):
                    try:
                        smtp.login(s["login"], s["password"])
                    except smtplib.SMTPAuthenticationError as exc:
                        raise self._auth_error("SMTP", exc) from exc
                smtp.sendmail(sender, list(recipients), raw)
                if on_accepted is not None:
                    on_accepted()
            except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
                raise MailError(
                    f"SMTP server refused the message: {exc}",
                    code="smtp_refused",
                    permanent=True,
                    fix="check the sender and recipient addresses of the email",
                ) from exc
            except (OSError, smtplib.SMTPException) as exc:
                raise self._connect_error("SMTP", s["smtp_port"], exc) from exc

    @contextmanager
    def _smtp(self) -> Iterator[smtplib.SMTP]:
        """A connected SMTP client: implicit TLS (``smtp_ssl``) or STARTTLS (``smtp_starttls``), both verifying
        the server's certificate against the system's trust store (``SSL_CERT_FILE`` overrides it); ``QUIT`` on exit.

        :raises MailError: ``connection_failed``, including a certificate that does not verify.
        """
        s = self.settings
        try:
            if s["smtp_ssl"]:
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    s["smtp_host"], s["smtp_port"], timeout=s["timeout"], context=ssl.create_default_context()
                )
            else:
                smtp = smtplib.SMTP(s["smtp_host"], s["smtp_port"], timeout=s["timeout"])
        except OSError as exc:
            raise self._connect_error("SMTP", s["smtp_port"], exc) from exc
        try:
            if s["smtp_starttls"]:
                try:
                    smtp.starttls(context=ssl.create_default_context())
                except (OSError, smtplib.SMTPException) as exc:
                    raise self._connect_error("SMTP", s["smtp_port"], exc) from exc
            yield smtp
        finally:
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                smtp.close()


def _fetched(data: list[Any]) -> list[tuple[int, bytes | UnreadableMessage]]:
    found: list[tuple[int, bytes | UnreadableMessage]] = []
    for item in data:
        if isinstance(item, tuple) and len(item) == 2:
            match = _FETCH_UID.search(item[0])
            if match:
                found.append((int(match.group(1)), bytes(item[1])))
    return found


def _quote(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _uid_set(uids: Sequence[int]) -> str:
    """Compact ``1:5,8,10:12`` form of ascending UIDs (keeps FETCH command lines short)."""
    parts: list[str] = []
    start = prev = uids[0]
    for uid in uids[1:]:
        if uid == prev + 1:
            prev = uid
            continue
        parts.append(f"{start}:{prev}" if start != prev else str(start))
        start = prev = uid
    parts.append(f"{start}:{prev}" if start != prev else str(start))
    return ",".join(parts)
