"""One run of one table mapping (docs/reference/dynamics-semantics.md section 1, "One run of one mapping").

A run holds the mapping's lock and makes one pass per direction, ERP->CRM first (BC's order):

1. For a bidirectional mapping, the CRM records changed since the CRM watermark by anyone but the integration
   user (plus the CRM records of earlier failures) are read first into a staging table, so the ERP->CRM pass
   finds update conflicts with a join and the CRM->ERP pass needs no second read.
2. Each pass reads its candidates: first the records that failed before (by id, never lost behind the
   watermark), then the records modified after the watermark, page by page (memory stays bounded by the page
   size). Per page: couplings, error state and lookups come from the state store in a few queries, the
   :mod:`planner` decides, the :mod:`writer` writes in ``$batch`` requests, and the page's outcome is committed
   in one transaction.
3. The pass closes its job (Inserted, Modified, Deleted, Unchanged, Skipped, Failed) and moves its watermark
   in one transaction. Records created in the ERP from the CRM get their to-CRM fields (the new number, the
   owner) written back in the same run.

Errors: a record's failure is recorded and the run goes on; when the run ends with failed records,
:class:`SyncRecordsFailed` lists the counts and the first records with reasons. An error that is not about one
record (authentication, throttling or an outage after the hook's retries) stops the run at once with
:class:`SyncSystemicError`; whatever was committed stays and the next run continues from there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import uuid
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pandas as pd

from dynamics_jobqueue.hooks.errors import ApiError
from dynamics_jobqueue.sync import crash_points
from dynamics_jobqueue.sync.endpoints import CrmEndpoint, ErpEndpoint, compare_filter
from dynamics_jobqueue.sync.fingerprint import fingerprint_rows
from dynamics_jobqueue.sync.lookups import LookupResolver
from dynamics_jobqueue.sync.mapping import Direction, Side, TableMapping, UpdateConflictResolution
from dynamics_jobqueue.sync.planner import (
    MODIFIED,
    MODIFIED_ON,
    PageInput,
    apply_lookups,
    current_values,
    hash_columns,
    mapped_values,
    plan_page,
)
from dynamics_jobqueue.sync.store import RecordFailure, SyncStore
from dynamics_jobqueue.sync.writer import Page, PageWriter

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from dynamics_jobqueue.hooks.business_central import BusinessCentralHook
    from dynamics_jobqueue.hooks.dataverse import DataverseHook
    from dynamics_jobqueue.hooks.state import StateStoreHook
    from dynamics_jobqueue.sync.loader import MappingSet

log = logging.getLogger(__name__)

#: The Integration Synch. Job's counters (table 5338): one of the first six per record met by a pass; Coupled
#: (coupled to an existing counterpart by match) and Uncoupled (coupling removed) count besides.
COUNT_NAMES = ("inserted", "modified", "deleted", "unchanged", "skipped", "failed", "coupled", "uncoupled")
#: The counters whose sum is zero for a job that did nothing (BC: "Integration Synch. Job".HaveJobsBeenIdle, which
#: puts a recurring job queue entry On Hold with Inactivity Timeout).
ACTIVE_COUNTS = ("inserted", "modified", "deleted", "failed")
#: How many failed records an alert lists.
ALERT_RECORDS = 10
#: Records planned and written as one unit inside a read page (five Dataverse ``$batch`` requests).
SLICE = 5_000
#: Slices written at the same time by the page pipeline.
PIPELINE_WORKERS = 2
#: How far before the pass's start an ERP watermark is capped (BC: codeunit "CRM Integration Table Synch." caps
#: at the job's start and reads ``> watermark - 999 ms``): a change stamped around the cap is read again.
ERP_OVERLAP = timedelta(milliseconds=999)


@dataclass
class PassResult:
    """The outcome of one direction of a mapping run.

    :param counts: the :data:`COUNT_NAMES` counters.
    :param failures: the first failed records (at most :data:`ALERT_RECORDS`).
    :param handled: ids of the source records this pass has planned: a record met again later in the pass (a
        failed record retried by id, then read again among the changes) is ignored, never counted twice.
    """

    mapping: str
    flow: Direction
    job_id: int
    counts: Counter = field(default_factory=Counter)
    failures: list[RecordFailure] = field(default_factory=list)
    handled: set[str] = field(default_factory=set)

    @property
    def idle(self) -> bool:
        """The pass did nothing: no record inserted, modified, deleted or failed (BC's HaveJobsBeenIdle)."""
        return not any(self.counts[name] for name in ACTIVE_COUNTS)


@dataclass
class MappingRunResult:
    """The outcome of a mapping run: one :class:`PassResult` per direction."""

    mapping: str
    passes: list[PassResult]

    @property
    def failed(self) -> int:
        return sum(p.counts["failed"] for p in self.passes)

    @property
    def idle(self) -> bool:
        """Every pass did nothing (see :attr:`PassResult.idle`)."""
        return all(p.idle for p in self.passes)

    def describe(self) -> str:
        """Counts per direction and the first failed records with their reasons (the task's alert text)."""
        lines = []
        for p in self.passes:
            counts = ", ".join(f"{name.capitalize()} {p.counts[name]}" for name in COUNT_NAMES)
            lines.append(f"{self.mapping} {p.flow.label}: {counts}")
            for failure in p.failures:
                key = f" ({failure.source_key})" if failure.source_key else ""
                dest = f" -> {failure.destination_id}" if failure.destination_id else ""
                lines.append(f"  - {failure.source_id}{key}{dest}: {failure.message}")
            if p.counts["failed"] > len(p.failures):
                lines.append(
                    f"  ... and {p.counts['failed'] - len(p.failures)} more (dynamics.sync_job_error, job {p.job_id})"
                )
        return "\n".join(lines)


class SyncRecordsFailed(Exception):
    """Some records failed; everything else of the run is committed. Not worth an immediate retry: the next
    scheduled run retries the failed records.

    :param result: the run's result; the message lists counts and the first failed records.
    """

    def __init__(self, result: MappingRunResult) -> None:
        self.result = result
        super().__init__(f"{result.failed} record(s) failed to sync\n{result.describe()}")


class SyncSystemicError(Exception):
    """The run stopped on an error that is not about one record (authentication, throttling, an outage).

    :param mapping: the mapping. :param error: the API error.
    """

    def __init__(self, mapping: str, error: ApiError) -> None:
        self.error = error
        super().__init__(
            f"{mapping}: stopped on {type(error).__name__} ({error}). Every page committed before stays committed. "
            "Writes of the page in flight may have reached the other system before the error (its answer was "
            "lost), so some of its records can be there already without their couplings: the next run finds them "
            "by their keys and couples them instead of writing them twice."
        )


class MappingRunner:
    """Runs one table mapping.

    :param mapping: the mapping to run. :param mappings: all mappings (lookups name others).
    :param state: the state store hook. :param erp_hook: Business Central. :param crm_hook: Dataverse.
    :param run_id: names the run in the job log (the Airflow DAG run id); a new id when ``None``.
    :param full_sync: ignore the watermarks and read every record; couplings still make unchanged records cost
        no write.
    :param full_synch_review: run as BC's *Full Synch. Review* (the first synchronization; table "CRM
        Full Synch. Review Line", page "CDS Full Synch. Review"): uncoupled records that match
        nothing are created and coupled even when the mapping has ``synch_only_coupled_records``. The
        operator passes ``full_sync`` with it (a review reads every record).
    :param erp_page_size: records per Business Central page (max 20,000).
    :param crm_page_size: records per Dataverse page (max 5,000).
    :param checkpoint: called with the name of each boundary the run passes (:mod:`.crash_points`); by default
        :func:`.crash_points.from_environment`, a no-op unless a crash-safety test names a point to die at.
    """

    def __init__(
        self,
        mapping: TableMapping,
        mappings: MappingSet,
        *,
        state: StateStoreHook,
        erp_hook: BusinessCentralHook,
        crm_hook: DataverseHook,
        run_id: str | None = None,
        full_sync: bool = False,
        full_synch_review: bool = False,
        erp_page_size: int = 20_000,
        crm_page_size: int = 5_000,
        checkpoint: Callable[[str], None] | None = None,
    ) -> None:
        self.mapping = replace(mapping, synch_only_coupled_records=False) if full_synch_review else mapping
        self.mappings = mappings
        self.state = state
        self.erp = ErpEndpoint(erp_hook, erp_page_size)
        self.crm = CrmEndpoint(crm_hook, crm_page_size)
        self.run_id = run_id or f"manual__{uuid.uuid4()}"
        self.full_sync = full_sync
        self.crm_page_size = crm_page_size
        self.checkpoint = checkpoint or crash_points.from_environment()
        self._result_lock = threading.Lock()

    # -- the run --------------------------------------------------------------------------------------------
    def run(self) -> MappingRunResult:
        """Run every direction of the mapping.

        :return: the result (also when records failed).
        :raises SyncSystemicError: on authentication, throttling or outage errors after the hooks' retries.
        :raises MappingBusyError: when another run of the mapping is in progress.
        """
        with SyncStore.open(self.state, self.mapping.name) as store:
            self.store = store
            try:
                self.integration_user = self._integration_user()
                self.lookups = LookupResolver(store, self.erp, self.crm, self.mappings, self.integration_user)
                self.writer = self._writer(store)
                self._settle_pending()
                crm_watermark = None
                if self.mapping.direction is Direction.BIDIRECTIONAL:
                    crm_watermark = self._stage_crm_changes()
                passes = [self._run_pass(flow, crm_watermark) for flow in self.mapping.flows]
            except ApiError as exc:
                if exc.is_systemic:
                    raise SyncSystemicError(self.mapping.name, exc) from exc
                raise
        return MappingRunResult(self.mapping.name, passes)

    def _writer(self, store: SyncStore) -> PageWriter:
        return PageWriter(
            self.mapping, store, self.erp, self.crm, self.lookups, self.integration_user, checkpoint=self.checkpoint
        )

    def _integration_user(self) -> str:
        """The integration user's systemuserid (``WhoAmI``), remembered per CRM connection in the state store.

        It never changes for a given organisation and application user, so runs after the first need no call.
        """
        hook = self.crm.hook
        key = f"sync.integration_user:{hook.api_root}:{hook.get_connection(hook.conn_id).login}"
        cached = self.store.setting(key)
        if cached:
            return str(cached)
        user = self.crm.hook.who_am_i().lower()
        self.store.save_setting(key, user)
        return user

    @property
    def _not_by_integration_user(self) -> str | None:
        """The CRM filter that leaves out the integration user's own changes (they would ping-pong back).

        Only needed for CRM tables that some mapping writes; a table the sync only reads (systemusers) has no
        such echoes, and whoever created its rows (possibly the integration user) does not matter.
        """
        written = any(
            m.crm.entity_set == self.mapping.crm.entity_set and m.direction.includes(Direction.TO_CRM)
            for m in self.mappings
        )
        return compare_filter("_modifiedby_value", "ne", self.integration_user) if written else None

    def _by_integration_user(self, record: dict[str, Any]) -> bool:
        return self._not_by_integration_user is not None and (
            str(record.get("_modifiedby_value") or "").lower() == self.integration_user
        )

    # -- the pending-coupling protocol ---------------------------------------------------------------------------
    def _settle_pending(self) -> None:
        """Commit the couplings of creates whose outcome a crash or a lost answer left unknown.

        Every create is recorded with the coupling it makes before it is sent (:meth:`.PageWriter._add_pending`)
        and the page's commit forgets it. What is still recorded was maybe created: the destination is read by
        the key the create used; a record found is coupled exactly as the lost commit would have coupled it (the
        source marker of the create, the CRM version left blank as after any write of the sync, so a later
        user's edit on either side counts as that side's change), and a pair created in the ERP still owes its
        write-back. A create that never arrived is forgotten: its source record is still a candidate.
        """
        for flow in (Direction.TO_CRM, Direction.FROM_CRM):
            creates = [p for p in self.store.pending() if p.direction == flow.value]
            if not creates:
                continue
            dest_side = Side.CRM if flow is Direction.TO_CRM else Side.ERP
            dest = self.mapping.side(dest_side)
            endpoint: ErpEndpoint | CrmEndpoint = self.crm if dest_side is Side.CRM else self.erp
            select = [dest.id_field, *([dest.key] if dest.key else []), endpoint.modified_field]
            found: dict[tuple[bool, str], dict[str, Any]] = {}
            for is_id in (True, False):
                keys = [p.dest_key for p in creates if p.dest_key_is_id is is_id]
                field_name = dest.id_field if is_id else dest.key
                if not keys or field_name is None:
                    continue
                for record in endpoint.read_where(dest.entity_set, field_name, keys, select, id_field=dest.id_field):
                    value = str(record[field_name])
                    found[(is_id, value.lower() if is_id else value)] = record
            couplings = []
            for create in creates:
                made = found.get(
                    (create.dest_key_is_id, create.dest_key.lower() if create.dest_key_is_id else create.dest_key)
                )
                if made is None:
                    continue
                dest_id = str(made[dest.id_field]).lower()
                if flow is Direction.TO_CRM:
                    couplings.append(replace(create.coupling, erp_id=create.source_id, crm_id=dest_id))
                else:
                    couplings.append(
                        replace(
                            create.coupling,
                            erp_id=dest_id,
                            crm_id=create.source_id,
                            erp_key=create.dest_key,
                            erp_modified_at=_parse_time(made.get("lastModifiedDateTime")),
                            write_back=True,
                        )
                    )
            self.store.settle_pending(flow.value, couplings, [p.source_id for p in creates])
            log.info(
                "%s %s: %d create(s) of an interrupted run found and coupled, %d never arrived",
                self.mapping.name,
                flow.label,
                len(couplings),
                len(creates) - len(couplings),
            )

    def _write_back_owed(self, result: PassResult) -> None:
        """Write back the to-CRM fields of pairs created from the CRM that a crash or an error left owing them
        (the write-back of this run's creates happens page by page; this catches the rest)."""
        # A pair whose ERP->CRM pass failed (an update conflict, say) is that pass's to settle: the write-back
        # would only fail it a second time in the same run.
        failing = self.store.errored_ids(Direction.TO_CRM.value)
        owed = [erp_id for erp_id in self.store.write_back_pending() if erp_id not in failing]
        if not owed:
            return
        select = self.mapping.read_fields(Side.ERP)
        records = self.erp.read_by_ids(self.mapping.erp, owed, select, integration_user=self.integration_user)
        vanished = set(owed) - {str(r["id"]) for r in records}
        if vanished:
            self.store.clear_write_back(sorted(vanished))
        self._finish(self._prepare(Direction.TO_CRM, records, result, write_back=True), result, self.store, self.writer)
        log.info("%s: to-CRM fields of %d record(s) created from the CRM written back", self.mapping.name, len(records))

    # -- staging (bidirectional) -----------------------------------------------------------------------------
    def _stage_crm_changes(self) -> int | None:
        """Read the CRM changes of this run into staging; return the CRM watermark they reach."""
        store = self.store
        store.clear_staging()
        since = None if self.full_sync else store.watermark(Direction.FROM_CRM.value)
        assert since is None or isinstance(since, int)
        select = self.mapping.read_fields(Side.CRM)
        newest = since
        staged = 0
        for records, _ in self.crm.read_changed(
            self.mapping.crm,
            select,
            since=since,
            integration_user=self.integration_user,
            extra=self._not_by_integration_user,
        ):
            rows = self._staging_rows(records)
            store.stage(rows)
            staged += len(rows)
            newest = _latest(newest, (r[1] for r in rows))
        failed = set(store.retry_ids(Direction.FROM_CRM.value))
        retry = sorted(failed | set(store.conflict_crm_ids()))
        if retry:
            records = [
                r
                for r in self.crm.read_by_ids(self.mapping.crm, retry, select, integration_user=self.integration_user)
                if not self._by_integration_user(r)
            ]
            store.stage(self._staging_rows(records))
            self._forget_vanished(Direction.FROM_CRM, failed, records)
        log.info("%s: %d CRM change(s) staged, %d retried", self.mapping.name, staged, len(retry))
        self.checkpoint("staging.read")
        return newest

    def _staging_rows(self, records: list[dict[str, Any]]) -> list[tuple[str, int | None, dict[str, Any]]]:
        id_field = self.mapping.crm.id_field
        return [(str(r[id_field]), _version(r), r) for r in records]

    def _forget_vanished(self, flow: Direction, asked: set[str], records: list[dict[str, Any]]) -> None:
        """Clear the error state of retried records that no longer exist or left the mapping's filter."""
        side = Side.ERP if flow is Direction.TO_CRM else Side.CRM
        id_field = self.mapping.side(side).id_field
        vanished = asked - {str(r[id_field]) for r in records}
        if vanished:
            self.store.clear_errors(flow.value, sorted(vanished))

    # -- one pass ---------------------------------------------------------------------------------------------
    def _run_pass(self, flow: Direction, crm_watermark: int | None) -> PassResult:
        store = self.store
        job_id = store.start_job(self.run_id, flow.value, self.full_sync)
        result = PassResult(self.mapping.name, flow, job_id)
        source_side = Side.ERP if flow is Direction.TO_CRM else Side.CRM
        endpoint = self.erp if source_side is Side.ERP else self.crm
        select = self.mapping.read_fields(source_side)
        # The watermark rule (BC, codeunit "CRM Integration Table Synch."): an ERP watermark never passes the
        # time the pass started less ERP_OVERLAP. A record edited while the pass pages through the changes may
        # come after records already read with a later stamp; capped, the edit is read by the next run. CRM
        # changes are read in version order instead (see CrmEndpoint), so their highest version is safe.
        cap = datetime.now(UTC) - ERP_OVERLAP
        since = None if self.full_sync else store.watermark(flow.value)
        newest = since
        label = f"{self.mapping.name} {flow.label}"
        done = 0
        #: records read after the cap: source id -> (marker, digest), kept for the next run (ERP side only)
        overlap: dict[str, tuple[str, str]] | None = None
        try:
            if flow is Direction.FROM_CRM and self.mapping.direction is Direction.BIDIRECTIONAL:
                total = store.count_staged()
                for number, rows in enumerate(store.staged_pages(self.crm_page_size), start=1):
                    values_hash = {crm_id: h for crm_id, _, h in rows if h}
                    page = self._prepare(flow, [r for _, r, _ in rows], result, erp_values_hash=values_hash)
                    self._finish(page, result, store, self.writer)
                    done += len(rows)
                    log.info("%s: page %d, %d/%d records", label, number, done, total)
                self._write_back_owed(result)
                newest = crm_watermark
            else:
                retry = store.retry_ids(flow.value)
                if retry:
                    records = endpoint.read_by_ids(
                        self.mapping.side(source_side), retry, select, integration_user=self.integration_user
                    )
                    if flow is Direction.FROM_CRM:
                        records = [r for r in records if not self._by_integration_user(r)]
                    self._forget_vanished(flow, set(retry), records)
                    self._finish(self._prepare(flow, records, result), result, store, self.writer)
                    log.info("%s: %d record(s) that failed before retried", label, len(records))
                extra = self._not_by_integration_user if flow is Direction.FROM_CRM else None
                if source_side is Side.ERP:
                    # The last pass's overlap is read again (the watermark rule); a full sync handles it all.
                    overlap = {}
                    seen_before = {} if self.full_sync else store.read_overlap(flow.value)
                total = None
                pages = endpoint.read_changed(
                    self.mapping.side(source_side),
                    select,
                    since=since,
                    integration_user=self.integration_user,
                    extra=extra,
                )
                with _PagePipeline(self, result) as pipeline:
                    for number, (records, count) in enumerate(pages, start=1):
                        total = count if count is not None else total
                        markers = [_marker(source_side, r) for r in records]
                        newest = _latest(newest, markers)
                        if overlap is not None:
                            records = self._read_again(records, markers, cap, seen_before, overlap)
                        for start in range(0, len(records), SLICE):
                            pipeline.submit(self._prepare(flow, records[start : start + SLICE], result))
                        done += len(records)
                        of_total = f"/{total}" if total is not None else ""
                        log.info("%s: page %d, %d%s records", label, number, done, of_total)
        except Exception as exc:
            store.finish_job(job_id, status="failed", message=str(exc)[:4000], direction=flow.value, watermark=None)
            raise
        if isinstance(newest, datetime):
            newest = min(newest, cap)
        status = "failed" if result.counts["failed"] else "success"
        message = None
        if result.counts["failed"]:
            message = MappingRunResult(self.mapping.name, [result]).describe()
        self.checkpoint(f"{flow.value}.pass.before_finish")
        store.finish_job(
            job_id,
            status=status,
            message=message,
            direction=flow.value,
            watermark=newest,
            overlap=None if overlap is None else [(i, m, d) for i, (m, d) in overlap.items()],
        )
        self.checkpoint(f"{flow.value}.pass.finished")
        log.info(
            "%s: %s%s",
            label,
            ", ".join(f"{name} {result.counts[name]}" for name in COUNT_NAMES),
            " (idle)" if result.idle else "",
        )
        return result

    def _read_again(
        self,
        records: list[dict[str, Any]],
        markers: list[Any],
        cap: datetime,
        seen_before: dict[str, str],
        overlap: dict[str, tuple[str, str]],
    ) -> list[dict[str, Any]]:
        """The records of a page to process: without those the last pass read in its overlap, unchanged.

        The watermark rule reads the last second before the last pass's start again, so a record changed then is
        read twice; read unchanged (same digest) it was handled (or is retried by id when it failed) and is
        neither processed nor counted again. Records changed after ``cap`` go into ``overlap`` for the next run.
        """
        id_field = self.mapping.erp.id_field
        kept = []
        for record, marker in zip(records, markers, strict=True):
            source_id = str(record[id_field]).lower()
            digest = None
            if marker is not None and marker > cap:
                digest = _digest(record)
                overlap[source_id] = (str(record.get("lastModifiedDateTime")), digest)
            before = seen_before.get(source_id)
            if before is not None and before == (digest or _digest(record)):
                continue
            kept.append(record)
        return kept

    # -- one page ---------------------------------------------------------------------------------------------
    def _prepare(
        self,
        flow: Direction,
        records: list[dict[str, Any]],
        result: PassResult,
        *,
        erp_values_hash: dict[str, str] | None = None,
        write_back: bool = False,
    ) -> Page | None:
        """Read the page's state and plan it (no writes). ``None`` for an empty page."""
        if not records:
            return None
        mapping = self.mapping
        source_side = Side.ERP if flow is Direction.TO_CRM else Side.CRM
        source = _frame(records, mapping.side(source_side).id_field, source_side)
        values = mapped_values(mapping, flow, source)
        values, problems = apply_lookups(mapping, flow, values, self.lookups.resolve(mapping, flow, values))

        by = "erp_id" if flow is Direction.TO_CRM else "crm_id"
        couplings = self.store.couplings(by, source.index.tolist())
        couplings.index = couplings[by].astype(str)
        other_ids = couplings["crm_id" if flow is Direction.TO_CRM else "erp_id"].astype(str).tolist()
        to_crm_ids, from_crm_ids = (
            (source.index.tolist(), other_ids) if flow is Direction.TO_CRM else (other_ids, source.index.tolist())
        )
        state = self.store.record_state(result.job_id, to_crm_ids, from_crm_ids)
        record_state = _record_state(state, flow, source.index, couplings)
        if not write_back:  # a write-back replays records of the other pass on purpose
            record_state["handled"] |= source.index.isin(list(result.handled))
            result.handled.update(source.index)

        erp_synced = pd.to_datetime(couplings["erp_modified_at"], utc=True)
        crm_synced = pd.to_numeric(couplings["crm_version"])
        view = pd.DataFrame(index=couplings.index)
        if flow is Direction.TO_CRM:
            view["dest_id"] = couplings["crm_id"]
            view["source_synced_at"] = erp_synced
            view["dest_synced_at"] = crm_synced
            view["dest_hash"] = couplings["crm_hash"]
        else:
            view["dest_id"] = couplings["erp_id"]
            view["source_synced_at"] = crm_synced
            view["dest_synced_at"] = erp_synced
            now_hash = pd.Series(erp_values_hash or {}, dtype=object).reindex(couplings.index)
            view["dest_hash"] = now_hash.where(now_hash.notna(), couplings["erp_hash"])

        bidirectional = mapping.direction is Direction.BIDIRECTIONAL
        counterpart = None
        counterpart_versions: dict[str, int] = {}
        if flow is Direction.TO_CRM and bidirectional:
            staged = self.store.staged(couplings["crm_id"].astype(str).tolist())
            if staged:
                crm_frame = _frame([r for _, r in staged], mapping.crm.id_field, Side.CRM)
                counterpart = current_values(mapping, Direction.TO_CRM, crm_frame)
                counterpart[MODIFIED] = crm_frame[MODIFIED]
                counterpart[MODIFIED_ON] = crm_frame.get("modifiedon")
                counterpart_versions = {str(k): int(v) for k, v in crm_frame[MODIFIED].items()}
            else:
                counterpart = pd.DataFrame(columns=[MODIFIED, MODIFIED_ON])

        other_flow = Direction.FROM_CRM if flow is Direction.TO_CRM else Direction.TO_CRM
        if bidirectional:
            other_hash = fingerprint_rows(
                current_values(mapping, other_flow, source), hash_columns(mapping, other_flow)
            )
        else:
            other_hash = pd.Series(None, index=source.index, dtype=object)

        deferred = None
        owed_pairs = None
        if flow is Direction.TO_CRM and bidirectional and not couplings.empty:
            owed_pairs = couplings["write_back_pending"].astype("boolean").fillna(False).astype(bool)
        if flow is Direction.TO_CRM and bidirectional and not write_back and not couplings.empty:
            # A pair created from the CRM whose write-back is owed: while the ERP record still holds what the
            # create wrote, its to-CRM fields go by the write-back after the CRM->ERP pass (a CRM edit made
            # since is no conflict: it flows to the ERP first); an ERP record edited since is an ERP change.
            owed = couplings["write_back_pending"].astype("boolean").fillna(False).astype(bool)
            if owed.any():
                as_created = owed & (other_hash.reindex(couplings.index) == couplings["erp_hash"])
                deferred = as_created.reindex(source.index, fill_value=False)
                view.loc[owed & ~as_created, "source_synced_at"] = pd.NaT

        choices = None
        if flow is Direction.TO_CRM and mapping.resolve_update_conflicts is UpdateConflictResolution.ASK:
            choices = self.store.conflict_choices()
        plan = plan_page(
            mapping,
            flow,
            PageInput(
                source=source,
                values=values,
                problems=problems,
                couplings=view,
                record_state=record_state,
                counterpart=counterpart,
                deferred=deferred,
                owed=owed_pairs,
                choices=choices,
            ),
            # A full sync compares every record (BC's Full Synch. Review reports them Unchanged).
            ignore_echoes=not (write_back or self.full_sync),
            write_back=write_back,
        )
        own = state[state["direction"] == flow.value]
        errored = {str(i) for i in own["source_id"]}
        return Page(flow, source, values, plan, couplings, other_hash, errored, counterpart_versions, write_back)

    def _finish(self, page: Page | None, result: PassResult, store: SyncStore, writer: PageWriter) -> None:
        """Write a planned page and commit its outcome (on ``store``, possibly from the pipeline's thread)."""
        if page is None:
            return
        outcome = writer.write(page)
        created = list(writer.created_erp_records)
        if page.write_back:
            outcome.counts = Counter(failed=outcome.counts["failed"])
        stage = page.stage
        store.commit_page(
            result.job_id,
            page.flow.value,
            outcome,
            skip_after=self.mapping.skip_after_same_error,
            before_commit=lambda: self.checkpoint(f"{stage}.commit.inside"),
        )
        self.checkpoint(f"{stage}.commit.after")
        if "chosen" in page.plan.columns and page.plan["chosen"].any():
            applied = [str(i) for i in page.plan.index[page.plan["chosen"]]]
            store.choices_applied(result.job_id, applied)
            log.info("%s: applied the users' choices for the update conflicts of %s", self.mapping.name, applied)
        with self._result_lock:
            result.counts.update(outcome.counts)
            room = ALERT_RECORDS - len(result.failures)
            if room > 0:
                result.failures.extend(outcome.failures[:room])
        if created and self.mapping.direction is Direction.BIDIRECTIONAL and page.flow is Direction.FROM_CRM:
            # The new ERP records have fields that flow to the CRM only (the number, the owner): write them
            # back now so the pair is in sync when the run ends.
            self._finish(self._prepare(Direction.TO_CRM, created, result, write_back=True), result, store, writer)


class _PagePipeline:
    """Writes and commits planned pages on worker threads while the run reads and plans the next ones.

    An API spends about as long on a 1,000-request ``$batch`` as the client spends planning, encoding and
    committing it, so the work overlaps: the run plans slice k+2 while one worker waits for the API on slice
    k+1 and the other reads the answers of slice k and commits them. At most :data:`PIPELINE_WORKERS` slices
    are in flight; each worker has its own state-store connection (a connection serves one thread at a
    time). Slices hold distinct records, so their commits need no order; the pass's watermark moves only after
    every slice is committed. An error on a worker surfaces at the next :meth:`submit` or at the end.
    """

    def __init__(self, runner: MappingRunner, result: PassResult) -> None:
        self.runner = runner
        self.result = result
        self._pending: list[Future[None]] = []
        self._stack = ExitStack()
        self._workers: queue.SimpleQueue[tuple[SyncStore, PageWriter]] = queue.SimpleQueue()

    def __enter__(self) -> _PagePipeline:
        runner = self.runner
        for _ in range(PIPELINE_WORKERS):
            store = self._stack.enter_context(SyncStore.connect(runner.state, runner.mapping.name))
            writer = runner._writer(store)
            self._workers.put((store, writer))
        self._executor = self._stack.enter_context(
            ThreadPoolExecutor(max_workers=PIPELINE_WORKERS, thread_name_prefix=f"sync-{runner.mapping.slug}")
        )
        return self

    def submit(self, page: Page | None) -> None:
        """Hand a planned page to a worker, after waiting for a free one."""
        while len(self._pending) >= PIPELINE_WORKERS:
            self._pending.pop(0).result()
        if page is not None:
            self._pending.append(self._executor.submit(self._finish, page))

    def _finish(self, page: Page) -> None:
        store, writer = self._workers.get()
        try:
            self.runner._finish(page, self.result, store, writer)
        finally:
            self._workers.put((store, writer))

    def drain(self) -> None:
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def __exit__(self, *exc_info: object) -> None:
        try:
            if exc_info[0] is None:
                self.drain()
        finally:
            self._stack.close()


def _frame(records: list[dict[str, Any]], id_field: str, side: Side) -> pd.DataFrame:
    """Records as a frame indexed by id, with their change marker in :data:`MODIFIED`."""
    frame = pd.DataFrame.from_records(records)
    frame.index = pd.Index(frame[id_field].astype(str).str.lower(), name=None)
    frame = frame[~frame.index.duplicated(keep="last")]
    if side is Side.ERP:
        frame[MODIFIED] = pd.to_datetime(frame["lastModifiedDateTime"], utc=True, format="ISO8601")
    else:
        frame[MODIFIED] = pd.to_numeric(frame["versionnumber"])
    return frame


def _marker(side: Side, record: dict[str, Any]) -> datetime | int | None:
    """A record's change marker: ERP lastModifiedDateTime, CRM versionnumber."""
    return _parse_time(record.get("lastModifiedDateTime")) if side is Side.ERP else _version(record)


def _digest(record: dict[str, Any]) -> str:
    """BLAKE2b (16 bytes, hex) of a record as read: two reads of an unchanged record give the same digest."""
    payload = json.dumps(record, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)
    return hashlib.blake2b(payload.encode(), digest_size=16).hexdigest()


def _version(record: dict[str, Any]) -> int | None:
    value = record.get("versionnumber")
    return None if value is None else int(value)


def _record_state(state: pd.DataFrame, flow: Direction, index: pd.Index, couplings: pd.DataFrame) -> pd.DataFrame:
    """Per source record: Skipped (its own error state or its coupled counterpart's) and handled in this run."""
    own_direction = flow.value
    own = state[state["direction"] == own_direction].set_index("source_id")
    other = state[state["direction"] != own_direction].set_index("source_id")
    skipped = own["skipped"].reindex(index).astype("boolean").fillna(False)
    handled = own["handled"].reindex(index).astype("boolean").fillna(False)
    if not other.empty and not couplings.empty:
        other_column = "crm_id" if flow is Direction.TO_CRM else "erp_id"
        counterpart = couplings[other_column].astype(str).reindex(index)
        other_skipped = counterpart.map(lambda c: bool(other["skipped"].get(c, False)) if isinstance(c, str) else False)
        skipped = skipped | other_skipped.astype("boolean")
    return pd.DataFrame({"skipped": skipped.astype(bool), "handled": handled.astype(bool)}, index=index)


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    if isinstance(value, str):
        # The common ISO 8601 stamps parse natively (a page has 20,000 of them); pandas takes the rest.
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return (
        pd.Timestamp(value).tz_convert("UTC").to_pydatetime()
        if pd.Timestamp(value).tzinfo
        else (pd.Timestamp(value).tz_localize("UTC").to_pydatetime())
    )


def _latest(current: Any, values: Iterable[Any]) -> Any:
    """The largest of ``current`` and ``values`` (timestamps or versions), ignoring blanks."""
    for value in values:
        if value is not None and (current is None or value > current):
            current = value
    return current
