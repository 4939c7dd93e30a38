"""State-store access shared by the mailbox modules: a hook (one connection per transaction) or an open
connection (a mailbox run keeps one for all its statements; opening a connection costs more than an idle
mailbox's whole IMAP check)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeAlias

import psycopg

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
