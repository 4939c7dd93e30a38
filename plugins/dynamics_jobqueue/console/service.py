"""What the console reads from and does to the state store, as plain functions over a :class:`StateStoreHook`.

Rows come back as dicts keyed by column name (times are timezone-aware UTC datetimes). Job queue actions call
the posting module (:mod:`dynamics_jobqueue.posting.queue`), un-skip calls the sync module, remap and Test &
Enable call the mailbox module; the statements here are the ones those modules do not offer (see
:mod:`dynamics_jobqueue.console.queries`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.rows import dict_row

from dynamics_jobqueue.console import labels
from dynamics_jobqueue.console import queries as q
from dynamics_jobqueue.console.links import task_instance_url
from dynamics_jobqueue.console.listing import PageRequest, Period, fetch_page
from dynamics_jobqueue.mailbox.records import RemapRequest, latest_remap_requests
from dynamics_jobqueue.operators import mailbox_remap
from dynamics_jobqueue.posting.entries import JobQueueEntry, Status

if TYPE_CHECKING:
    from dynamics_jobqueue.hooks.state import StateStoreHook


class ConsoleActionError(Exception):
    """An action the state store refuses; the message is meant for the user."""


def _rows(store: StateStoreHook, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    with store.transaction() as cur:
        cur.row_factory = dict_row  # type: ignore[assignment]
        cur.execute(sql, params)
        return list(cur.fetchall())  # type: ignore[arg-type]


# -- lists: (rows, total, sort) of one page, see :func:`listing.fetch_page` --------------------------------------
Page = tuple[list[dict[str, Any]], int, str]


def job_queue_entries(
    store: StateStoreHook,
    request: PageRequest,
    *,
    category_code: str | None = None,
    status: str | None = None,
    user_id: str | None = None,
    search: str | None = None,
) -> tuple[list[JobQueueEntry], int, str]:
    """Job Queue Entries (Ready entries of a busy category show as Waiting); ``user_id`` gives My Job Queue."""
    rows, total, sort = fetch_page(
        store,
        q.JOB_QUEUE_ENTRIES,
        request,
        {"category_code": category_code, "status": status, "user_id": user_id, "search": search},
    )
    entries = []
    for row in rows:
        entry = JobQueueEntry(**row)
        entry.status = Status(entry.status)
        entries.append(entry)
    return entries, total, sort


def documents_to_handle(store: StateStoreHook, request: PageRequest, **filters: Any) -> Page:
    """Documents whose Job Queue Status is Error, with the reason (the entry's error message).

    :param filters: ``category_code``, ``user_id``, ``search`` (document number or error message).
    """
    return fetch_page(store, q.DOCUMENTS_TO_HANDLE, request, filters)


@dataclass(frozen=True)
class LogFilter:
    """Filters of the Job Queue Log Entries page; ``None`` matches everything. Dates are UTC calendar days."""

    category_code: str | None = None
    status: str | None = None
    user_id: str | None = None
    date_from: date | None = None
    date_to: date | None = None
    search: str | None = None
    job_queue_entry_id: str | None = None
    run_id: str | None = None


def log_entries(store: StateStoreHook, filters: LogFilter, request: PageRequest) -> Page:
    """Job Queue Log Entries matching ``filters``."""
    return fetch_page(store, q.LOG_ENTRIES, request, asdict(filters))


def trends(store: StateStoreHook, sql: str, period: Period, **params: Any) -> list[dict[str, Any]]:
    """Counts per bucket of ``period`` (a ``*_TRENDS`` query of :mod:`queries`); ``params`` filter (``None``:
    all)."""
    return _rows(store, sql, {"bucket": period.bucket, "start": period.start, "end": period.end, **params})


def categories(store: StateStoreHook) -> list[dict[str, Any]]:
    """Job queue categories (code, description)."""
    return _rows(store, q.CATEGORIES, {})


# -- integration sync -----------------------------------------------------------------------------------------
def mappings(store: StateStoreHook) -> list[str]:
    """Names of the table mappings the state store has runs, couplings or errors of."""
    return [row["mapping"] for row in _rows(store, q.MAPPINGS, {})]


def sync_runs(store: StateStoreHook, request: PageRequest, **filters: Any) -> Page:
    """Integration Synch. Jobs with their Inserted/Modified/Deleted/Unchanged/Skipped/Failed counts.

    :param filters: ``mapping``, ``direction``, ``status``, ``run_id``, ``date_from``/``date_to`` (UTC days).
    """
    return fetch_page(store, q.SYNC_RUNS, request, filters)


def sync_errors(store: StateStoreHook, request: PageRequest, **filters: Any) -> Page:
    """The current error of each failing record, with source and destination ids and why it is Skipped.

    :param filters: ``mapping``, ``direction``, ``kind``, ``skipped``, ``search`` (ids, key or message).
    """
    rows, total, sort = fetch_page(store, q.SYNC_ERRORS, request, filters)
    for row in rows:
        row["skipped_reason"] = labels.skipped_reason(row["skipped"], row["error_count"], row["message"])
    return rows, total, sort


def conflict_choices(store: StateStoreHook, request: PageRequest, **filters: Any) -> Page:
    """Users' choices for update conflicts (answered required actions of mappings resolved by ``ask``).

    :param filters: ``mapping``, ``resolution``, ``applied`` (bool), ``search`` (ids, key or user).
    """
    return fetch_page(store, q.CONFLICT_CHOICES, request, filters)


def couplings(store: StateStoreHook, request: PageRequest, **filters: Any) -> Page:
    """Couplings; ``search`` matches either id or either business key (case-insensitive substring)."""
    return fetch_page(store, q.COUPLINGS, request, filters)


def mailbox_messages(store: StateStoreHook, request: PageRequest, **filters: Any) -> Page:
    """Messages mailboxes handled. :param filters: ``mailbox_id``, ``outcome``."""
    return fetch_page(store, q.MAILBOX_MESSAGES, request, filters)


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


def couple(
    store: StateStoreHook,
    mapping: str,
    erp_id: str,
    crm_id: str,
    erp_key: str | None = None,
    crm_key: str | None = None,
) -> None:
    """Couple an ERP record to a CRM record (one coupling per record on each side, as the reference).

    :raises ConsoleActionError: when either record is already coupled in ``mapping``.
    """
    try:
        with store.transaction() as cur:
            cur.execute(
                q.COUPLE,
                {"mapping": mapping, "erp_id": erp_id, "crm_id": crm_id, "erp_key": erp_key, "crm_key": crm_key},
            )
    except psycopg.errors.UniqueViolation as exc:
        raise ConsoleActionError(
            f"{mapping}: ERP record {erp_id} or CRM record {crm_id} is already coupled; uncouple it first."
        ) from exc


# -- mailboxes ------------------------------------------------------------------------------------------------
def mailboxes(store: StateStoreHook) -> list[dict[str, Any]]:
    """Mailboxes, each with ``workloads``: status, last error and its fix, next sync, items processed; and
    ``remap_request``: the latest remap waiting for (or given) approval (:func:`remap_request`), or None."""
    boxes = _rows(store, q.MAILBOXES, {})
    workloads = _rows(store, q.WORKLOADS, {"mailbox_id": None})
    by_mailbox: dict[int, list[dict[str, Any]]] = {}
    for workload in workloads:
        by_mailbox.setdefault(workload["mailbox_id"], []).append(workload)
    requests = latest_remap_requests(store)
    for box in boxes:
        box["workloads"] = by_mailbox.get(box["mailbox_id"], [])
        request = requests.get(box["mailbox_id"])
        box["remap_request"] = remap_request(request) if request else None
    return boxes


def remap_request(request: RemapRequest) -> dict[str, Any]:
    """A remap request's fields (:class:`RemapRequest`) with the task that asks for its approval: ``dag_id``,
    ``task_id`` and ``required_action_url``, its Required Actions tab in the Airflow UI (``None`` until the
    mailbox_remap_approval run is known)."""
    run_id = request.dag_run_id
    return {
        **asdict(request),
        "dag_id": mailbox_remap.DAG_ID,
        "task_id": mailbox_remap.TASK_ID,
        "required_action_url": task_instance_url(
            mailbox_remap.DAG_ID, run_id, mailbox_remap.TASK_ID, tab="required_actions"
        )
        if run_id
        else None,
    }


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
