"""Queue documents for posting and take them off the queue (the reference's Post via Job Queue and Remove from
Job Queue).

The rules and messages are the reference's (docs/reference/dynamics-semantics.md section 2 and codeunits 88/98
"Sales/Purchase Post via Job Queue"): a document is queued only when its Job Queue Status is blank or Error; otherwise
the request is refused with "<type> <no.> cannot be posted because it has already been scheduled for posting. ...".
A partial unique index (one unfinished entry per document) makes that refusal hold even when two users queue
the same document at the same moment.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.types.json import Jsonb

from dynamics_jobqueue import settings
from dynamics_jobqueue.hooks.errors import ApiError
from dynamics_jobqueue.posting import queries
from dynamics_jobqueue.posting.categories import DocumentType
from dynamics_jobqueue.posting.categories import document_type as lookup_document_type
from dynamics_jobqueue.posting.entries import (
    DEFAULT_POSTING_TIMEOUT_S,
    JobQueueEntry,
    JobQueueLogEntry,
    JobQueueNotification,
    JobQueueStatus,
    Status,
)

if TYPE_CHECKING:
    from dynamics_jobqueue.hooks.business_central import BusinessCentralHook
    from dynamics_jobqueue.hooks.state import StateStoreHook


class JobQueueError(Exception):
    """A job queue request the reference refuses; the message is meant for the user."""


class AlreadyScheduledError(JobQueueError):
    """The document's Job Queue Status is Scheduled for Posting or Posting."""


class NotInJobQueueError(JobQueueError):
    """Remove from Job Queue found no pending entry for the document."""


@dataclass(frozen=True)
class EnqueueRequest:
    """What a user asks for when choosing Post (or Post & Print) with the job queue.

    :param document_type: the reference's name, e.g. ``Sales Invoice``.
    :param document_id: the document's id (GUID) in Business Central.
    :param document_number: its number (``1001``), shown in messages.
    :param user_id: who queues it; alerts name this user.
    :param category_code: default: the document type's category (``SALESPOST`` / ``PURCHPOST``).
    :param priority: lower runs first (the reference's Job Queue Priority for Post, default 1000).
    :param earliest_start_at: not before this moment (UTC-aware); default now.
    :param expires_at: not after this moment; an expired entry ends in Error without posting.
    :param max_attempts: Maximum No. of Attempts to Run (failures that may pass: outages, throttling).
    :param rerun_delay_s: Rerun Delay (sec.) between attempts.
    :param timeout_s: Job Timeout; default 2 hours as the reference's posting entries.
    :param post_and_print: print the posted document after posting.
    :param posting_options: Batch Post options (``posting_date``, ``replace_posting_date``, ...).
    :param notify_on_success: notify ``user_id`` when the document has posted; ``None``: the setup's Notify On
        Success (setting ``posting_notify_on_success``), read when the document is queued, as the reference
        copies it from the Sales & Receivables / Purchases & Payables Setup into the entry.
    """

    document_type: str
    document_id: uuid.UUID
    document_number: str
    user_id: str
    category_code: str | None = None
    priority: int = 1000
    earliest_start_at: datetime | None = None
    expires_at: datetime | None = None
    max_attempts: int = 3
    rerun_delay_s: int = 60
    timeout_s: int = DEFAULT_POSTING_TIMEOUT_S
    post_and_print: bool = False
    posting_options: dict[str, Any] | None = None
    notify_on_success: bool | None = None


def already_scheduled_message(document_type: str, document_number: str) -> str:
    """The reference's refusal text (label ``WrongJobQueueStatus``)."""
    return (
        f"{document_type} {document_number} cannot be posted because it has already been scheduled for posting. "
        "Choose the Remove from Job Queue action to reset the job queue status and then post again."
    )


def scheduled_message(document_type: str, document_number: str) -> str:
    """The reference's confirmation text (label ``PostAndPrintJobQueueConfirmation``)."""
    return f"{document_type} {document_number} has been scheduled for posting."


def enqueue(store: StateStoreHook, request: EnqueueRequest) -> JobQueueEntry:
    """Queue one document for posting: a Ready entry, Job Queue Status Scheduled for Posting.

    An entry in Error for the same document is replaced (its attempts stay in the log), as the reference lets
    a user post again a document whose status is Error.

    :return: the new entry.
    :raises AlreadyScheduledError: the document is Scheduled for Posting or Posting (the reference's message).
    :raises JobQueueError: Post & Print asked for a document type the API cannot print.
    :raises ValueError: unknown document type.
    """
    doc_type = lookup_document_type(request.document_type)
    if request.post_and_print and doc_type.posted_entity_set is None:
        raise JobQueueError(f"Post & Print is not available for a {doc_type.name}: the API offers no PDF of it.")
    try:
        with store.transaction() as cur:
            cur.execute(queries.DELETE_ERROR_ENTRY_OF_DOCUMENT, (doc_type.name, request.document_id))
            cur.execute(
                queries.INSERT_ENTRY.format(columns=JobQueueEntry.columns()),
                _entry_parameters(request, doc_type),
            )
            row = cur.fetchone()
    except psycopg.errors.UniqueViolation as exc:
        raise AlreadyScheduledError(already_scheduled_message(doc_type.name, request.document_number)) from exc
    assert row is not None
    return JobQueueEntry.from_row(row)


