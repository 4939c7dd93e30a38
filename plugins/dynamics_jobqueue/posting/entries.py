"""Job Queue Entries and Job Queue Log Entries as the state store keeps them.

Statuses and fields follow the reference's Job Queue Entry (docs/reference/dynamics-semantics.md section 2); the
document-level Job Queue Status (blank, Scheduled for Posting, Posting, Error) is derived from the document's unfinished
entry by the view ``dynamics.document_job_queue_status``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    """Job Queue Entry statuses (``On Hold with Inactivity Timeout`` belongs to recurring jobs only).

    ``Waiting`` is shown, never stored: a Ready entry whose category has an entry In Process (the reference's
    Job Queue Dispatcher sets such entries Waiting and activates them, by Priority then Entry No., when the
    category frees up; here the drain claims them in that order).
    """

    READY = "Ready"
    IN_PROCESS = "In Process"
    ERROR = "Error"
    ON_HOLD = "On Hold"
    FINISHED = "Finished"
    WAITING = "Waiting"


class LogStatus(StrEnum):
    """Job Queue Log Entry statuses."""

    IN_PROCESS = "In Process"
    SUCCESS = "Success"
    ERROR = "Error"


class JobQueueStatus(StrEnum):
    """The document-level Job Queue Status shown on a sales or purchase document."""

    BLANK = ""
    SCHEDULED_FOR_POSTING = "Scheduled for Posting"
    POSTING = "Posting"
    ERROR = "Error"


#: 2 hours: the reference's Job Timeout for posting entries (the general default is 12 h).
DEFAULT_POSTING_TIMEOUT_S = 7200


@dataclass
class JobQueueEntry:
    """One row of ``dynamics.job_queue_entries``; times are timezone-aware UTC datetimes."""

    id: uuid.UUID
    category_code: str
    document_type: str
    document_id: uuid.UUID
    document_number: str
    description: str
    status: Status
    user_id: str
    priority: int
    earliest_start_at: datetime
    expires_at: datetime | None
    attempts: int
    max_attempts: int
    rerun_delay_s: int
    timeout_s: int
    post_and_print: bool
    posting_options: dict[str, Any] = field(default_factory=dict)
    error_message: str | None = None
    posted_at: datetime | None = None
    printed_at: datetime | None = None
    worker: str | None = None
    backend_pid: int | None = None
    started_at: datetime | None = None
    heartbeat_at: datetime | None = None
    lease_expires_at: datetime | None = None
    ended_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    entry_no: int | None = None
    sent_at: datetime | None = None
    notify_on_success: bool = False

    @classmethod
    def columns(cls, qualifier: str = "", **expressions: str) -> str:
        """The SELECT list matching the dataclass fields, in order.

        :param qualifier: prefixes each column (``claimed.``).
        :param expressions: SQL selected instead of a column, e.g. ``status="shown_status"``.
        """
        return ", ".join(expressions.get(f.name, qualifier + f.name) for f in fields(cls))

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> JobQueueEntry:
        """Build an entry from a row selected with :meth:`columns`."""
        entry = cls(*row)
        entry.status = Status(entry.status)
        return entry

    @property
    def job_queue_status(self) -> JobQueueStatus:
        """The document-level Job Queue Status this entry gives its document."""
        return {
            Status.IN_PROCESS: JobQueueStatus.POSTING,
            Status.ERROR: JobQueueStatus.ERROR,
            Status.FINISHED: JobQueueStatus.BLANK,
        }.get(self.status, JobQueueStatus.SCHEDULED_FOR_POSTING)

    def describe(self) -> str:
        """``Sales Invoice 103001`` — how alerts and logs name the document."""
        return f"{self.document_type} {self.document_number}"


@dataclass(frozen=True)
class PostingTask:
    """The Airflow task instance that runs a drain, kept on each attempt's Job Queue Log Entry so the console links
    the entry to its DAG run and task log (``map_index`` -1 for an unmapped task, ``try_number`` from 1)."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1
    try_number: int | None = None

    @classmethod
    def of(cls, ti: Any) -> PostingTask:
        """From a running task instance (the task context's ``ti``)."""
        return cls(ti.dag_id, ti.run_id, ti.task_id, int(ti.map_index), ti.try_number)


@dataclass(frozen=True)
class JobQueueLogEntry:
    """One row of ``dynamics.job_queue_log_entries``: one attempt of one entry; ``dag_id`` ... ``try_number`` name
    the task instance that ran it (:class:`PostingTask`; all ``None`` for an attempt of the posting CLI)."""

    entry_no: int
    job_queue_entry_id: uuid.UUID
    category_code: str
    document_type: str
    document_id: uuid.UUID
    document_number: str
    user_id: str
    description: str
    status: str
    started_at: datetime
    ended_at: datetime | None
    error_message: str | None
    error_detail: str | None
    worker: str | None
    dag_id: str | None = None
    run_id: str | None = None
    task_id: str | None = None
    map_index: int | None = None
    try_number: int | None = None

    @classmethod
    def columns(cls) -> str:
        """The SELECT list matching the dataclass fields, in order."""
        return ", ".join(f.name for f in fields(cls))


@dataclass(frozen=True)
class JobQueueNotification:
    """One row of ``dynamics.job_queue_notifications``: a user told that a document they queued has posted."""

    notification_no: int
    user_id: str
    job_queue_entry_id: uuid.UUID
    document_type: str
    document_number: str
    message: str
    created_at: datetime
