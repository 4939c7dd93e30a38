"""The posting runner: drains a job queue category one document at a time.

Re-creates the reference's job queue dispatcher for posting entries (dynamics-semantics.md section 2):

- **Category serialisation.** A session-level Postgres advisory lock per category is held from claiming an
  entry until its outcome is recorded, so two DAG runs, two workers or a worker and the CLI never post two
  documents of one category at once. The Airflow pool of one slot per category keeps Airflow from even
  starting a second drain; the lock holds where the pool cannot (other Airflow deployments, the CLI).
- **Claiming.** ``SELECT ... FOR UPDATE SKIP LOCKED`` picks the next Ready entry whose Earliest Start Date/Time
  has come, by Priority; the entry becomes In Process and a Job Queue Log Entry opens, in one statement.
- **Failure.** The ERP's refusal (a blocked customer, nothing to post, a closed period) ends the entry in
  Error with the API's message at once: rerunning cannot change the answer until someone fixes the document
  (the reference would spend its remaining attempts on it). Outages, throttling and lost answers are retried
  after Rerun Delay while Maximum No. of Attempts to Run allows, then Error.
- **Timeout.** A posting that exceeds the entry's Job Timeout (2 h by default) ends in Error.
- **Never posted twice.** After an ambiguous failure (no answer), and when recovering an entry left In Process
  by a dead worker, the document is re-checked in the ERP: posted -> Finished; still open -> Ready (or Error
  when no attempts remain); gone -> Error. Once posted, ``posted_at`` is recorded before printing, so a print
  failure ("posted but not printed") is never answered by posting again.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg
import requests

from dynamics_jobqueue.hooks.errors import ApiError, NotFoundError
from dynamics_jobqueue.posting import queries
from dynamics_jobqueue.posting.categories import DocumentType, PostedEvidence, document_type
from dynamics_jobqueue.posting.entries import JobQueueEntry, LogStatus, Status
from dynamics_jobqueue.posting.printing import Printer, PrintError, pdf_file_name

if TYPE_CHECKING:
    from dynamics_jobqueue.hooks.business_central import BusinessCentralHook
    from dynamics_jobqueue.hooks.state import StateStoreHook

log = logging.getLogger(__name__)

#: First key of the two-key advisory lock; the second is ``hashtext(category code)``.
CATEGORY_LOCK_NAMESPACE = 4_207_311


@dataclass(frozen=True)
class Failure:
    """A document that did not post (or did not print), for the task alert."""

    document: str
    user_id: str
    reason: str

    def __str__(self) -> str:
        return f"{self.document} (queued by {self.user_id}): {self.reason}"


@dataclass
class DrainResult:
    """What one drain of a category did.

    :ivar posted: documents posted. :ivar printed: of those, printed.
    :ivar failed: entries that ended in Error (each named in the task alert).
    :ivar rescheduled: entries that failed and wait for their Rerun Delay.
    :ivar recovered: entries left In Process by a dead worker and resolved.
    :ivar lock_busy: another runner held the category for longer than the lock wait; nothing was done.
    """

    category_code: str
    posted: int = 0
    printed: int = 0
    failed: list[Failure] = field(default_factory=list)
    rescheduled: list[Failure] = field(default_factory=list)
    recovered: int = 0
    lock_busy: bool = False

    def summary(self) -> str:
        """One line, e.g. ``SALESPOST: 9 posted (2 printed), 2 failed, 0 waiting for a rerun``."""
        return (
            f"{self.category_code}: {self.posted} posted ({self.printed} printed), {len(self.failed)} failed, "
            f"{len(self.rescheduled)} waiting for a rerun, {self.recovered} recovered"
        )


@dataclass(frozen=True)
class _Outcome:
    status: Status
    posted: bool = False
    printed: bool = False
    error_message: str | None = None
    error_detail: str | None = None

    @property
    def log_status(self) -> LogStatus:
        return LogStatus.SUCCESS if self.status is Status.FINISHED else LogStatus.ERROR


class _JobTimeout(Exception):
    """The entry's Job Timeout passed."""


