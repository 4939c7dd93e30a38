"""Start the project's mail counterparts: Dovecot (IMAP + POP3) and an SMTP capture server, on loopback.

Used by the tests (a session fixture), the demo and the mailbox benchmark::

    from mailserver.run import MailServer

    with MailServer() as mail:                     # free high ports, a private run folder
        mail.add_user("jo@cronus.test", "secret")
        mail.deliver("jo@cronus.test", [raw_bytes])   # straight into the user's Maildir
        ... IMAP at mail.host:mail.imap_port, POP3 at mail.pop3_port, SMTP at mail.smtp_port
        mail.sent_messages()                       # what the SMTP server received

or in the foreground: ``python include/mailserver/run.py serve --dir .state/mailserver``.

Dovecot comes from the Debian packages dovecot-imapd and dovecot-pop3d
(``include/scripts/install_system_deps.sh`` installs them) and runs with the project's own configuration
(``dovecot.conf.template``): passwd-file logins with plain passwords, Maildir storage, no TLS. Two rules of
Dovecot shape this file: its login processes refuse to run as root, and mail must belong to a non-root uid.
As root the server therefore uses the Debian users ``dovenull``/``dovecot`` and the mail user ``vmail``
(created by the install script); as any other user everything runs as that user. The mail user must be
able to reach the run folder, which is why the default run folder is a fresh ``0711`` temporary folder.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import pwd
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

HERE = Path(__file__).resolve().parent
INCLUDE_DIR = HERE.parent

# The capability list Dovecot 2.3 announces after login, minus CONDSTORE and QRESYNC: a stand-in for servers
# without them (Microsoft 365, Yahoo), so the plain-UID path of the client is exercised against a real server.
_CAPABILITY_WITHOUT_CONDSTORE = (
    "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES THREAD=REFS "
    "THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN NAMESPACE UIDPLUS "
    "LIST-EXTENDED I18NLEVEL=1 ESEARCH ESORT SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE "
    "SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW STATUS=SIZE SAVEDATE LITERAL+ NOTIFY"
)


@dataclass(frozen=True)
class CapturedMessage:
    """One message the SMTP server accepted: envelope and the bytes as received."""

    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    path: Path


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def dovecot_binary() -> str:
    """Return the path of the ``dovecot`` binary.

    :raises RuntimeError: when Dovecot is not installed, naming the install script.
    """
    found = shutil.which("dovecot") or ("/usr/sbin/dovecot" if Path("/usr/sbin/dovecot").exists() else None)
    if not found:
        raise RuntimeError(
            "Dovecot is not installed: run include/scripts/install_system_deps.sh "
            "(apt-get install -y dovecot-imapd dovecot-pop3d isync)"
        )
    return found


def _wait_for_port(port: int, process: subprocess.Popen[bytes], what: str, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            detail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{what} exited with code {process.returncode} while starting:\n{detail}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f} s (log: {log})")


class MailServer:
    """Dovecot (IMAP, POP3) plus the SMTP capture server, started as child processes.

    :param run_dir: folder for configuration, logins, Maildirs, logs and captured SMTP mail. Default: a new
        temporary folder (mode ``0711`` so the mail user can reach its Maildirs), removed on :meth:`stop`.
    :param imap_port: IMAP port on 127.0.0.1 (0 = a free port).
    :param pop3_port: POP3 port (0 = a free port).
    :param smtp_port: SMTP port (0 = a free port).
    :param condstore: ``False`` makes Dovecot announce neither CONDSTORE nor QRESYNC.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        run_dir: Path | str | None = None,
        *,
        imap_port: int = 0,
        pop3_port: int = 0,
        smtp_port: int = 0,
        condstore: bool = True,
    ) -> None:
        self._owns_dir = run_dir is None
        self.run_dir = Path(run_dir) if run_dir else Path(tempfile.mkdtemp(prefix="dynamics-mail-"))
        self.imap_port = imap_port or free_port()
        self.pop3_port = pop3_port or free_port()
        self.smtp_port = smtp_port or free_port()
        self.condstore = condstore
        self._dovecot: subprocess.Popen[bytes] | None = None
        self._smtp: subprocess.Popen[bytes] | None = None
        self._counter = itertools.count()
        if os.geteuid() == 0:
            try:
                mail_user = pwd.getpwnam("vmail")
            except KeyError as exc:
                raise RuntimeError(
                    "Dovecot needs a non-root mail user: run include/scripts/install_system_deps.sh "
                    "(creates the system user vmail)"
                ) from exc
            self.mail_uid, self.mail_gid = mail_user.pw_uid, mail_user.pw_gid
            self.login_user, self.internal_user = "dovenull", "dovecot"
        else:
            me = pwd.getpwuid(os.geteuid())
            self.mail_uid, self.mail_gid = me.pw_uid, me.pw_gid
            self.login_user = self.internal_user = me.pw_name

    # -- lifecycle -------------------------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.run_dir / "dovecot.conf"

    @property
    def outbox_dir(self) -> Path:
        """Folder where the SMTP server stores what it receives."""
        return self.run_dir / "smtp"

    def start(self) -> MailServer:
        """Render the configuration and start both servers; returns once both accept connections.

        :raises RuntimeError: when Dovecot is missing or a server does not come up (with its log tail).
        """
        binary = dovecot_binary()
        if self._owns_dir:
            self.run_dir.chmod(0o711)
        for sub in ("base", "state", "mail", "users"):
            (self.run_dir / sub).mkdir(parents=True, exist_ok=True)
        self._chown(self.run_dir / "mail")
        template = string.Template((HERE / "dovecot.conf.template").read_text())
        capability = "" if self.condstore else f"imap_capability = {_CAPABILITY_WITHOUT_CONDSTORE}"
        self.config_path.write_text(
            template.substitute(
                run_dir=self.run_dir,
                imap_port=self.imap_port,
                pop3_port=self.pop3_port,
                login_user=self.login_user,
                internal_user=self.internal_user,
                mail_uid=self.mail_uid,
                mail_gid=self.mail_gid,
                imap_capability=capability,
            )
        )
        log = self.run_dir / "dovecot.log"
        self._dovecot = subprocess.Popen(
            [binary, "-F", "-c", str(self.config_path)],
            stdout=subprocess.DEVNULL,
            stderr=log.open("ab"),
            start_new_session=True,
        )
        smtp_log = self.run_dir / "smtp.log"
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(INCLUDE_DIR), os.environ.get("PYTHONPATH", "")]))
        self._smtp = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mailserver.smtp_capture",
                "--port",
                str(self.smtp_port),
                "--dir",
                str(self.outbox_dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=smtp_log.open("ab"),
            env=env,
            start_new_session=True,
        )
        try:
            _wait_for_port(self.imap_port, self._dovecot, "dovecot (IMAP)", log, 30)
            _wait_for_port(self.pop3_port, self._dovecot, "dovecot (POP3)", log, 30)
            _wait_for_port(self.smtp_port, self._smtp, "SMTP capture server", smtp_log, 30)
        except RuntimeError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop both servers (SIGTERM, then SIGKILL after 10 s) and remove a temporary run folder."""
        for process in (self._dovecot, self._smtp):
            if process is None or process.poll() is not None:
                continue
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self._dovecot = self._smtp = None
        if self._owns_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self) -> MailServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- mailboxes -------------------------------------------------------------------------------------------
    def add_user(self, login: str, password: str) -> None:
        """Create (or change the password of) the login ``login``; Dovecot reads it at the next login."""
        if "/" in login or login.startswith("."):
            raise ValueError(f"not a usable login: {login!r}")
        # Dovecot lower-cases logins before the lookup (auth_username_format = %Lu)
        path = self.run_dir / "users" / login.lower()
        previous = path.stat().st_mtime if path.exists() else 0.0
        tmp = path.with_suffix(".tmp")
        tmp.write_text(f"{login.lower()}:{{PLAIN}}{password}\n")
        os.replace(tmp, path)
        # Dovecot re-reads a passwd-file only when its mtime (seconds) or size changed
        stamp = max(time.time(), previous + 1)
        os.utime(path, (stamp, stamp))
        for sub in ("cur", "new", "tmp"):
            (self._maildir(login, "INBOX") / sub).mkdir(parents=True, exist_ok=True)
        self._chown(self.run_dir / "mail" / login.lower())

    def deliver(self, login: str, messages: Iterable[bytes], folder: str = "INBOX") -> int:
        """Put raw RFC 5322 messages into a folder of ``login`` the way an MTA does (Maildir ``new/``).

        :param login: a login created with :meth:`add_user`.
        :param messages: raw messages (bytes, CRLF or LF line ends).
        :param folder: ``INBOX`` or a sub-folder name (created when missing).
        :return: the number of messages delivered.
        """
        maildir = self._maildir(login, folder)
        for sub in ("cur", "new", "tmp"):
            (maildir / sub).mkdir(parents=True, exist_ok=True)
        if folder != "INBOX":
            (maildir / "maildirfolder").touch()
        count = 0
        stamp = int(time.time())
        for raw in messages:
            name = f"{stamp}.M{next(self._counter)}P{os.getpid()}.dynamics"
            tmp = maildir / "tmp" / name
            tmp.write_bytes(raw)
            os.replace(tmp, maildir / "new" / name)
            count += 1
        self._chown(self.run_dir / "mail" / login.lower())
        return count

    def corrupt(self, login: str, number: int, folder: str = "INBOX") -> None:
        """Make the ``number``-th delivered message (1-based) unreadable the way a damaged Maildir is: its file
        name claims a size (``,S=``) the file does not have, and Dovecot drops the connection on every
        ``FETCH`` of it ("Internal error occurred")."""
        maildir = self._maildir(login, folder)
        files = sorted(p for sub in ("new", "cur") for p in (maildir / sub).iterdir())
        target = files[number - 1]
        target.rename(target.with_name(target.name.split(":")[0] + f",S={target.stat().st_size + 99_999}"))

    def set_uidvalidity(self, login: str, value: int, folder: str = "INBOX") -> None:
        """Give ``folder`` a new UIDVALIDITY (what a server migration or a rebuilt index does to a client).

        :raises subprocess.CalledProcessError: when doveadm refuses.
        """
        subprocess.run(
            [
                self._doveadm(),
                "-c",
                str(self.config_path),
                "mailbox",
                "update",
                "-u",
                login,
                "--uid-validity",
                str(value),
                folder,
            ],
            check=True,
            capture_output=True,
        )

    def sent_messages(self) -> list[CapturedMessage]:
        """Every message the SMTP server accepted, oldest first."""
        found = []
        for meta_path in sorted(self.outbox_dir.glob("*.json")):
            meta = json.loads(meta_path.read_text())
            found.append(
                CapturedMessage(
                    mail_from=meta["mail_from"],
                    rcpt_tos=meta["rcpt_tos"],
                    raw=meta_path.with_suffix(".eml").read_bytes(),
                    path=meta_path.with_suffix(".eml"),
                )
            )
        return found

    def _maildir(self, login: str, folder: str) -> Path:
        root = self.run_dir / "mail" / login.lower() / "Maildir"
        return root if folder == "INBOX" else root / f".{folder}"

    def _doveadm(self) -> str:
        return shutil.which("doveadm") or "/usr/bin/doveadm"

    def _chown(self, path: Path) -> None:
        if os.geteuid() != 0:
            return
        os.chown(path, self.mail_uid, self.mail_gid)
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                os.chown(os.path.join(root, name), self.mail_uid, self.mail_gid)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run Dovecot (IMAP, POP3) and the SMTP capture server.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run in the foreground until Ctrl-C")
    serve.add_argument("--dir", type=Path, default=None, help="run folder (default: a temporary folder)")
    serve.add_argument("--imap-port", type=int, default=int(os.environ.get("MAIL_IMAP_PORT", "10143")))
    serve.add_argument("--pop3-port", type=int, default=int(os.environ.get("MAIL_POP3_PORT", "10110")))
    serve.add_argument("--smtp-port", type=int, default=int(os.environ.get("MAIL_SMTP_PORT", "10025")))
    serve.add_argument("--user", action="append", default=[], metavar="LOGIN:PASSWORD")
    args = parser.parse_args(argv)
    server = MailServer(args.dir, imap_port=args.imap_port, pop3_port=args.pop3_port, smtp_port=args.smtp_port)
    with server:
        for entry in args.user:
            login, _, password = entry.partition(":")
            server.add_user(login, password)
        print(
            f"mail listening on 127.0.0.1: IMAP {server.imap_port}, POP3 {server.pop3_port}, "
            f"SMTP {server.smtp_port} (run folder {server.run_dir})",
            flush=True,
        )
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        signal.sigwait({signal.SIGINT, signal.SIGTERM})


if __name__ == "__main__":
    sys.path.insert(0, str(INCLUDE_DIR))
    main()
