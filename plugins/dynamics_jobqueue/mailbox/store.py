"""State-store access shared by the mailbox modules: a hook (one connection per transaction) or an open
connection (a mailbox run keeps one for all its statements; opening a connection costs more than an idle
mailbox's whole IMAP check)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeAlias

import psycopg

from dynamics_jobqueue.mailbox import queries as q

if TYPE_CHECKING:
    from dynamics_jobqueue.hooks.state import StateStoreHook

StateLike: TypeAlias = "StateStoreHook | psycopg.Connection"


@contextmanager
def transaction(state: StateLike) -> Iterator[psycopg.Cursor]:
    """A cursor inside one transaction, committed on normal exit and rolled back on an exception."""
    if isinstance(state, psycopg.Connection):
        with state.transaction(), state.cursor() as cur:
            yield cur
    else:
        with state.transaction() as cur:
            yield cur


def load_delta_link(conn: psycopg.Connection, mailbox_id: int, resource: str) -> str | None:
    """The stored Graph delta link of one mailbox resource (``messages:<folder>``, ``contacts:default`` ...),
    or ``None`` before the first complete round. Commits, so the mailbox run holds no transaction open."""
    row = conn.execute(
        q.DELTA_LINK,
        (mailbox_id, resource),
    ).fetchone()
    conn.commit()
    return str(row[0]) if row else None


def save_delta_link(conn: psycopg.Connection, mailbox_id: int, resource: str, delta_link: str) -> None:
    """Store the delta link a Graph round ended with, as returned (docs/reference/api-contracts.md), and commit."""
    conn.execute(
        q.SAVE_DELTA_LINK,
        (mailbox_id, resource, delta_link),
    )
    conn.commit()
