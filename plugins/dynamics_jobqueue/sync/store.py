"""Reads and writes of the sync state in the state store (couplings, watermarks, job log, errors, staging).

One :class:`SyncStore` serves one mapping run on one Postgres connection. It holds the mapping's advisory lock
for the whole run, so runs of the same mapping never overlap across workers, and writes each page's outcome in
one transaction: couplings, error state, job errors and job counts together. A crash between two pages leaves
only whole pages behind; the watermark moves at the end of a pass, so the next run reads the interrupted pages
again and finds their records coupled and unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd
from psycopg.types.json import Jsonb

from dynamics_jobqueue.sync import queries as q

if TYPE_CHECKING:
    import psycopg

    from dynamics_jobqueue.hooks.state import StateStoreHook

log = logging.getLogger(__name__)

COUPLING_COLUMNS = [
    "erp_id",
    "crm_id",
    "erp_key",
    "crm_key",
    "erp_modified_at",
    "crm_version",
    "erp_hash",
    "crm_hash",
    "write_back_pending",
]


class MappingBusyError(RuntimeError):
    """Another run of the same mapping holds its lock (a parallel DAG run or a stuck worker)."""


@dataclass(frozen=True)
class Coupling:
    """A coupling row to write (columns of ``dynamics.sync_coupling``)."""

    erp_id: str
    crm_id: str
    erp_key: str | None
    crm_key: str | None
    erp_modified_at: datetime | None
    crm_version: int | None
    erp_hash: str | None
    crm_hash: str | None
    #: a pair made in this page (insert, match, restore) rather than an existing one updated
    is_new: bool = False
    #: the pair owes the CRM its to-CRM fields (created from the CRM, not yet written back): ``True`` sets the
    #: flag, ``False`` clears it (the ERP->CRM direction wrote the pair), ``None`` keeps it
    write_back: bool | None = False


@dataclass(frozen=True)
class PendingCreate:
    """A create sent (or about to be sent) whose coupling is not committed yet (``dynamics.sync_pending_create``).

    :param direction: ``to_crm`` or ``from_crm``. :param source_id: the record the create copies.
    :param dest_key: how the created record is found: its business key, or its id when ``dest_key_is_id``.
    :param coupling: the coupling the create makes, with a blank id on the destination side.
    """

    direction: str
    source_id: str
    dest_key: str
    dest_key_is_id: bool
    coupling: Coupling


@dataclass(frozen=True)
class RecordFailure:
    """A failed record: its source id and key, the destination id when known, an
    :class:`~dynamics_jobqueue.sync.planner.ErrorKind`, the message (compared to spot repeated errors) and the
    detail (the API's full answer)."""

    source_id: str
    source_key: str | None
    destination_id: str | None
    kind: str
    message: str
    detail: str | None = None


@dataclass
class PageOutcome:
    """Everything one page changes in the state store, committed in one transaction.

    :param counts: increments of the job's Inserted, Modified, Deleted, Unchanged, Skipped, Failed (one per
        record) and Coupled, Uncoupled (besides: a record coupled by match is also Unchanged or Modified).
    :param staging_marks: ``(crm_id, erp_values_hash, consumed)`` for the staged CRM records the ERP->CRM pass
        met: the fingerprint of the ERP's current from-CRM fields, and whether the CRM->ERP pass must leave the
        pair alone.
    """

    couplings: list[Coupling] = field(default_factory=list)
    removed_couplings: list[str] = field(default_factory=list)
    succeeded: list[str] = field(default_factory=list)
    failures: list[RecordFailure] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    staging_marks: list[tuple[str, str | None, bool]] = field(default_factory=list)


class SyncStore:
    """The sync state of one mapping run.

    :param conn: an open psycopg connection (not in autocommit; each call manages its own transaction).
    :param mapping: the mapping's name.
    """

    def __init__(self, conn: psycopg.Connection, mapping: str) -> None:
        self.conn = conn
        self.mapping = mapping

    # -- session ------------------------------------------------------------------------------------------
    @classmethod
    @contextmanager
    def open(cls, hook: StateStoreHook, mapping: str) -> Iterator[SyncStore]:
        """Connect, take the mapping's lock, mark jobs left running by a dead worker as interrupted.

        :raises MappingBusyError: when another run of ``mapping`` holds the lock.
        """
        conn = hook.get_conn()
        conn.autocommit = True
        try:
            locked = conn.execute(q.TRY_LOCK, (mapping,)).fetchone()
            if not locked or not locked[0]:
                raise MappingBusyError(
                    f"another run of {mapping} is in progress (its advisory lock is held); this run did nothing"
                )
            try:
                conn.execute(q.INTERRUPT_STALE_JOBS, (mapping,))
                conn.autocommit = False
                yield cls(conn, mapping)
            finally:
                if conn.info.transaction_status.name != "IDLE":
                    conn.rollback()
                conn.autocommit = True
                conn.execute(q.UNLOCK, (mapping,))
        finally:
            conn.close()

    @classmethod
    @contextmanager
    def connect(cls, hook: StateStoreHook, mapping: str) -> Iterator[SyncStore]:
        """A second connection for a run that already holds the mapping's lock (its page writer thread)."""
        conn = hook.get_conn()
        conn.autocommit = False
        try:
            yield cls(conn, mapping)
        finally:
            conn.close()

    # -- settings ---------------------------------------------------------------------------------------------
    def setting(self, key: str) -> Any:
        """A value of ``dynamics.settings``, or ``None``."""
        with self.conn.transaction():
            row = self.conn.execute(q.GET_SETTING, (key,)).fetchone()
        return row[0] if row else None

    def save_setting(self, key: str, value: Any) -> None:
        with self.conn.transaction():
            self.conn.execute(q.PUT_SETTING, (key, Jsonb(value)))

    # -- watermarks and jobs -----------------------------------------------------------------------------------
    def watermark(self, direction: str) -> datetime | int | None:
        """Where the pass's candidates start: the ERP modified-on (``to_crm``) or the CRM version
        (``from_crm``); ``None`` before the first sync."""
        with self.conn.transaction():
            row = self.conn.execute(q.WATERMARK, (self.mapping, direction)).fetchone()
        if row is None:
            return None
        return row[0] if row[0] is not None else row[1]

    def start_job(self, run_id: str, direction: str, full_sync: bool) -> int:
        """Open an Integration Synch. Job row (status ``running``) and return its id."""
        with self.conn.transaction():
            row = self.conn.execute(q.START_JOB, (run_id, self.mapping, direction, full_sync)).fetchone()
        assert row is not None
        return int(row[0])

    def finish_job(
        self,
        job_id: int,
        *,
        status: str,
        message: str | None,
        direction: str,
        watermark: datetime | int | None,
        overlap: Sequence[tuple[str, str, str]] | None = None,
    ) -> None:
        """Close the job and move the pass's watermark, in one transaction.

        The watermark only moves forward (``GREATEST``), so a full sync never moves it back.

        :param overlap: ``(source_id, marker, digest)`` of the records read after the new watermark (the next run
            reads them again); replaces the pass's previous set (:meth:`read_overlap`). ``None`` keeps it.
        """
        with self.conn.transaction(), self.conn.cursor() as cur:
            if watermark is not None:
                modified, version = (None, watermark) if isinstance(watermark, int) else (watermark, None)
                cur.execute(q.SET_WATERMARK, (self.mapping, direction, modified, version))
                if overlap is not None:
                    cur.execute(q.CLEAR_READ_OVERLAP, (self.mapping, direction))
                    with cur.copy(q.COPY_READ_OVERLAP) as copy:
                        for source_id, marker, digest in overlap:
                            copy.write_row((self.mapping, direction, source_id, marker, digest))
            cur.execute(q.FINISH_JOB, (status, message, job_id))

    def read_overlap(self, direction: str) -> dict[str, str]:
        """What the last pass read after its watermark: source id -> digest of the record as read."""
        with self.conn.transaction():
            return dict(self.conn.execute(q.READ_OVERLAP, (self.mapping, direction)).fetchall())

    # -- page state -------------------------------------------------------------------------------------------
    def couplings(self, by: str, values: Sequence[str], mapping: str | None = None) -> pd.DataFrame:
        """Coupling rows of ``mapping`` (default this run's) whose ``by`` column (``erp_id``, ``crm_id`` or
        ``erp_key``) is one of ``values``; columns :data:`COUPLING_COLUMNS`."""
        with self.conn.transaction():
            rows = self.conn.execute(q.COUPLINGS_BY[by], (mapping or self.mapping, list(values))).fetchall()
        return pd.DataFrame(rows, columns=COUPLING_COLUMNS, dtype=object)

    def record_state(self, job_id: int, to_crm_ids: Sequence[str], from_crm_ids: Sequence[str]) -> pd.DataFrame:
        """Error state of records on either side: ``direction``, ``source_id``, ``skipped``, ``handled``
        (already failed in job ``job_id``)."""
        with self.conn.transaction():
            rows = self.conn.execute(
                q.RECORD_STATE, ([job_id], self.mapping, list(to_crm_ids), list(from_crm_ids))
            ).fetchall()
        return pd.DataFrame(rows, columns=["direction", "source_id", "skipped", "handled"])

    def retry_ids(self, direction: str) -> list[str]:
        """Source ids of records that failed before and are not Skipped: read again by id."""
        with self.conn.transaction():
            return [r[0] for r in self.conn.execute(q.RETRY_IDS, (self.mapping, direction)).fetchall()]

    def errored_ids(self, direction: str) -> set[str]:
        """Source ids of records with an error state in ``direction`` (failing or Skipped)."""
        with self.conn.transaction():
            return {r[0] for r in self.conn.execute(q.ERRORED_IDS, (self.mapping, direction)).fetchall()}

    def clear_errors(self, direction: str, source_ids: Sequence[str]) -> None:
        """Forget the error state of records that no longer need a retry."""
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.executemany(q.RECORD_SUCCEEDED, [(self.mapping, direction, s) for s in source_ids])

    def conflict_crm_ids(self) -> list[str]:
        """CRM ids of pairs whose update conflict is unresolved."""
        with self.conn.transaction():
            return [r[0] for r in self.conn.execute(q.CONFLICT_CRM_IDS, (self.mapping,)).fetchall()]

    def conflict_choices(self) -> pd.DataFrame:
        """Users' choices for this mapping's update conflicts not applied yet (mapping resolution ``ask``):
        indexed by ERP id, columns ``resolution`` (``send_erp_data``/``take_crm_data``) and ``chosen_by``."""
        with self.conn.transaction():
            rows = self.conn.execute(q.PENDING_CHOICES, (self.mapping,)).fetchall()
        return pd.DataFrame(rows, columns=["source_id", "resolution", "chosen_by"]).set_index("source_id")

    def choices_applied(self, job_id: int, source_ids: Sequence[str]) -> None:
        """Record that ``job_id`` applied the pending choices of these ERP records."""
        with self.conn.transaction():
            self.conn.execute(q.CHOICES_APPLIED, (job_id, self.mapping, list(source_ids)))

    # -- pending couplings -------------------------------------------------------------------------------------
    def add_pending(self, creates: Sequence[PendingCreate]) -> None:
        """Record creates about to be sent, committed before they are (the pending-coupling protocol).

        By ``COPY``: a page of 20,000 creates records its pending couplings in a fraction of a second."""
        if not creates:
            return
        direction = creates[0].direction
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.execute(q.DROP_PENDING, (self.mapping, direction, [p.source_id for p in creates]))
            with cur.copy(q.COPY_PENDING) as copy:
                for p in creates:
                    c = p.coupling
                    copy.write_row(
                        (
                            self.mapping,
                            p.direction,
                            p.source_id,
                            p.dest_key,
                            p.dest_key_is_id,
                            c.erp_key,
                            c.crm_key,
                            c.erp_modified_at,
                            c.crm_version,
                            c.erp_hash,
                            c.crm_hash,
                        )
                    )

    def pending(self) -> list[PendingCreate]:
        """The creates of this mapping whose outcome was never committed (a crash or a lost answer)."""
        with self.conn.transaction():
            rows = self.conn.execute(q.PENDING, (self.mapping,)).fetchall()
        return [
            PendingCreate(
                direction=direction,
                source_id=source_id,
                dest_key=dest_key,
                dest_key_is_id=is_id,
                coupling=Coupling(
                    erp_id="",
                    crm_id="",
                    erp_key=erp_key,
                    crm_key=crm_key,
                    erp_modified_at=modified,
                    crm_version=version,
                    erp_hash=erp_hash,
                    crm_hash=crm_hash,
                    is_new=True,
                ),
            )
            for direction, source_id, dest_key, is_id, erp_key, crm_key, modified, version, erp_hash, crm_hash in rows
        ]

    def settle_pending(self, direction: str, couplings: Sequence[Coupling], source_ids: Sequence[str]) -> None:
        """Commit the couplings of pending creates found in the destination and forget ``source_ids``' pending
        creates (found or not: a create that never arrived is simply made again), in one transaction."""
        with self.conn.transaction(), self.conn.cursor() as cur:
            self._write_outcome(cur, 0, direction, PageOutcome(couplings=list(couplings)), skip_after=0)
            cur.execute(q.DROP_PENDING, (self.mapping, direction, list(source_ids)))

    def write_back_pending(self) -> list[str]:
        """ERP ids of pairs created from the CRM whose to-CRM fields were never written back."""
        with self.conn.transaction():
            return [r[0] for r in self.conn.execute(q.WRITE_BACK_PENDING, (self.mapping,)).fetchall()]

    def clear_write_back(self, erp_ids: Sequence[str]) -> None:
        """Forget the write-back of pairs whose ERP record left the mapping's filter or no longer exists."""
        with self.conn.transaction():
            self.conn.execute(q.CLEAR_WRITE_BACK, (self.mapping, list(erp_ids)))

    # -- staging ----------------------------------------------------------------------------------------------
    def clear_staging(self) -> None:
        with self.conn.transaction():
            self.conn.execute(q.CLEAR_STAGING, (self.mapping,))

    def stage(self, rows: list[tuple[str, int | None, dict[str, Any]]]) -> None:
        """Keep CRM records ``(crm_id, versionnumber, record)`` for this run."""
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.executemany(q.STAGE, [(self.mapping, crm_id, version, Jsonb(rec)) for crm_id, version, rec in rows])

    def staged(self, crm_ids: Sequence[str]) -> list[tuple[str, dict[str, Any]]]:
        """Staged records among ``crm_ids``."""
        with self.conn.transaction():
            return [(r[0], r[1]) for r in self.conn.execute(q.STAGED_BY_CRM_ID, (self.mapping, list(crm_ids)))]

    def staged_pages(self, page_size: int) -> Iterator[list[tuple[str, dict[str, Any], str | None]]]:
        """Pages of staged records the CRM->ERP pass still has to handle: ``(crm_id, record, erp_values_hash)``."""
        after = ""
        while True:
            with self.conn.transaction():
                rows = self.conn.execute(q.STAGED_PAGE, (self.mapping, after, page_size)).fetchall()
            if not rows:
                return
            yield [(r[0], r[1], r[2]) for r in rows]
            after = rows[-1][0]

    def count_staged(self) -> int:
        with self.conn.transaction():
            row = self.conn.execute(q.COUNT_STAGED, (self.mapping,)).fetchone()
        return int(row[0]) if row else 0

    # -- commit ----------------------------------------------------------------------------------------------
    def commit_page(
        self,
        job_id: int,
        direction: str,
        outcome: PageOutcome,
        *,
        skip_after: int,
        before_commit: Callable[[], None] | None = None,
    ) -> None:
        """Write one page's outcome in one transaction (see :class:`PageOutcome`).

        :param before_commit: called when everything is written and not yet committed (a crash point).
        """
        with self.conn.transaction(), self.conn.cursor() as cur:
            self._write_outcome(cur, job_id, direction, outcome, skip_after)
            if before_commit is not None:
                before_commit()

    def _write_outcome(
        self, cur: psycopg.Cursor, job_id: int, direction: str, outcome: PageOutcome, skip_after: int
    ) -> None:
        counts = outcome.counts
        for erp_id in outcome.removed_couplings:
            cur.execute(q.DELETE_COUPLING_BY_ERP_ID, (self.mapping, erp_id))
        if outcome.couplings:
            cur.execute(q.CREATE_COUPLING_INPUT)
            with cur.copy(q.COPY_COUPLING_INPUT) as copy:
                for c in outcome.couplings:
                    copy.write_row(
                        (
                            c.erp_id,
                            c.crm_id,
                            c.erp_key,
                            c.crm_key,
                            c.erp_modified_at,
                            c.crm_version,
                            c.erp_hash,
                            c.crm_hash,
                            c.is_new,
                            c.write_back,
                        )
                    )
            if any(c.is_new for c in outcome.couplings):
                cur.execute(q.DELETE_REPLACED_COUPLINGS, (self.mapping,))
            cur.execute(q.MERGE_COUPLINGS, (self.mapping,))
            cur.execute(q.SET_WRITE_BACK, (self.mapping,))
        # The page's creates have an outcome now: coupled or failed.
        settled = [c.erp_id if direction == "to_crm" else c.crm_id for c in outcome.couplings]
        settled += [f.source_id for f in outcome.failures]
        if settled:
            cur.execute(q.DROP_PENDING, (self.mapping, direction, settled))
        if outcome.succeeded:
            cur.executemany(q.RECORD_SUCCEEDED, [(self.mapping, direction, s) for s in outcome.succeeded])
        if outcome.failures:
            cur.executemany(
                q.RECORD_FAILED,
                [
                    (
                        self.mapping,
                        direction,
                        f.source_id,
                        f.source_key,
                        f.destination_id,
                        f.kind,
                        f.message,
                        f.detail,
                        job_id,
                        skip_after,
                        skip_after,
                    )
                    for f in outcome.failures
                ],
            )
            cur.executemany(
                q.JOB_ERROR,
                [
                    (job_id, f.source_id, f.source_key, f.destination_id, f.kind, f.message, f.detail)
                    for f in outcome.failures
                ],
            )
        if outcome.staging_marks:
            cur.executemany(
                q.MARK_STAGED,
                [(values_hash, used, self.mapping, crm_id) for crm_id, values_hash, used in outcome.staging_marks],
            )
        if any(counts.values()):
            cur.execute(
                q.ADD_COUNTS,
                (
                    counts.get("inserted", 0),
                    counts.get("modified", 0),
                    counts.get("deleted", 0),
                    counts.get("unchanged", 0),
                    counts.get("skipped", 0),
                    counts.get("failed", 0),
                    counts.get("coupled", 0),
                    counts.get("uncoupled", 0),
                    job_id,
                ),
            )


def reset_skipped(hook: StateStoreHook, mapping: str, source_ids: Sequence[str] | None = None) -> int:
    """Un-skip records of ``mapping`` (BC: restore a Skipped record) so the next run retries them.

    :param hook: the state store.
    :param mapping: the table mapping's name, e.g. ``CONTACT``.
    :param source_ids: only these source record ids (ERP ids, or CRM ids for the CRM->ERP direction); all when
        ``None``.
    :return: how many records were un-skipped.
    """
    ids = list(source_ids) if source_ids is not None else None
    with hook.transaction() as cur:
        cur.execute(q.RESET_SKIPPED, (mapping, ids, ids))
        return int(cur.rowcount or 0)


def clear_watermarks(hook: StateStoreHook, mapping: str) -> None:
    """Forget ``mapping``'s watermarks: its next run reads every record again (couplings keep it cheap)."""
    with hook.transaction() as cur:
        cur.execute(q.CLEAR_WATERMARKS, (mapping,))
        cur.execute(q.CLEAR_READ_OVERLAP_OF_MAPPING, (mapping,))
