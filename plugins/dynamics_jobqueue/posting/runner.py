"""The posting runner: drains a job queue category one document at a time.

Re-creates the reference's job queue dispatcher for posting entries (docs/reference/dynamics-semantics.md section 2):

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
- **One posting per category in the ERP, even when a worker dies.** ``sent_at`` is committed just before the
  posting request goes out. An entry left In Process by a dead worker (or released because the ERP gave no
  answer) blocks its category: nothing else of the category is claimed until the ERP shows the document posted
  (-> Finished), or the attempt's Job Timeout has passed (-> re-checked: still open -> Ready, or Error when no
  attempts remain; gone -> Error). An attempt that died before ``sent_at`` sent nothing and is resolved at
  once. So no second posting of the category, and no second posting of the same document, can start while the
  first one may still be running in the ERP.
- **Never posted twice.** Once posted, ``posted_at`` is recorded before printing, so a print failure ("posted
  but not printed") is never answered by posting again.
- **Crash points** (tests only): ``DYNAMICS_POSTING_CRASH_AT=<point>[:<n>]`` kills the process with SIGKILL the
  n-th time (default the first) it passes a point of :data:`CRASH_POINTS`; ``in_flight`` kills it
  ``DYNAMICS_POSTING_CRASH_DELAY_S`` (default 0.2) seconds after the posting request went out, while the ERP
  posts.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import traceback
import uuid
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

import psycopg
import requests

from dynamics_jobqueue.hooks.errors import ApiError, MissingEndpointError, NotFoundError
from dynamics_jobqueue.posting import queries
from dynamics_jobqueue.posting.categories import DocumentType, PostedEvidence, document_type
from dynamics_jobqueue.posting.entries import JobQueueEntry, LogStatus, PostingTask, Status
from dynamics_jobqueue.posting.printing import Printer, PrintError, pdf_file_name

if TYPE_CHECKING:
    from dynamics_jobqueue.hooks.business_central import BusinessCentralHook
    from dynamics_jobqueue.hooks.state import StateStoreHook

log = logging.getLogger(__name__)

#: First key of the two-key advisory lock; the second is ``hashtext(category code)``.
CATEGORY_LOCK_NAMESPACE = 4_207_311
#: The claim's task parameters (all NULL when no Airflow task runs the drain).
_TASK_FIELDS = [f.name for f in fields(PostingTask)]

#: Named points of one entry's life where the crash-safety tests kill the runner (see the module docstring):
#: ``claimed`` (In Process, nothing sent yet; ``sent_at`` is set by the claim unless options are written to
#: the document first), ``sending`` (``sent_at`` committed, request not yet sent),
#: ``in_flight`` (the ERP is posting), ``posted`` (the ERP answered, nothing recorded), ``marked_posted``
#: (Post & Print: ``posted_at`` recorded, not printed), ``finished`` (outcome recorded, lock still held),
#: ``recovering`` (an orphan re-checked in the ERP, its outcome not recorded).
CRASH_POINTS = ("claimed", "sending", "in_flight", "posted", "marked_posted", "finished", "recovering")
CRASH_AT_ENV = "DYNAMICS_POSTING_CRASH_AT"
CRASH_DELAY_ENV = "DYNAMICS_POSTING_CRASH_DELAY_S"


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
    :ivar waiting_for: the entries whose posting may still be running in the ERP (a dead worker's, or one that
        got no answer); the category waits for them, so nothing else was claimed.
    """

    category_code: str
    posted: int = 0
    printed: int = 0
    failed: list[Failure] = field(default_factory=list)
    rescheduled: list[Failure] = field(default_factory=list)
    recovered: int = 0
    lock_busy: bool = False
    waiting_for: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line, e.g. ``SALESPOST: 9 posted (2 printed), 2 failed, 0 waiting for a rerun, 0 recovered``."""
        line = (
            f"{self.category_code}: {self.posted} posted ({self.printed} printed), {len(self.failed)} failed, "
            f"{len(self.rescheduled)} waiting for a rerun, {self.recovered} recovered"
        )
        if self.waiting_for:
            line += f"; the category waits for {', '.join(self.waiting_for)} (its posting may still be running)"
        return line


@dataclass(frozen=True)
class _Outcome:
    """How an attempt ended; ``status`` In Process means the ERP gave no answer and the entry is released."""

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
    :param task: the Airflow task instance running this drain, kept on each attempt's Job Queue Log Entry (the
        console links the entry to its DAG run and task log); ``None`` outside Airflow (the posting CLI).
    :param lease_s: lease of an In Process entry, renewed by a heartbeat every third of it (seconds).
    :param lock_wait_s: how long to wait for another runner holding the category (seconds).
    :param lock_slice_s: how long the runner keeps the category lock across entries before offering it to
        another runner (seconds); one lock round trip per slice instead of two per entry.
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
        task: PostingTask | None = None,
        lease_s: float = 60.0,
        lock_wait_s: float = 60.0,
        lock_slice_s: float = 0.5,
        progress_every_s: float = 30.0,
    ) -> None:
        self.store = store
        self.bc = bc
        self.category_code = category_code
        self.printer = printer
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}"
        self.task = task
        self.lease_s = lease_s
        self.lock_wait_s = lock_wait_s
        self.lock_slice_s = lock_slice_s
        self.progress_every_s = progress_every_s
        self._job_limited_timeout = False
        crash_at = os.environ.get(CRASH_AT_ENV)
        self._crash_at: tuple[str, int] | None = None
        if crash_at:
            name, _, nth = crash_at.partition(":")
            if name not in CRASH_POINTS:
                raise ValueError(f"{CRASH_AT_ENV}={crash_at!r}: unknown crash point; known: {', '.join(CRASH_POINTS)}")
            self._crash_at = (name, int(nth or 1))
        self._crash_countdown = self._crash_at[1] if self._crash_at else 0

    # -- the loop ------------------------------------------------------------------------------------------
    def drain(self, *, max_entries: int | None = None) -> DrainResult:
        """Post Ready entries one at a time until none is due (or ``max_entries`` were run).

        Expired entries end in Error; entries left In Process by a dead worker are resolved first, and while one
        of them may still be posting in the ERP the category waits (:attr:`DrainResult.waiting_for`).

        :return: counts and the failures to alert on.
        :raises psycopg.Error: when the state store fails (the entry being posted is then recovered by the
            next drain, re-checked against the ERP).
        """
        result = DrainResult(self.category_code)
        conn = self.store.get_conn()
        conn.autocommit = True
        conn.execute(queries.SET_LOCK_TIMEOUT, (f"{int(self.lock_wait_s * 1000)}ms",))
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
            locked_at: float | None = None  # the category lock is held for a slice of entries, then offered
            try:
                while not result.waiting_for and (max_entries is None or runs < max_entries):
                    if locked_at is None:
                        if not self._lock(conn):
                            result.lock_busy = True
                            break
                        locked_at = time.monotonic()
                    claimed = self._claim(conn)
                    if claimed is None:
                        # Nothing due, or the category is blocked by an entry another runner left In Process
                        # since this drain started: resolve it (or wait for it) and try again.
                        if not self._in_process(conn) or not self._recover(conn, result):
                            break
                        continue
                    entry, entry_no = claimed
                    self._crash_point("claimed")
                    heartbeat.entry_id = entry.id
                    try:
                        outcome = self._run(conn, entry)
                    except Exception as exc:  # a bug must not leave the entry In Process until its lease expires
                        log.exception("%s: unexpected error", entry.describe())
                        outcome = _Outcome(
                            Status.ERROR, error_message=f"Unexpected error: {exc}", error_detail=traceback.format_exc()
                        )
                    if outcome.status is Status.IN_PROCESS:
                        conn.execute(queries.RELEASE_UNANSWERED, (outcome.error_message, entry.id))
                        result.waiting_for.append(entry.describe())
                        log.warning("%s: %s", entry.describe(), outcome.error_message)
                    else:
                        self._finish(conn, entry, entry_no, outcome)
                        self._crash_point("finished")
                    heartbeat.entry_id = None
                    runs += 1
                    self._count(entry, outcome, result)
                    now = time.monotonic()
                    if now - locked_at >= self.lock_slice_s:
                        # Another runner waiting in the lock queue gets the category now (Postgres queues it
                        # ahead of this runner's next request).
                        self._unlock(conn)
                        locked_at = None
                    if now - last_progress >= self.progress_every_s:
                        last_progress = now
                        log.info("%s after %.0f s: %s", self.category_code, now - started, result.summary())
            finally:
                if locked_at is not None:
                    self._unlock(conn)
        finally:
            heartbeat.stop()
            conn.close()
        log.info("%s drained in %.1f s: %s", self.category_code, time.monotonic() - started, result.summary())
        return result

    def _crash_point(self, name: str) -> None:
        """Tests only: die here when ``DYNAMICS_POSTING_CRASH_AT`` names this point (see :data:`CRASH_POINTS`)."""
        if self._crash_at is None or self._crash_at[0] != name:
            return
        self._crash_countdown -= 1
        if self._crash_countdown > 0:
            return
        log.warning("Crash point %s reached: killing the process (%s)", name, CRASH_AT_ENV)
        if name == "in_flight":
            delay = float(os.environ.get(CRASH_DELAY_ENV, "0.2"))
            threading.Timer(delay, os.kill, (os.getpid(), signal.SIGKILL)).start()
        else:
            os.kill(os.getpid(), signal.SIGKILL)

    def _in_process(self, conn: psycopg.Connection) -> bool:
        row = conn.execute(queries.COUNT_IN_PROCESS, (self.category_code,)).fetchone()
        return bool(row and row[0])

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
            queries.CLAIM_NEXT.format(columns=JobQueueEntry.columns("claimed.")),
            {
                "category_code": self.category_code,
                "worker": self.worker,
                "lease_s": self.lease_s,
                **(asdict(self.task) if self.task else dict.fromkeys(_TASK_FIELDS)),
            },
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

    def _recover(self, conn: psycopg.Connection, result: DrainResult) -> bool:
        """Resolve the entries In Process whose worker is gone (its session ended, its lease expired, or the ERP
        gave it no answer).

        An entry whose posting request may have reached the ERP (``sent_at`` set) is resolved only when the ERP
        shows the document posted or when the attempt's Job Timeout has passed; until then it stays In Process,
        is named in :attr:`DrainResult.waiting_for`, and the category waits.

        :return: whether the category is free: at least one entry was resolved and none is left to wait for.
        """
        orphans = [
            (JobQueueEntry.from_row(row[:-1]), bool(row[-1]))
            for row in conn.execute(
                queries.SELECT_ORPHANED.format(columns=JobQueueEntry.columns()), (self.category_code,)
            )
        ]
        resolved = 0
        for entry, timeout_passed in orphans:
            outcome = self._recovered_outcome(entry, timeout_passed)
            if outcome is None:
                result.waiting_for.append(entry.describe())
                continue
            self._crash_point("recovering")
            entry_no = self._open_log_entry(conn, entry)
            self._finish(conn, entry, entry_no, outcome)
            resolved += 1
            result.recovered += 1
            log.warning("Recovered %s left In Process by %s: now %s", entry.describe(), entry.worker, outcome.status)
            if outcome.status is Status.ERROR:
                result.failed.append(Failure(entry.describe(), entry.user_id, outcome.error_message or ""))
        if result.waiting_for:
            log.warning(
                "%s waits: the posting of %s may still be running in Business Central; nothing else of the "
                "category is posted until the ERP shows it posted or its Job Timeout has passed",
                self.category_code,
                ", ".join(result.waiting_for),
            )
        return resolved > 0 and not result.waiting_for

    def _recovered_outcome(self, entry: JobQueueEntry, timeout_passed: bool) -> _Outcome | None:
        """The outcome of an attempt whose worker is gone; ``None`` while its posting may still be running."""
        doc_type = document_type(entry.document_type)
        stopped = entry.error_message or f"The worker {entry.worker} stopped while running this entry"
        if entry.posted_at is not None:
            posted: bool | None = True
        elif entry.sent_at is None:
            posted = False  # the attempt died before sending anything: nothing can be running in the ERP
        else:
            try:
                posted = self._is_posted(entry, doc_type)
            except ApiError as exc:
                log.warning("%s: cannot re-check it in the ERP yet (%s); left In Process", entry.describe(), exc)
                return None
            if posted is False and not timeout_passed:
                return None
        if posted and entry.post_and_print and entry.printed_at is None:
            return _Outcome(
                Status.ERROR, posted=True, error_message=f"{entry.describe()} was posted but not printed: {stopped}."
            )
        if posted:
            return _Outcome(Status.FINISHED, posted=True)
        if posted is None:
            return _Outcome(
                Status.ERROR,
                error_message=f"{stopped}, and {entry.describe()} is neither open nor posted in Business Central.",
            )
        if entry.sent_at is not None:
            stopped += f"; its Job Timeout of {format_duration(entry.timeout_s)} has passed"
        status = Status.READY if entry.attempts < entry.max_attempts else Status.ERROR
        return _Outcome(status, error_message=f"{stopped}; the document was not posted.")

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
    def _run(self, conn: psycopg.Connection, entry: JobQueueEntry) -> _Outcome:
        doc_type = document_type(entry.document_type)
        deadline = time.monotonic() + entry.timeout_s
        through_page = bool(entry.posting_options.get("posting_page"))
        if through_page and not self.bc.has_endpoint(doc_type.posting_documents):
            try:
                self.bc.require_endpoint(
                    doc_type.posting_documents, f"{entry.describe()}, queued with {_page_options(entry)},"
                )
            except MissingEndpointError as exc:
                return _Outcome(Status.ERROR, error_message=str(exc))  # nothing was sent
        try:
            if entry.sent_at is None:  # the claim marked it sent unless options are written first
                self._apply_posting_options(entry, doc_type, deadline)
                conn.execute(queries.MARK_SENT, (entry.id,))
            self._crash_point("sending")
            timeout = self._call_timeout(deadline)
            self._crash_point("in_flight")
            if through_page:  # the posting page posts with the Ship/Receive and Invoice just written
                self.bc.post_action(
                    doc_type.posting_documents, str(entry.document_id), "Microsoft.NAV.post", timeout=timeout
                )
            else:
                self.bc.post_action(doc_type.entity_set, str(entry.document_id), doc_type.action, timeout=timeout)
            self._crash_point("posted")
        except (ApiError, _JobTimeout) as exc:
            outcome = self._after_failed_post(entry, doc_type, exc)
            if outcome is not None:
                return outcome
        if not entry.post_and_print:
            return _Outcome(Status.FINISHED, posted=True)
        return self._print(entry, doc_type, deadline)

    def _apply_posting_options(self, entry: JobQueueEntry, doc_type: DocumentType, deadline: float) -> None:
        """Batch Post's Replace Posting Date / Replace Document Date (API v2.0), then on the posting page an
        order's Ship/Receive and Invoice and Replace VAT Date, in Business Central's order: the posting date is
        validated first (it moves the VAT date with it), the VAT date is replaced after it."""
        options = entry.posting_options
        posting_date = options.get("posting_date")
        changes: dict[str, Any] = {}
        if posting_date and options.get("replace_posting_date"):
            changes[doc_type.posting_date_field] = posting_date
        if posting_date and options.get("replace_document_date"):
            changes[doc_type.document_date_field] = posting_date
        if changes:
            self.bc.update(doc_type.entity_set, str(entry.document_id), changes, timeout=self._call_timeout(deadline))
        if not options.get("posting_page"):
            return
        page: dict[str, Any] = {}
        if doc_type.is_order:
            page[doc_type.ship_field] = bool(options.get("ship", True))
            page["invoice"] = bool(options.get("invoice", True))
        if options.get("replace_vat_date") and options.get("vat_date"):
            page["vatDate"] = options["vat_date"]
        if page:
            self.bc.update(
                doc_type.posting_documents, str(entry.document_id), page, timeout=self._call_timeout(deadline)
            )

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
        if exc.status is None:
            # No answer: the ERP may still be posting it. Re-sending it, or posting another document of the
            # category, could run two postings at once; the category waits (see _recover).
            return _Outcome(
                Status.IN_PROCESS,
                error_message=f"Business Central gave no answer to the posting of {entry.describe()} ({exc.message}); "
                f"the category waits until it shows the document posted or the Job Timeout of "
                f"{format_duration(entry.timeout_s)} has passed.",
            )
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
        options = entry.posting_options
        if doc_type.fully_shipped_field and options.get("posting_page") and not options.get("invoice", True):
            # Shipped (received) only: the order stays, shipped in full.
            return bool(record.get(doc_type.fully_shipped_field))
        return False

    def _posted_from_order(self, doc_type: DocumentType, order_id: str) -> dict[str, Any] | None:
        assert doc_type.posted_entity_set is not None
        found = self.bc.find_by(doc_type.posted_entity_set, "orderId", order_id)
        return found[0] if found else None

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
        self._crash_point("marked_posted")

    def _call_timeout(self, deadline: float) -> float:
        """The entry's remaining Job Timeout, as the timeout of the next API call (the hook caps it at the
        connection's ``extra.timeout``). :raises _JobTimeout: when none remains."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _JobTimeout()
        self._job_limited_timeout = remaining < self.bc.settings.timeout
        return remaining


def _page_options(entry: JobQueueEntry) -> str:
    """The options of ``entry`` that need the posting page, named as Batch Post names them."""
    options = entry.posting_options
    named = []
    if not (options.get("ship", True) and options.get("invoice", True)):
        named.append("Ship/Receive only" if options.get("ship", True) else "Invoice only")
    if options.get("replace_vat_date"):
        named.append("Replace VAT Date")
    return " and ".join(named) or "posting page options"


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
