"""Mailbox benchmark (``make bench``): prints two figures the issue asks for.

1. Initial fetch of 10,000 messages from Dovecot: the package's IMAP path (``STATUS``, ``UID SEARCH``,
   ``UID FETCH (BODY.PEEK[])`` in batches, plus parsing every message as the cycle does before the incoming
   filter: ``message.parse``, the header section read with ``policy.default`` semantics) side by side with
   ``mbsync`` (isync, Debian) pulling the same folder into a local Maildir. Target: at most 0.5x mbsync's
   time (issue 13). The body of a message is parsed only when it is tracked, next to a Dataverse write that
   costs far more; its parse time per message is printed on its own.
2. The cost of one cycle over 1,000 idle mailboxes (already synchronized, nothing new): IMAP commands per
   mailbox after login (target: one round trip, ``STATUS``) and wall time.

Everything is started here: Dovecot and SMTP (``include/mailserver``) and an embedded Postgres under a
temporary ``DYNAMICS_STATE_DIR``. Usage: ``python include/scripts/bench_mailbox.py [--messages N] [--mailboxes M]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

INCLUDE = Path(__file__).resolve().parents[1]
if str(INCLUDE) not in sys.path:
    sys.path.insert(0, str(INCLUDE))

from mailserver.run import MailServer  # noqa: E402


def synthetic_message(n: int) -> bytes:
    """A realistic ~3 KB multipart message (text + HTML alternative)."""
    text = f"Hello,\r\n\r\nthis is message {n} about order SO-{100000 + n}.\r\n" + ("Lorem ipsum dolor sit amet. " * 40)
    return (
        f"From: Customer {n % 97} <customer{n % 97}@example.com>\r\nTo: bench@cronus.test\r\n"
        f"Subject: Order update {n}\r\nDate: Mon, 16 Nov 2026 09:00:00 +0000\r\nMessage-ID: <bench-{n}@example.com>\r\n"
        f'MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="=_b{n}"\r\n\r\n'
        f"--=_b{n}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n"
        f"--=_b{n}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>{text}</p>\r\n--=_b{n}--\r\n"
    ).encode()


def bench_initial_fetch(server: MailServer, count: int) -> None:
    from dynamics_jobqueue.hooks.mail import MailHook
    from dynamics_jobqueue.mailbox.message import parse

    login = "bench@cronus.test"
    server.add_user(login, "bench")
    print(f">> delivering {count:,} messages into {login}'s INBOX", flush=True)
    server.deliver(login, (synthetic_message(n) for n in range(count)))
    os.environ["AIRFLOW_CONN_MAIL_BENCH"] = json.dumps(
        {"conn_type": "dynamics_mail", "host": server.host, "login": login, "password": "bench",
         "extra": {"imap_port": server.imap_port, "timeout": 300}}
    )  # fmt: skip
    hook = MailHook("mail_bench")
    with hook.imap() as session:  # let Dovecot build its index first, so neither contender pays for it
        session.status("INBOX")
        session.new_uids("INBOX", 0)

    def ours() -> tuple[float, int]:
        started = time.perf_counter()
        size = 0
        with hook.imap() as session:
            session.status("INBOX")
            uids = session.new_uids("INBOX", 0)
            for _, raw in session.fetch("INBOX", uids):
                if isinstance(raw, bytes):  # an unreadable message would be quarantined as it is
                    parse(raw)
                    size += len(raw)
        return time.perf_counter() - started, size

    def mbsync() -> float:
        folder = Path(tempfile.mkdtemp(prefix="mbsync-"))
        config = folder / "mbsyncrc"
        (folder / "mail").mkdir()
        # FSync off: the package does not write messages to disk either, so both sides measure the fetch
        config.write_text(
            "FSync no\n\n"
            f"IMAPAccount bench\nHost {server.host}\nPort {server.imap_port}\nUser {login}\nPass bench\n"
            "SSLType None\nAuthMechs LOGIN\n\n"
            "IMAPStore remote\nAccount bench\n\n"
            f"MaildirStore local\nPath {folder}/mail/\nInbox {folder}/mail/INBOX\n\n"
            f"Channel bench\nFar :remote:\nNear :local:\nPatterns INBOX\nCreate Near\nSync Pull\nSyncState {folder}/\n"
        )
        started = time.perf_counter()
        subprocess.run(["mbsync", "-q", "-c", str(config), "bench"], check=True)
        elapsed = time.perf_counter() - started
        fetched = len(list((folder / "mail" / "INBOX").glob("*/*")))
        shutil.rmtree(folder, ignore_errors=True)
        if fetched != count:
            raise RuntimeError(f"mbsync fetched {fetched} messages, expected {count}")
        return elapsed

    ours_1, size = ours()
    theirs_1 = mbsync()
    ours_2, _ = ours()
    theirs_2 = mbsync()
    best_ours, best_theirs = min(ours_1, ours_2), min(theirs_1, theirs_2)
    print(f"initial fetch of {count:,} messages ({size / 1e6:.1f} MB) from Dovecot, best of 2:")
    print(
        f"  dynamics_jobqueue IMAP (BODY.PEEK[] + message parse): {best_ours:6.2f} s  ({count / best_ours:,.0f} msg/s)"
    )
    print(
        f"  mbsync (isync) into a local Maildir:              {best_theirs:6.2f} s  ({count / best_theirs:,.0f} msg/s)"
    )
    ratio = best_ours / best_theirs
    print(f"  ratio: {ratio:.2f}x mbsync (target: at most 0.5x) -> {'OK' if ratio <= 0.5 else 'MISSED'}")
    sample = [synthetic_message(n) for n in range(min(count, 1_000))]
    started = time.perf_counter()
    for raw in sample:
        parse(raw).content()
    each = (time.perf_counter() - started) / len(sample)
    print(f"  body + attachments parse of a tracked message (policy.default): {each * 1e3:.2f} ms each")


def bench_idle_cycle(server: MailServer, count: int) -> None:
    from dynamics_jobqueue.hooks.state import StateStoreHook
    from dynamics_jobqueue.mailbox import records
    from dynamics_jobqueue.mailbox.cycle import sync_mailboxes
    from dynamics_jobqueue.mailbox.schedule import due_mailboxes

    os.environ["AIRFLOW_CONN_MAIL_IDLE"] = json.dumps(
        {"conn_type": "dynamics_mail", "host": server.host, "extra": {"imap_port": server.imap_port}}
    )
    state = StateStoreHook()
    records.save_profile(state, "Dovecot (bench)", "imap", "mail_idle")
    print(f">> creating {count:,} mailboxes", flush=True)
    ids = []
    for n in range(count):
        login = f"idle{n:04d}@cronus.test"
        server.add_user(login, "idle")
        os.environ[f"AIRFLOW_CONN_MAIL_IDLE_{n:04d}"] = json.dumps(
            {"conn_type": "dynamics_mail", "login": login, "password": "idle"}
        )
        box = records.create_mailbox(
            state, name=login, email_address=login, server_profile="Dovecot (bench)",
            credentials_conn_id=f"mail_idle_{n:04d}", outgoing_method="none",
        )  # fmt: skip
        ids.append(box.mailbox_id)
    sync_mailboxes(ids, state=state, raise_on_error=False)  # first cycle: positions stored
    with state.transaction() as cur:
        cur.execute("UPDATE dynamics.mailbox_workload SET next_sync_at = now() - interval '1 second'")
    due = due_mailboxes(state)
    started = time.perf_counter()
    summaries = sync_mailboxes(due, state=state, raise_on_error=False)
    elapsed = time.perf_counter() - started
    trips = [s.round_trips for s in summaries]
    errors = [e for s in summaries for e in s.errors]
    print(
        f"cycle over {len(due):,} idle mailboxes (nothing new): {elapsed:.1f} s,"
        f" {elapsed / len(due) * 1000:.1f} ms each"
    )
    print(
        f"  IMAP round trips per mailbox after login: min {min(trips)}, max {max(trips)}, "
        f"mean {sum(trips) / len(trips):.2f} (target: 1, the STATUS) -> {'OK' if max(trips) == 1 else 'MISSED'}"
    )
    if errors:
        print(f"  {len(errors)} mailbox error(s), first: {errors[0]}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--mailboxes", type=int, default=1_000)
    args = parser.parse_args(argv)
    if not shutil.which("mbsync"):
        raise SystemExit("mbsync is missing: run include/scripts/install_system_deps.sh")
    state_dir = Path(tempfile.mkdtemp(prefix="bench-mailbox-state-"))
    os.environ["DYNAMICS_STATE_DIR"] = str(state_dir)
    # the embedded state store is opt-in (development only)
    os.environ["AIRFLOW__DYNAMICS_JOBQUEUE__EMBEDDED_STATE_STORE"] = "True"
    os.environ.pop("AIRFLOW_CONN_DYNAMICS_STATE", None)
    try:
        with MailServer() as server:
            bench_initial_fetch(server, args.messages)
            bench_idle_cycle(server, args.mailboxes)
    finally:
        from dynamics_jobqueue.state import embedded

        embedded.stop(state_dir / "pgdata")
        shutil.rmtree(state_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