def _entry_parameters(request: EnqueueRequest, doc_type: DocumentType) -> dict[str, Any]:
    """The insert parameters of the job queue entry that ``request`` asks for."""
    return {
        "category_code": request.category_code or doc_type.category_code,
        "document_type": doc_type.name,
        "document_id": request.document_id,
        "document_number": request.document_number,
        "description": f"Post {doc_type.name} {request.document_number}.",
        "user_id": request.user_id,
        "priority": request.priority,
        "earliest_start_at": request.earliest_start_at,
        "expires_at": request.expires_at,
        "max_attempts": request.max_attempts,
        "rerun_delay_s": request.rerun_delay_s,
        "timeout_s": request.timeout_s,
        "post_and_print": request.post_and_print,
        "posting_options": Jsonb(request.posting_options or {}),
        "notify_on_success": (
            settings.getboolean("posting_notify_on_success")
            if request.notify_on_success is None
            else request.notify_on_success
        ),
    }


def enqueue_many(store: StateStoreHook, requests: Sequence[EnqueueRequest]) -> tuple[int, list[str]]:
    """Queue many documents in one transaction (Batch Post); documents already scheduled are left alone.

    :return: (number queued, messages of the documents refused because they are already scheduled).
    """
    refused: list[str] = []
    queued = 0
    with store.transaction() as cur:
        for request in requests:
            doc_type = lookup_document_type(request.document_type)
            cur.execute(queries.DELETE_ERROR_ENTRY_OF_DOCUMENT, (doc_type.name, request.document_id))
            cur.execute(
                queries.INSERT_ENTRY_IF_NOT_SCHEDULED,
                _entry_parameters(request, doc_type),
            )
            if cur.rowcount:
                queued += 1
            else:
                refused.append(already_scheduled_message(doc_type.name, request.document_number))
    return queued, refused


def enqueue_by_number(
    store: StateStoreHook,
    bc: BusinessCentralHook,
    document_type: str,
    document_number: str,
    *,
    user_id: str,
    **options: Any,
) -> JobQueueEntry:
    """Queue a document named by its number, reading its id from Business Central.

    An Open document is released first, as codeunit "Sales Post via Job Queue" does, when the connection routes
    the posting page (:data:`~dynamics_jobqueue.posting.categories.POSTING_DOCUMENTS`); a released one is left as
    it is.

    :param options: the other fields of :class:`EnqueueRequest`.
    :raises JobQueueError: when no open document of that type and number exists, or Business Central refuses to
        release it (its message).
    :raises AlreadyScheduledError: see :func:`enqueue`.
    """
    doc_type = lookup_document_type(document_type)
    found = bc.find_by(doc_type.entity_set, "number", document_number, select=["id", "number"])
    if not found:
        raise JobQueueError(f"{doc_type.name} {document_number} does not exist.")
    if bc.has_endpoint(doc_type.posting_documents):
        status = document_job_queue_status(store, doc_type.name, uuid.UUID(found[0]["id"]))
        if status not in (JobQueueStatus.SCHEDULED_FOR_POSTING, JobQueueStatus.POSTING):
            try:
                bc.post_action(doc_type.posting_documents, found[0]["id"], "Microsoft.NAV.release")
            except ApiError as exc:
                if exc.status is None or exc.is_systemic:
                    raise
                head, _, _ = exc.message.partition("CorrelationId:")
                raise JobQueueError(head.strip()) from exc
    return enqueue(
        store,
        EnqueueRequest(
            document_type=doc_type.name,
            document_id=uuid.UUID(found[0]["id"]),
            document_number=document_number,
            user_id=user_id,
            **options,
        ),
    )


def _pending_entry(cur: psycopg.Cursor, doc_type: DocumentType, document_number: str, refusal: str) -> JobQueueEntry:
    """The document's pending entry, read in the caller's transaction; an entry In Process is refused.

    :param refusal: the message's end after "is being posted", e.g. ``"; its status cannot be changed"``.
    :raises NotInJobQueueError: when the document has no pending entry.
    :raises JobQueueError: when the entry is In Process.
    """
    cur.execute(
        queries.SELECT_OPEN_ENTRY_BY_NUMBER.format(columns=JobQueueEntry.columns()),
        (doc_type.name, document_number),
    )
    row = cur.fetchone()
    if row is None:
        raise NotInJobQueueError(f"{doc_type.name} {document_number} is not in the job queue.")
    entry = JobQueueEntry.from_row(row)
    if entry.status is Status.IN_PROCESS:
        raise JobQueueError(f"{entry.describe()} is being posted{refusal}. {IN_PROCESS_ADVICE}")
    return entry