class _Heartbeat(threading.Thread):
    """Extends the lease of the entry being posted, on its own connection, every third of the lease."""

    def __init__(self, store: StateStoreHook, lease_s: float) -> None:
        super().__init__(name="job-queue-heartbeat", daemon=True)
        self._store = store
        self._lease_s = lease_s
        self._stop_event = threading.Event()
        self.entry_id: uuid.UUID | None = None

    def run(self) -> None:
        conn: psycopg.Connection | None = None
        try:
            while not self._stop_event.wait(self._lease_s / 3):
                entry_id = self.entry_id
                if entry_id is None:
                    continue
                try:
                    if conn is None:
                        conn = self._store.get_conn()
                        conn.autocommit = True
                    conn.execute(queries.HEARTBEAT, (self._lease_s, entry_id))
                except psycopg.Error as exc:
                    log.warning("Heartbeat of job queue entry %s failed: %s", entry_id, exc)
                    conn = None
        finally:
            if conn is not None:
                conn.close()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)


def format_duration(seconds: float) -> str:
    """``7200`` -> ``2 h``, ``90`` -> ``90 s`` (as timeouts are named in messages)."""
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)} min"
    return f"{seconds:g} s"


class PostingRunner:
    """Posts the Ready entries of one job queue category in strict sequence.

    :param store: the state store.
    :param bc: the Business Central hook that posts.
    :param category_code: ``SALESPOST`` or ``PURCHPOST`` (any category in ``dynamics.job_queue_categories``).
    :param printer: where Post & Print sends PDFs; ``None`` makes Post & Print entries fail with
        "posted but not printed".
    :param worker: names this runner in entries and logs; default ``<host>:<pid>``.
    :param lease_s: lease of an In Process entry, renewed by a heartbeat every third of it (seconds).
    :param lock_wait_s: how long to wait for another runner holding the category (seconds).
    :param progress_every_s: interval of the progress log lines (seconds).
    """

    def __init__(
        self,
        store: StateStoreHook,
        bc: BusinessCentralHook,
        category_code: str,
        *,
        printer: Printer | None = None,
        worker: str | None = None,
        lease_s: float = 60.0,
        lock_wait_s: float = 60.0,
        progress_every_s: float = 30.0,
    ) -> None:
        self.store = store
        self.bc = bc
        self.category_code = category_code
        self.printer = printer
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}"
        self.lease_s = lease_s
        self.lock_wait_s = lock_wait_s
        self.progress_every_s = progress_every_s
        self._job_limited_timeout = False

    # -- the loop ------------------------------------------------------------------------------------------
    def drain(self, *, max_entries: int | None = None) -> DrainResult:
        """Post Ready entries one at a time until none is due (or ``max_entries`` were run).

        Entries left In Process by a dead worker are resolved first; expired entries end in Error.

        :return: counts and the failures to alert on.
        :raises psycopg.Error: when the state store fails (the entry being posted is then recovered by the
            next drain, re-checked against the ERP).
        """
        result = DrainResult(self.category_code)
        conn = self.store.get_conn()
        conn.autocommit = True
        conn.execute("SELECT set_config('lock_timeout', %s, false)", (f"{int(self.lock_wait_s * 1000)}ms",))
        heartbeat = _Heartbeat(self.store, self.lease_s)
        heartbeat.start()
        started = last_progress = time.monotonic()
        try:
            if not self._lock(conn):
                result.lock_busy = True
                log.warning("%s: another runner is posting this category; nothing done", self.category_code)
                return result
            try:
                self._expire(conn, result)
                self._recover(conn, result)
            finally:
                self._unlock(conn)
            runs = 0
            while max_entries is None or runs < max_entries:
                if not self._lock(conn):
                    result.lock_busy = True
                    break
                try:
                    claimed = self._claim(conn)
                    if claimed is None:
                        break
                    entry, entry_no = claimed
                    heartbeat.entry_id = entry.id
                    try:
                        outcome = self._run(entry)
                    except Exception as exc:  # a bug must not leave the entry In Process until its lease expires
                        log.exception("%s: unexpected error", entry.describe())
                        outcome = _Outcome(
                            Status.ERROR, error_message=f"Unexpected error: {exc}", error_detail=traceback.format_exc()
                        )
                    self._finish(conn, entry, entry_no, outcome)
                    heartbeat.entry_id = None
                finally:
                    self._unlock(conn)
                runs += 1
                self._count(entry, outcome, result)
                if time.monotonic() - last_progress >= self.progress_every_s:
                    last_progress = time.monotonic()
                    log.info("%s after %.0f s: %s", self.category_code, last_progress - started, result.summary())
        finally:
            heartbeat.stop()
            conn.close()
        log.info("%s drained in %.1f s: %s", self.category_code, time.monotonic() - started, result.summary())
        return result

    def _lock(self, conn: psycopg.Connection) -> bool:
        """Take the category lock, waiting at most ``lock_wait_s``; ``False`` when another runner kept it.

        A blocking wait (rather than polling) queues the waiters in Postgres's lock queue, so two runners
        alternate document by document instead of one starving the other.
        """
        try:
            conn.execute(queries.CATEGORY_LOCK, (CATEGORY_LOCK_NAMESPACE, self.category_code))
        except psycopg.errors.LockNotAvailable:
            return False
        return True

    def _unlock(self, conn: psycopg.Connection) -> None:
        conn.execute(queries.RELEASE_CATEGORY_LOCK, (CATEGORY_LOCK_NAMESPACE, self.category_code))

    def _claim(self, conn: psycopg.Connection) -> tuple[JobQueueEntry, int] | None:
        row = conn.execute(
            queries.CLAIM_NEXT.format(columns=JobQueueEntry.columns()),
            {"category_code": self.category_code, "worker": self.worker, "lease_s": self.lease_s},
        ).fetchone()
        if row is None:
            return None
        return JobQueueEntry.from_row(row[:-1]), int(row[-1])

    def _finish(self, conn: psycopg.Connection, entry: JobQueueEntry, entry_no: int, outcome: _Outcome) -> None:
        conn.execute(
            queries.FINISH_ATTEMPT,
            {
                "id": entry.id,
                "entry_no": entry_no,
                "status": str(outcome.status),
                "log_status": str(outcome.log_status),
                "posted": outcome.posted,
                "printed": outcome.printed,
                "error_message": outcome.error_message,
                "error_detail": outcome.error_detail,
            },
        )

    def _count(self, entry: JobQueueEntry, outcome: _Outcome, result: DrainResult) -> None:
        result.posted += outcome.posted
        result.printed += outcome.printed
        if outcome.status is Status.ERROR:
            failure = Failure(entry.describe(), entry.user_id, outcome.error_message or "")
            result.failed.append(failure)
            log.error("%s", failure)
        elif outcome.status is Status.READY:
            result.rescheduled.append(Failure(entry.describe(), entry.user_id, outcome.error_message or ""))
            log.warning(
                "%s: attempt %d failed, rerun after %d s: %s",
                entry.describe(),
                entry.attempts,
                entry.rerun_delay_s,
                outcome.error_message,
            )

    # -- expiry and recovery -------------------------------------------------------------------------------
    def _expire(self, conn: psycopg.Connection, result: DrainResult) -> None:
        for row in conn.execute(queries.EXPIRE_ENTRIES.format(columns=JobQueueEntry.columns()), (self.category_code,)):
            entry = JobQueueEntry.from_row(row)
            result.failed.append(Failure(entry.describe(), entry.user_id, entry.error_message or "expired"))
            log.error("%s", result.failed[-1])

    def _recover(self, conn: psycopg.Connection, result: DrainResult) -> None:
        """Resolve entries In Process whose worker is gone (its session ended or its lease expired)."""
        orphans = [
            JobQueueEntry.from_row(row)
            for row in conn.execute(
                queries.SELECT_ORPHANED.format(columns=JobQueueEntry.columns()), (self.category_code,)
            )
        ]
        for entry in orphans:
            doc_type = document_type(entry.document_type)
            stopped = f"The worker {entry.worker} stopped while running this entry"
            if entry.posted_at is not None:
                posted: bool | None = True
            else:
                try:
                    posted = self._is_posted(entry, doc_type)
                except ApiError as exc:
                    log.warning("%s: cannot re-check it in the ERP yet (%s); left In Process", entry.describe(), exc)
                    continue
            if posted and entry.post_and_print and entry.printed_at is None:
                outcome = _Outcome(
                    Status.ERROR,
                    posted=True,
                    error_message=f"{entry.describe()} was posted but not printed: {stopped}.",
                )
            elif posted:
                outcome = _Outcome(Status.FINISHED, posted=True)
            elif posted is None:
                outcome = _Outcome(
                    Status.ERROR,
                    error_message=(
                        f"{stopped}, and {entry.describe()} is neither open nor posted in Business Central."
                    ),
                )
            elif entry.attempts < entry.max_attempts:
                outcome = _Outcome(Status.READY, error_message=f"{stopped}; the document was not posted.")
            else:
                outcome = _Outcome(Status.ERROR, error_message=f"{stopped}; the document was not posted.")
            entry_no = self._open_log_entry(conn, entry)
            self._finish(conn, entry, entry_no, outcome)
            result.recovered += 1
            log.warning("Recovered %s left In Process by %s: now %s", entry.describe(), entry.worker, outcome.status)
            if outcome.status is Status.ERROR:
                result.failed.append(Failure(entry.describe(), entry.user_id, outcome.error_message or ""))

    @staticmethod
    def _open_log_entry(conn: psycopg.Connection, entry: JobQueueEntry) -> int:
        """The dead attempt's Job Queue Log Entry (opened when it was claimed), or a new one."""
        row = conn.execute(queries.SELECT_OPEN_LOG_ENTRY, (entry.id,)).fetchone()
        if row is None or row[0] is None:
            row = conn.execute(
                queries.OPEN_RECOVERY_LOG,
                (
                    entry.id,
                    entry.category_code,
                    entry.document_type,
                    entry.document_id,
                    entry.document_number,
                    entry.user_id,
                    entry.description,
                    entry.started_at,
                    entry.worker,
                ),
            ).fetchone()
        assert row is not None
        return int(row[0])

    # -- one entry -----------------------------------------------------------------------------------------
    def _run(self, entry: JobQueueEntry) -> _Outcome:
        doc_type = document_type(entry.document_type)
        deadline = time.monotonic() + entry.timeout_s
        try:
            self._apply_posting_options(entry, doc_type, deadline)
            with self._http_timeout(deadline):
                self.bc.post_action(doc_type.entity_set, str(entry.document_id), doc_type.action)
        except (ApiError, _JobTimeout) as exc:
            outcome = self._after_failed_post(entry, doc_type, exc)
            if outcome is not None:
                return outcome
        if not entry.post_and_print:
            return _Outcome(Status.FINISHED, posted=True)
        return self._print(entry, doc_type, deadline)

    def _apply_posting_options(self, entry: JobQueueEntry, doc_type: DocumentType, deadline: float) -> None:
        """Batch Post's Replace Posting Date / Replace Document Date: write the date before posting."""
        options = entry.posting_options
        posting_date = options.get("posting_date")
        changes: dict[str, Any] = {}
        if posting_date and options.get("replace_posting_date"):
            changes[doc_type.posting_date_field] = posting_date
        if posting_date and options.get("replace_document_date"):
            changes[doc_type.document_date_field] = posting_date
        if changes:
            with self._http_timeout(deadline):
                self.bc.update(doc_type.entity_set, str(entry.document_id), changes)

    def _after_failed_post(self, entry: JobQueueEntry, doc_type: DocumentType, exc: Exception) -> _Outcome | None:
        """Decide what a failed posting means; ``None`` when the ERP shows the document posted after all."""
        timed_out = isinstance(exc, _JobTimeout) or (
            self._job_limited_timeout and isinstance(exc.__cause__, requests.Timeout)
        )
        # The answer may have been lost after the ERP posted: ask the ERP before deciding anything.
        try:
            if self._is_posted(entry, doc_type):
                log.info("%s: the ERP shows it posted despite %s", entry.describe(), exc)
                return None
        except ApiError as check_error:
            log.warning("%s: cannot re-check it in the ERP: %s", entry.describe(), check_error)
        if timed_out:
            return _Outcome(
                Status.ERROR,
                error_message=f"The posting of {entry.describe()} did not finish within its timeout of "
                f"{format_duration(entry.timeout_s)}.",
                error_detail=repr(exc),
            )
        assert isinstance(exc, ApiError)
        detail = f"{exc.code or 'no code'} (HTTP {exc.status}) on {exc.entity_set}({exc.record_id}): {exc.message}"
        retryable = exc.is_systemic
        if retryable and entry.attempts < entry.max_attempts:
            return _Outcome(Status.READY, error_message=exc.message, error_detail=detail)
        return _Outcome(Status.ERROR, error_message=_clean_message(exc.message), error_detail=detail)

    def _is_posted(self, entry: JobQueueEntry, doc_type: DocumentType) -> bool | None:
        """Whether the ERP shows the document posted; ``None`` when it is gone without a posted trace.

        :raises ApiError: when the ERP cannot be asked.
        """
        record_id = str(entry.document_id)
        try:
            record = self.bc.get(doc_type.entity_set, record_id)
        except NotFoundError:
            if doc_type.evidence is PostedEvidence.GONE:
                return True
            if doc_type.evidence is PostedEvidence.ORDER:
                return self._posted_from_order(doc_type, record_id) is not None
            return None
        if doc_type.evidence is PostedEvidence.STATUS:
            return record.get("status") not in ("Draft", "In Review")
        return False

    def _posted_from_order(self, doc_type: DocumentType, order_id: str) -> dict[str, Any] | None:
        assert doc_type.posted_entity_set is not None
        for page in self.bc.iter_pages(doc_type.posted_entity_set, filter=f"orderId eq {order_id}"):
            for record in page:
                return record
        return None

    def _print(self, entry: JobQueueEntry, doc_type: DocumentType, deadline: float) -> _Outcome:
        """Post & Print: send the posted document's PDF to the printer; the posting stands whatever happens."""
        self._mark_posted(entry)
        try:
            if self.printer is None:
                raise PrintError("no printer is configured for Post & Print")
            where = _run_with_deadline(lambda: self._print_now(entry, doc_type, deadline), deadline)
        except (PrintError, ApiError, _JobTimeout) as exc:
            reason = (
                f"the printer did not finish within the timeout of {format_duration(entry.timeout_s)}"
                if isinstance(exc, _JobTimeout)
                else str(exc)
            )
            return _Outcome(
                Status.ERROR,
                posted=True,
                error_message=f"{entry.describe()} was posted but not printed: {reason}",
                error_detail=repr(exc),
            )
        log.info("%s posted and printed to %s", entry.describe(), where)
        return _Outcome(Status.FINISHED, posted=True, printed=True)

    def _print_now(self, entry: JobQueueEntry, doc_type: DocumentType, deadline: float) -> str:
        assert self.printer is not None
        if doc_type.posted_entity_set is None:
            raise PrintError(f"the API offers no PDF of a posted {doc_type.name}")
        if doc_type.evidence is PostedEvidence.ORDER:
            posted = self._posted_from_order(doc_type, str(entry.document_id))
            if posted is None:
                raise PrintError(f"the posted document of {entry.describe()} was not found")
        else:
            posted = self.bc.get(doc_type.posted_entity_set, str(entry.document_id))
        posted_type = document_type(
            f"{doc_type.name.split()[0]} {'Invoice' if 'Invoice' in doc_type.posted_entity_set else 'Credit Memo'}"
        )
        number = str(posted.get("number") or entry.document_number)
        # This runs in the print thread, bounded by its join; the connection's own timeout applies to the call.
        pdf = self.bc.get_bytes(f"{doc_type.posted_entity_set}({posted['id']})/pdfDocument/pdfDocumentContent")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _JobTimeout()
        return self.printer.print_pdf(
            pdf_file_name(posted_type.name, number), f"{posted_type.name} {number}", pdf, timeout_s=remaining
        )

    def _mark_posted(self, entry: JobQueueEntry) -> None:
        # Recorded before printing so that a worker dying while printing is never answered by a second posting.
        with self.store.transaction() as cur:
            cur.execute(queries.MARK_POSTED, (entry.id,))

    @contextmanager
    def _http_timeout(self, deadline: float) -> Iterator[None]:
        """Bound the next API calls by the entry's remaining Job Timeout (the connection's ``extra.timeout``
        stays the ceiling)."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _JobTimeout()
        extra = self.bc.extra
        configured = float(extra.get("timeout", 300))
        self._job_limited_timeout = remaining < configured
        extra["timeout"] = min(remaining, configured)
        try:
            yield
        finally:
            extra["timeout"] = configured


def _run_with_deadline(func: Any, deadline: float) -> Any:
    """Run ``func`` in a daemon thread and wait until ``deadline`` (a printer may hang in a system call).

    :raises _JobTimeout: when it is still running at the deadline (the thread is abandoned).
    """
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = func()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="post-and-print", daemon=True)
    thread.start()
    thread.join(max(0.0, deadline - time.monotonic()))
    if thread.is_alive():
        raise _JobTimeout()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def _clean_message(message: str) -> str:
    """The API's message without its trailing ``CorrelationId: ...`` (kept in the log entry's detail)."""
    head, _, _ = message.partition("CorrelationId:")
    return head.strip() or message
