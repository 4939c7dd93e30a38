"""What the console reads from and does to the state store, as plain functions over a :class:`StateStoreHook`.

Rows come back as dicts keyed by column name (times are timezone-aware UTC datetimes). Job queue actions call
the posting module (:mod:`dynamics_jobqueue.posting.queue`), un-skip calls the sync module, remap and Test &
Enable call the mailbox module; the statements here are the ones those modules do not offer (see
:mod:`dynamics_jobqueue.console.queries`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.rows import dict_row

from dynamics_jobqueue.console import queries as q

if TYPE_CHECKING:
    from dynamics_jobqueue.hooks.state import StateStoreHook

#: Rows per listing: enough for an operator's screen, bounded so one page never reads a whole table.
LIST_LIMIT = 500


class ConsoleActionError(Exception):
    """An action the state store refuses; the message is meant for the user."""


def _rows(store: StateStoreHook, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    with store.transaction() as cur:
        cur.row_factory = dict_row  # type: ignore[assignment]
        cur.execute(sql, params)
        return list(cur.fetchall())  # type: ignore[arg-type]


# -- job queue -------------------------------------------------------------------------------------------------
def documents_to_handle(store: StateStoreHook, limit: int = LIST_LIMIT) -> list[dict[str, Any]]:
    """Documents whose Job Queue Status is Error, with the reason (the entry's error message)."""
    return _rows(store, q.DOCUMENTS_TO_HANDLE, {"limit": limit})


@dataclass(frozen=True)
class LogFilter:
    """Filters of the Job Queue Log Entries page; ``None`` matches everything. Dates are UTC calendar days."""

    category_code: str | None = None
    status: str | None = None
    user_id: str | None = None
    date_from: date | None = None
    date_to: date | None = None


def log_entries(store: StateStoreHook, filters: LogFilter, limit: int = LIST_LIMIT) -> list[dict[str, Any]]:
    """Job Queue Log Entries matching ``filters``, newest first."""
    return _rows(
        store,
        q.LOG_ENTRIES,
        {
            "category_code": filters.category_code,
            "status": filters.status,
            "user_id": filters.user_id,
            "date_from": filters.date_from,
            "date_to": filters.date_to,
            "limit": limit,
        },
    )


def categories(store: StateStoreHook) -> list[dict[str, Any]]:
    """Job queue categories (code, description)."""
    return _rows(store, q.CATEGORIES, {})


# -- integration sync -----------------------------------------------------------------------------------------
def mappings(store: StateStoreHook) -> list[str]:
    """Names of the table mappings the state store has runs, couplings or errors of."""
    return [row["mapping"] for row in _rows(store, q.MAPPINGS, {})]


def sync_runs(store: StateStoreHook, mapping: str | None, limit: int = 50) -> list[dict[str, Any]]:
    """Recent Integration Synch. Jobs with their Inserted/Modified/Deleted/Unchanged/Skipped/Failed counts."""
    return _rows(store, q.SYNC_RUNS, {"mapping": mapping, "limit": limit})


def sync_errors(store: StateStoreHook, mapping: str | None, limit: int = LIST_LIMIT) -> list[dict[str, Any]]:
    """The current error of each failing record, with source and destination ids."""
    return _rows(store, q.SYNC_ERRORS, {"mapping": mapping, "limit": limit})


def couplings(
    store: StateStoreHook, mapping: str | None, search: str | None, limit: int = LIST_LIMIT
) -> list[dict[str, Any]]:
    """Couplings of ``mapping`` whose ids or business keys contain ``search`` (case-insensitive)."""
    return _rows(store, q.COUPLINGS, {"mapping": mapping, "search": search or None, "limit": limit})


def _record_action(store: StateStoreHook, sql: str, mapping: str, direction: str, source_id: str) -> None:
    with store.transaction() as cur:
        cur.execute(sql, {"mapping": mapping, "direction": direction, "source_id": source_id})
        if not cur.rowcount:
            raise ConsoleActionError(f"No sync error of {mapping} ({direction}) for record {source_id}.")


def retry_record(store: StateStoreHook, mapping: str, direction: str, source_id: str) -> None:
    """Retry: fresh attempts for a failing record (Skipped or not); the next run of the mapping retries it.

    :raises ConsoleActionError: when the record has no current error.
    """
    _record_action(store, q.RETRY_RECORD, mapping, direction, source_id)


def skip_record(store: StateStoreHook, mapping: str, direction: str, source_id: str) -> None:
    """Skip: later runs leave the failing record alone until it is un-skipped.

    :raises ConsoleActionError: when the record has no current error.
    """
    _record_action(store, q.SKIP_RECORD, mapping, direction, source_id)


def uncouple(store: StateStoreHook, mapping: str, erp_id: str) -> str:
    """Uncouple an ERP record from its CRM record.

    :return: the CRM id it was coupled to.
    :raises ConsoleActionError: when the ERP record is not coupled in ``mapping``.
    """
    with store.transaction() as cur:
        cur.execute(q.UNCOUPLE, {"mapping": mapping, "erp_id": erp_id})
        row = cur.fetchone()
    if row is None:
        raise ConsoleActionError(f"{mapping}: ERP record {erp_id} is not coupled.")
    return str(row[0])


def couple(store: StateStoreHook, mapping: str, erp_id: str, crm_id: str, erp_key: str | None = None) -> None:
    """Couple an ERP record to a CRM record (one coupling per record on each side, as the reference).

    :raises ConsoleActionError: when either record is already coupled in ``mapping``.
    """
    try:
        with store.transaction() as cur:
            cur.execute(q.COUPLE, {"mapping": mapping, "erp_id": erp_id, "crm_id": crm_id, "erp_key": erp_key})
    except psycopg.errors.UniqueViolation as exc:
        raise ConsoleActionError(
            f"{mapping}: ERP record {erp_id} or CRM record {crm_id} is already coupled; uncouple it first."
        ) from exc


# -- mailboxes ------------------------------------------------------------------------------------------------
def mailboxes(store: StateStoreHook) -> list[dict[str, Any]]:
    """Mailboxes, each with ``workloads``: status, last error and its fix, next sync, items processed."""
    boxes = _rows(store, q.MAILBOXES, {})
    workloads = _rows(store, q.WORKLOADS, {"mailbox_id": None})
    by_mailbox: dict[int, list[dict[str, Any]]] = {}
    for workload in workloads:
        by_mailbox.setdefault(workload["mailbox_id"], []).append(workload)
    for box in boxes:
        box["workloads"] = by_mailbox.get(box["mailbox_id"], [])
    return boxes


def recent_messages(store: StateStoreHook, mailbox_id: int, limit: int = 20) -> list[dict[str, Any]]:
    """The last messages a mailbox handled: subject, outcome (tracked, filtered, quarantined) and reason."""
    return _rows(store, q.RECENT_MESSAGES, {"mailbox_id": mailbox_id, "limit": limit})


def sync_now(store: StateStoreHook, mailbox_id: int) -> int:
    """Make every workload of the mailbox due now; the next mailbox cycle runs it.

    :return: the number of workloads made due.
    :raises ConsoleActionError: when the mailbox has no workloads (unknown or never scheduled).
    """
    with store.transaction() as cur:
        cur.execute(q.SYNC_NOW, {"mailbox_id": mailbox_id})
        count = int(cur.rowcount or 0)
    if not count:
        raise ConsoleActionError(f"Mailbox {mailbox_id} has no workloads to synchronize.")
    return count