#: What the user can do about an entry In Process (Remove from Job Queue, Set On Hold / Ready refuse it).
IN_PROCESS_ADVICE = (
    "Wait until the posting ends: when it posts, the document leaves the job queue; when it fails, its entry "
    "goes to Error and can then be removed or set Ready. An entry whose worker stopped is resolved by the next "
    "drain of its category, at the latest when its Job Timeout has passed."
)


def remove(store: StateStoreHook, document_type: str, document_number: str) -> JobQueueEntry:
    """Remove from Job Queue: delete the document's pending entry and clear its Job Queue Status.

    Entries that are Ready, On Hold or in Error are removed. An entry In Process is refused, with
    :data:`IN_PROCESS_ADVICE`: a deliberate difference from the reference, whose Remove from Job Queue (codeunit
    88 Sales Post via Job Queue, ``CancelQueueEntry``) deletes the document's entries whatever their status.
    Deleting an entry whose posting is running would lose the record of a posting the ERP may still complete
    and let the document be queued (and posted) a second time.

    :return: the removed entry.
    :raises NotInJobQueueError: when the document has no pending entry.
    :raises JobQueueError: when the entry is In Process.
    """
    doc_type = lookup_document_type(document_type)
    with store.transaction() as cur:
        entry = _pending_entry(cur, doc_type, document_number, " and cannot be removed from the job queue")
        cur.execute(queries.DELETE_ENTRY, (entry.id,))
    return entry


def set_status(store: StateStoreHook, document_type: str, document_number: str, status: Status) -> JobQueueEntry:
    """The reference's Set On Hold / Set Status to Ready on a document's pending entry.

    An entry On Hold is not posted (its document stays Scheduled for Posting) until it is set Ready again;
    setting an entry in Error to Ready reruns it with fresh attempts.

    :param status: :attr:`Status.ON_HOLD` or :attr:`Status.READY`.
    :return: the entry after the change.
    :raises NotInJobQueueError: when the document has no pending entry.
    :raises JobQueueError: when the entry is In Process, or for another target status.
    """
    if status not in (Status.ON_HOLD, Status.READY):
        raise JobQueueError(f"an entry can be set On Hold or Ready, not {status}")
    doc_type = lookup_document_type(document_type)
    with store.transaction() as cur:
        entry = _pending_entry(cur, doc_type, document_number, "; its status cannot be changed")
        cur.execute(queries.SET_STATUS.format(columns=JobQueueEntry.columns()), (str(status), entry.id))
        changed = cur.fetchone()
    assert changed is not None
    return JobQueueEntry.from_row(changed)


def get_entry(store: StateStoreHook, entry_id: uuid.UUID) -> JobQueueEntry | None:
    """Read one entry by id (``None`` when it does not exist)."""
    with store.transaction() as cur:
        cur.execute(queries.SELECT_ENTRY.format(columns=JobQueueEntry.columns()), (entry_id,))
        row = cur.fetchone()
    return JobQueueEntry.from_row(row) if row else None


def list_entries(
    store: StateStoreHook,
    *,
    category_code: str | None = None,
    statuses: Sequence[Status] | None = None,
    user_id: str | None = None,
    limit: int = 1000,
) -> list[JobQueueEntry]:
    """List entries, newest first; ``user_id`` gives the reference's "My Job Queue".

    A Ready entry of a category that has an entry In Process is listed as :attr:`Status.WAITING`.
    """
    with store.transaction() as cur:
        cur.execute(
            queries.SELECT_ENTRIES.format(columns=JobQueueEntry.columns(status="shown_status")),
            {
                "category_code": category_code,
                "statuses": [str(s) for s in statuses] if statuses else None,
                "user_id": user_id,
                "limit": limit,
            },
        )
        return [JobQueueEntry.from_row(row) for row in cur.fetchall()]


def list_log_entries(store: StateStoreHook, entry_id: uuid.UUID | None = None) -> list[JobQueueLogEntry]:
    """List Job Queue Log Entries, of one entry or of all, in entry-number order."""
    with store.transaction() as cur:
        cur.execute(queries.SELECT_LOG_ENTRIES.format(columns=JobQueueLogEntry.columns()), {"entry_id": entry_id})
        return [JobQueueLogEntry(*row) for row in cur.fetchall()]


def document_job_queue_status(store: StateStoreHook, document_type: str, document_id: uuid.UUID) -> JobQueueStatus:
    """The document's Job Queue Status (blank when it has no unfinished entry)."""
    with store.transaction() as cur:
        cur.execute(queries.SELECT_DOCUMENT_STATUS, (lookup_document_type(document_type).name, document_id))
        row = cur.fetchone()
    return JobQueueStatus(row[0]) if row else JobQueueStatus.BLANK


def list_notifications(store: StateStoreHook, user_id: str | None = None) -> list[JobQueueNotification]:
    """The Notify On Success notifications, of one user (their "My Notifications") or of all, oldest first."""
    with store.transaction() as cur:
        cur.execute(queries.SELECT_NOTIFICATIONS, {"user_id": user_id})
        return [JobQueueNotification(*row) for row in cur.fetchall()]
