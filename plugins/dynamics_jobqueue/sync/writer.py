"""Carry out a page's plan: match-based coupling, creates and updates in ``$batch`` requests, per-record results.

Every write is keyed so that repeating it cannot create a twin (docs/reference/dynamics-semantics.md section 1,
couplings; docs/reference/api-contracts.md, upsert):

- to the CRM, a table with an alternate key is written by that key: ``If-None-Match: *`` creates (412 means
  the record exists: it is then coupled and updated with ``If-Match: *``); a table without one gets a record id
  derived from the mapping and the ERP id (:func:`crm_id_for`), upserted by that id;
- to the ERP, the business key of a new record is decided before the write (the mapped key, or the
  mapping's ``new_key_prefix`` plus the CRM id) and match-based coupling always tries that key first, so a
  record created by a run that crashed before committing is found and coupled by the next run;
- updates go to the coupled id with ``If-Match: *``; a 404 is a deletion conflict, resolved per the
  mapping's ``resolve_deletion_conflicts``.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

import pandas as pd

from dynamics_jobqueue.hooks.batch import BatchOperation, BatchResult
from dynamics_jobqueue.hooks.dataverse import bind
from dynamics_jobqueue.sync.fingerprint import EMPTY_GUID, canonical, canonical_frame, fingerprint_rows
from dynamics_jobqueue.sync.mapping import DeletionConflictResolution, Direction, FieldMapping, Side, TableMapping
from dynamics_jobqueue.sync.planner import (
    BOTH_SAME,
    MARKED_SKIPPED,
    MODIFIED,
    NOT_MODIFIED,
    Action,
    ErrorKind,
    current_values,
    hash_columns,
)
from dynamics_jobqueue.sync.store import Coupling, PageOutcome, PendingCreate, RecordFailure
from dynamics_jobqueue.sync.transformations import apply_all

if TYPE_CHECKING:
    from collections.abc import Callable

    from dynamics_jobqueue.sync.endpoints import CrmEndpoint, ErpEndpoint
    from dynamics_jobqueue.sync.lookups import LookupResolver
    from dynamics_jobqueue.sync.store import SyncStore

#: Namespace of the CRM ids the sync gives to records it creates in tables without an alternate key.
CRM_ID_NAMESPACE = uuid.UUID("5f0f3a47-7c55-4b8e-9a55-3b1c0b6a2d11")

_CORRELATION = re.compile(r"\s*CorrelationId:\s*[0-9a-fA-F-]+\.?", re.IGNORECASE)


def crm_id_for(mapping: TableMapping, erp_id: str) -> str:
    """The CRM record id for a record the sync creates from ERP record ``erp_id`` (uuid5; stable across runs)."""
    return str(uuid.uuid5(CRM_ID_NAMESPACE, f"{mapping.name}:{erp_id.lower()}"))


def new_erp_key(prefix: str, crm_id: str) -> str:
    """Business key for an ERP record created from CRM record ``crm_id``: prefix + 12 hex digits, upper case."""
    return f"{prefix}{crm_id.replace('-', '')[:12].upper()}"


def error_text(result: BatchResult, op: BatchOperation) -> tuple[str, str]:
    """``(message, detail)`` of a failed write, naming the request (``PATCH customers(<id>)``) and the API's
    error code and message. The message leaves out the API's correlation id, so a repeated error compares
    equal; the detail keeps it.
    """
    error = result.error
    code = f" {error.code}" if error is not None and error.code else ""
    text = error.message if error is not None else ""
    detail = f"{op.method} {op.path}: HTTP {result.status}{code}: {text}"
    return _CORRELATION.sub("", detail).strip(), detail


@dataclass
class Page:
    """One planned page.

    :param flow: ``TO_CRM`` or ``FROM_CRM``.
    :param source: source records (index: source id) with :data:`~dynamics_jobqueue.sync.planner.MODIFIED`.
    :param values: resolved mapped values.
    :param plan: the plan (:func:`~dynamics_jobqueue.sync.planner.plan_page`).
    :param couplings: existing couplings indexed by source id (columns of the coupling table).
    :param other_hash: the fingerprint of the other flow's fields as the source side holds them now (kept in
        the coupling so the reverse pass compares against current values), per source id.
    :param errored: source ids with an error state to clear when they sync.
    :param counterpart_versions: versions of the staged CRM records of the page (pairs found equal on both
        sides keep it as the CRM side's last synced version).
    :param write_back: the page writes back fields of records just created on the other side.
    """

    flow: Direction
    source: pd.DataFrame
    values: pd.DataFrame
    plan: pd.DataFrame
    couplings: pd.DataFrame
    other_hash: pd.Series
    errored: set[str] = field(default_factory=set)
    counterpart_versions: dict[str, int] = field(default_factory=dict)
    write_back: bool = False

    # Row access by id through plain dicts: a page has up to 20,000 records and pandas' per-row access costs
    # tens of microseconds each.
    @property
    def stage(self) -> str:
        """How crash points name this page's stage: ``to_crm``, ``from_crm`` or ``write_back``."""
        return "write_back" if self.write_back else self.flow.value

    @cached_property
    def value_rows(self) -> dict[str, dict[str, Any]]:
        return _index_rows(self.values)

    @cached_property
    def plan_rows(self) -> dict[str, dict[str, Any]]:
        return _index_rows(self.plan)

    @cached_property
    def existing(self) -> dict[str, dict[str, Any]]:
        return _index_rows(self.couplings)

    @cached_property
    def modified(self) -> dict[str, Any]:
        """Change markers by id: ``datetime`` (ERP) or ``int`` (CRM versionnumber)."""
        markers = self.source[MODIFIED]
        if pd.api.types.is_datetime64_any_dtype(markers):
            return dict(zip(self.source.index, markers.dt.to_pydatetime(), strict=True))
        return dict(zip(self.source.index, markers.tolist(), strict=True))

    @cached_property
    def other_hashes(self) -> dict[str, Any]:
        return self.other_hash.to_dict()

    def source_value(self, source_id: str, field_name: str | None) -> Any:
        """A source field's canonical value (``None`` when the page has no such field)."""
        if field_name is None or field_name not in self.source.columns:
            return None
        return canonical(self._columns(field_name).get(source_id))

    def _columns(self, field_name: str) -> dict[str, Any]:
        cache = self.__dict__.setdefault("_column_cache", {})
        if field_name not in cache:
            cache[field_name] = self.source[field_name].to_dict()
        return cache[field_name]


class PageWriter:
    """Writes planned pages of one mapping and returns what to commit.

    :param mapping: the table mapping. :param store: the run's state store.
    :param erp: the ERP side. :param crm: the CRM side. :param lookups: resolver (for ``@odata.bind`` targets).
    :param integration_user: the integration user's systemuserid (placeholder of filters).
    :param checkpoint: told the crash points the writer passes (:mod:`.crash_points`).
    """

    def __init__(
        self,
        mapping: TableMapping,
        store: SyncStore,
        erp: ErpEndpoint,
        crm: CrmEndpoint,
        lookups: LookupResolver,
        integration_user: str,
        *,
        checkpoint: Callable[[str], None] | None = None,
    ) -> None:
        self.mapping = mapping
        self.store = store
        self.erp = erp
        self.crm = crm
        self.lookups = lookups
        self.integration_user = integration_user
        self.checkpoint = checkpoint or (lambda _: None)
        #: ERP records created from the CRM in the last page, for the write-back of their to-CRM fields.
        self.created_erp_records: list[dict[str, Any]] = []

    # -- payloads ------------------------------------------------------------------------------------------
    def payload(self, flow: Direction, values: dict[str, Any], *, insert: bool) -> dict[str, Any]:
        """The JSON body that writes ``values`` in ``flow``.

        To the CRM, lookups become ``<navigation>@odata.bind: /<set>(<id>)`` and are left out when blank, and a
        blank value is ``null``. To the ERP, a blank value is ``""`` (Business Central's empty text). A create
        leaves blank fields out: a new record starts blank, and the API has less to validate.
        """
        body: dict[str, Any] = {}
        to_crm = flow is Direction.TO_CRM
        after_insert = self._after_insert_fields if to_crm and insert else frozenset()
        for target, insert_only, kind, navigation, entity_set in self._payload_fields(flow):
            if insert_only and not insert:
                continue
            if target in after_insert:
                continue
            value = canonical(values.get(target))
            if insert and value is None:
                continue
            if kind == "option":
                if value is not None:  # a choice column: the option's value itself
                    body[target] = int(value)
                continue
            if kind == "bind":
                if value is not None:
                    body.update(bind(navigation, str(entity_set), value))
                continue
            if to_crm:
                body[target] = value
            elif value is None:
                # Business Central's blank: the empty GUID for an id field written through an id hop (API v2.0's
                # paymentTermsId is an Edm.Guid and refuses ""), else empty text
                body[target] = EMPTY_GUID if kind == "erp_id" else ""
            else:
                body[target] = value
        return body

    def _payload_fields(self, flow: Direction) -> list[tuple[str, bool, str, str, str | None]]:
        """Per field written in ``flow``: target, insert-only, how it is written (``value``, ``option`` for a
        CRM choice column, ``bind`` for a CRM lookup) and for a lookup its navigation property and the entity set
        it binds to (worked out once per writer: a page builds thousands of bodies)."""
        cache = self.__dict__.setdefault("_payload_cache", {})
        if flow not in cache:
            fields: list[tuple[str, bool, str, str, str | None]] = []
            for f in self.mapping.fields_for(flow):
                target = str(f.target(flow))
                if flow is Direction.TO_CRM and f.lookup is not None and f.lookup.option:
                    fields.append((target, f.insert_only, "option", target, None))
                elif flow is Direction.TO_CRM and f.binds:
                    entity_set = self.lookups.crm_bind_set(f.lookup) if f.lookup else str(f.bind_set)
                    navigation = f.lookup.bind if f.lookup and f.lookup.bind else target
                    fields.append((target, f.insert_only, "bind", navigation, entity_set))
                elif flow is Direction.FROM_CRM and f.lookup is not None and _writes_erp_id(f):
                    fields.append((target, f.insert_only, "erp_id", target, None))
                else:
                    fields.append((target, f.insert_only, "value", target, None))
            cache[flow] = fields
        return list(cache[flow])

    @cached_property
    def _after_insert_fields(self) -> frozenset[str]:
        """The CRM fields left out of a create and written by an update right after it (``after_insert``)."""
        return frozenset(str(f.crm) for f in self.mapping.fields_for(Direction.TO_CRM) if f.after_insert)

    def _write_after_insert(
        self, page: Page, created: list[tuple[str, str]], outcome: PageOutcome
    ) -> list[tuple[str, str]]:
        """Write the ``after_insert`` fields of CRM records just created, as Business Central's subscriber does
        after the Insert (5341 ``UpdateCRMProductAfterInsertRecord``: the product's statecode and statuscode
        Active by a Modify; Dataverse takes no statecode in a create, "Behavior of specialized update
        operations": a state change is an Update of statecode and statuscode).

        :param created: ``(source_id, crm_id)`` of the successful creates.
        :return: those whose update succeeded (all of them when the mapping has no such field). One whose update
            failed fails with the update's error and is not coupled: the record exists, so the next run couples
            it by its key and writes the fields in that update.
        """
        if not created or not self._after_insert_fields:
            return created
        ops = []
        for source_id, crm_id in created:
            values = page.value_rows[source_id]
            body = {name: canonical(values.get(name)) for name in sorted(self._after_insert_fields)}
            ops.append(self.crm.upsert_op(source_id, self.mapping.crm, crm_id, body, mode="update"))
        done: list[tuple[str, str]] = []
        for (source_id, crm_id), op, result in zip(created, ops, self._send(page, self.crm, ops), strict=True):
            if result.ok:
                done.append((source_id, crm_id))
            else:
                message, detail = error_text(result, op)
                self._fail(page, outcome, source_id, ErrorKind.RECORD.value, message, detail, destination_id=crm_id)
        return done

    def _send(self, page: Page, endpoint: CrmEndpoint | ErpEndpoint, ops: list[BatchOperation]) -> list[BatchResult]:
        """Send ``ops`` in ``$batch`` requests, passing the crash points just before and just after."""
        if not ops:
            return []
        self.checkpoint(f"{page.stage}.batch.before")
        results = endpoint.write(ops)
        self.checkpoint(f"{page.stage}.batch.answered")
        return results

    # -- the page --------------------------------------------------------------------------------------------
    def write(self, page: Page) -> PageOutcome:
        """Write the page's INSERT, COUPLE and UPDATE records and collect every record's outcome."""
        outcome = PageOutcome(counts=Counter())
        self.created_erp_records = []
        plan = page.plan
        self._settle_without_writes(page, outcome)
        updates = plan.index[plan["action"] == Action.UPDATE.value].tolist()
        creates = plan.index[plan["action"].isin([Action.INSERT.value, Action.COUPLE.value])].tolist()
        if creates:
            matched_updates = self._match_and_create(page, creates, outcome)
            updates.extend(matched_updates)
        if updates:
            self._update(page, updates, outcome)
        return outcome

    def _settle_without_writes(self, page: Page, outcome: PageOutcome) -> None:
        plan = page.plan
        if page.errored:
            # A record that failed before (an update conflict, say) and has not changed since its pair's last
            # sync owes nothing any more: the other side's change settled it, so its error state goes.
            echoes = plan.index[(plan["action"] == Action.IGNORE.value) & (plan["reason"] == NOT_MODIFIED)]
            for source_id in echoes:
                self._clear_error(page, outcome, str(source_id))
            # A conflict settled for the CRM (take_crm_data, or a user's choice of it): the CRM->ERP pass writes
            # it; this pass owes nothing any more.
            for source_id in plan.index[plan["action"] == Action.DEFER.value]:
                self._clear_error(page, outcome, str(source_id))
        settled = plan[plan["action"].isin([Action.SKIP.value, Action.FAIL.value, Action.UNCHANGED.value])]
        details = settled["detail"] if "detail" in settled.columns else pd.Series(None, index=settled.index)
        for source_id, action, kind, reason, dest_id, detail in zip(
            settled.index,
            settled["action"],
            settled["kind"],
            settled["reason"],
            settled["dest_id"],
            details,
            strict=True,
        ):
            if action == Action.SKIP.value:
                outcome.counts["skipped"] += 1
                if reason != MARKED_SKIPPED:  # out of scope now: no error to retry
                    self._clear_error(page, outcome, str(source_id))
            elif action == Action.FAIL.value:
                self._fail(
                    page,
                    outcome,
                    str(source_id),
                    kind or ErrorKind.RECORD.value,
                    reason,
                    detail if isinstance(detail, str) else None,  # a conflict's values per field (JSON)
                )
            else:
                outcome.counts["unchanged"] += 1
                self._couple(page, outcome, str(source_id), str(dest_id), written=False)
        if "consumed" in plan.columns:
            # A pair this pass writes to the CRM while the CRM side has not changed since the last sync: a staged
            # copy of the CRM record (a full sync stages them all) is older than that write and must not go
            # back to the ERP (it would revert the ERP's change).
            overwritten = (plan["action"] == Action.UPDATE.value) & ~plan["dest_changed"]
            staged = plan[plan["dest_id"].notna() & (plan["dest_changed"] | plan["consumed"] | overwritten)]
            for source_id, row in staged.iterrows():
                both_same = row["action"] == Action.UNCHANGED.value and row["reason"] == BOTH_SAME
                consumed = bool(row["consumed"]) or both_same or bool(overwritten[source_id])
                outcome.staging_marks.append((str(row["dest_id"]), page.other_hashes.get(source_id), consumed))

    @staticmethod
    def _clear_error(page: Page, outcome: PageOutcome, source_id: str) -> None:
        if source_id in page.errored:
            outcome.succeeded.append(source_id)

    def _fail(
        self,
        page: Page,
        outcome: PageOutcome,
        source_id: str,
        kind: str,
        message: str,
        detail: str | None = None,
        destination_id: str | None = None,
    ) -> None:
        outcome.counts["failed"] += 1
        if destination_id is None:
            dest = page.plan_rows.get(source_id, {}).get("dest_id")
            destination_id = None if dest is None or pd.isna(dest) else str(dest)
        outcome.failures.append(
            RecordFailure(
                source_id=source_id,
                source_key=self._source_key(page, source_id),
                destination_id=destination_id,
                kind=kind,
                message=message,
                detail=detail,
            )
        )

    def _source_key(self, page: Page, source_id: str) -> str | None:
        side = Side.ERP if page.flow is Direction.TO_CRM else Side.CRM
        value = page.source_value(source_id, self.mapping.side(side).key)
        return None if value is None else str(value)

    def _couple(
        self,
        page: Page,
        outcome: PageOutcome,
        source_id: str,
        dest_id: str,
        *,
        written: bool,
        dest_record: dict[str, Any] | None = None,
        is_new: bool = False,
    ) -> None:
        """Record the pair's state after a successful sync (see the coupling table's column comments)."""
        pending = page.__dict__.get("_pending_couplings", {}).get(source_id)
        if pending is not None and page.flow is Direction.TO_CRM and written and is_new:
            coupling = replace(pending, crm_id=dest_id)
        else:
            coupling = self._coupling(page, source_id, dest_id, written=written, dest_record=dest_record, is_new=is_new)
        outcome.couplings.append(coupling)
        self._clear_error(page, outcome, source_id)

    def _coupling(
        self,
        page: Page,
        source_id: str,
        dest_id: str,
        *,
        written: bool,
        dest_record: dict[str, Any] | None = None,
        is_new: bool = False,
    ) -> Coupling:
        existing = page.existing.get(source_id)
        values = page.value_rows[source_id]
        plan = page.plan_rows[source_id]
        mapped_hash = plan["hash"]
        other_hash = page.other_hashes.get(source_id)
        if page.flow is Direction.TO_CRM:
            crm_key = self.mapping.crm.key
            dest_synced = None if written else (existing["crm_version"] if existing is not None else None)
            if plan["reason"] == BOTH_SAME:
                dest_synced = page.counterpart_versions.get(dest_id, dest_synced)
            coupling = Coupling(
                erp_id=source_id,
                crm_id=dest_id,
                erp_key=_text(page.source_value(source_id, self.mapping.erp.key)),
                crm_key=_text(values.get(crm_key)) if crm_key else None,
                erp_modified_at=page.modified[source_id],
                crm_version=_version(dest_synced),
                erp_hash=other_hash,
                crm_hash=mapped_hash,
                is_new=is_new,
            )
        else:
            erp_key_field = self.mapping.erp.key
            if dest_record is not None:
                erp_key = _text(dest_record.get(erp_key_field)) if erp_key_field else None
                erp_modified = pd.Timestamp(dest_record["lastModifiedDateTime"]).to_pydatetime()
            else:
                erp_key = existing["erp_key"] if existing is not None else None
                erp_modified = existing["erp_modified_at"] if existing is not None else None
            coupling = Coupling(
                erp_id=dest_id,
                crm_id=source_id,
                erp_key=erp_key,
                crm_key=_text(page.source_value(source_id, self.mapping.crm.key)),
                erp_modified_at=_datetime(erp_modified),
                crm_version=page.modified[source_id],
                erp_hash=mapped_hash,
                crm_hash=other_hash,
                is_new=is_new,
                # A pair coupled from the CRM owes the CRM its to-CRM fields (the number) until written back.
                write_back=True if is_new and self.mapping.direction is Direction.BIDIRECTIONAL else None,
            )
        return coupling

    # -- creates -------------------------------------------------------------------------------------------
    def _match_and_create(self, page: Page, source_ids: list[str], outcome: PageOutcome) -> list[str]:
        """Couple or create the uncoupled records; return the ids that matched a record needing an update."""
        if page.flow is Direction.TO_CRM and self._upsert_by_alternate_key():
            self._create_by_alternate_key(page, source_ids, outcome)
            return []
        matches = self._match(page, source_ids, outcome)
        needs_update: list[str] = []
        to_create: list[str] = []
        for source_id in source_ids:
            if source_id in matches:
                dest_id, dest_record = matches[source_id]
                page.plan_rows[source_id]["dest_id"] = dest_id
                current = self._current_hash(page.flow, dest_record)
                if current == page.plan_rows[source_id]["hash"]:
                    outcome.counts["unchanged"] += 1
                    outcome.counts["coupled"] += 1
                    self._couple(page, outcome, source_id, dest_id, written=False, dest_record=dest_record, is_new=True)
                else:
                    needs_update.append(source_id)
            elif page.plan_rows[source_id]["action"] == Action.COUPLE.value:
                outcome.counts["skipped"] += 1
                self._clear_error(page, outcome, source_id)
            else:
                to_create.append(source_id)
        if to_create:
            if page.flow is Direction.TO_CRM:
                self._create_crm_by_id(page, to_create, outcome)
            else:
                self._create_erp(page, to_create, outcome)
        return needs_update

    def _upsert_by_alternate_key(self) -> bool:
        """True when the CRM table has an alternate key and match-based coupling uses nothing else, so the
        upsert by that key is the match (no read)."""
        crm = self.mapping.crm
        if not crm.alternate_key:
            return False
        levels = self.mapping.match_levels()
        return all(all(f.crm == crm.key for f in level) for level in levels)

    def _create_by_alternate_key(self, page: Page, source_ids: list[str], outcome: PageOutcome) -> None:
        crm = self.mapping.crm
        assert crm.key is not None
        first: list[BatchOperation] = []
        for source_id in source_ids:
            key = page.value_rows[source_id].get(crm.key)
            if key is None:
                self._fail(page, outcome, source_id, ErrorKind.RECORD.value, f"{crm.key} (the alternate key) is blank")
                continue
            insert = page.plan_rows[source_id]["action"] == Action.INSERT.value
            body = self.payload(Direction.TO_CRM, page.value_rows[source_id], insert=insert)
            first.append(
                self.crm.upsert_op(source_id, crm, {crm.key: key}, body, mode="create" if insert else "update")
            )
        self._add_pending(
            page,
            [
                (op.id, str(page.value_rows[op.id][crm.key]), False)
                for op in first
                if page.plan_rows[op.id]["action"] == Action.INSERT.value
            ],
        )
        second: list[BatchOperation] = []
        created: list[tuple[str, str]] = []
        for op, result in zip(first, self._send(page, self.crm, first), strict=True):
            action = page.plan_rows[op.id]["action"]
            if result.ok:
                if action == Action.INSERT.value:
                    created.append((op.id, _record_id(result)))
                    continue
                # COUPLE: the update by the alternate key found its match
                outcome.counts["modified"] += 1
                outcome.counts["coupled"] += 1
                self._couple(page, outcome, op.id, _record_id(result), written=True, is_new=True)
            elif action == Action.INSERT.value and result.status == 412:
                # The key exists in the CRM: match-based coupling on the alternate key, then update it.
                body = self.payload(Direction.TO_CRM, page.value_rows[op.id], insert=False)
                second.append(
                    self.crm.upsert_op(op.id, crm, {crm.key: page.value_rows[op.id].get(crm.key)}, body, mode="update")
                )
            elif action == Action.COUPLE.value and result.status == 404:
                outcome.counts["skipped"] += 1
            else:
                message, detail = error_text(result, op)
                self._fail(page, outcome, op.id, ErrorKind.RECORD.value, message, detail)
        for source_id, crm_id in self._write_after_insert(page, created, outcome):
            outcome.counts["inserted"] += 1
            self._couple(page, outcome, source_id, crm_id, written=True, is_new=True)
        for op, result in zip(second, self._send(page, self.crm, second), strict=True):
            if result.ok:
                outcome.counts["modified"] += 1
                outcome.counts["coupled"] += 1  # the create met an existing key: coupled by match
                self._couple(page, outcome, op.id, _record_id(result), written=True, is_new=True)
            else:
                message, detail = error_text(result, op)
                self._fail(page, outcome, op.id, ErrorKind.RECORD.value, message, detail)

    def _create_crm_by_id(self, page: Page, source_ids: list[str], outcome: PageOutcome) -> None:
        ops = [
            self.crm.upsert_op(
                source_id,
                self.mapping.crm,
                crm_id_for(self.mapping, source_id),
                self.payload(Direction.TO_CRM, page.value_rows[source_id], insert=True),
                mode="upsert",
            )
            for source_id in source_ids
        ]
        self._add_pending(page, [(op.id, crm_id_for(self.mapping, op.id), True) for op in ops])
        created: list[tuple[str, str]] = []
        for op, result in zip(ops, self._send(page, self.crm, ops), strict=True):
            if result.ok:
                created.append((op.id, crm_id_for(self.mapping, op.id)))
            else:
                message, detail = error_text(result, op)
                self._fail(page, outcome, op.id, ErrorKind.RECORD.value, message, detail)
        for source_id, crm_id in self._write_after_insert(page, created, outcome):
            outcome.counts["inserted"] += 1
            self._couple(page, outcome, source_id, crm_id, written=True, is_new=True)

    def erp_key_for_insert(self, page: Page, source_id: str) -> str | None:
        """The business key a record created in the ERP from this CRM record gets (decided before the write)."""
        key = self.mapping.erp.key
        if key is None:
            return None
        value = page.value_rows[source_id].get(key)
        if value is None:
            pair = self.mapping.key_field(Side.ERP)
            if pair is not None and pair.crm is not None and pair.crm in page.source.columns:
                value = canonical(
                    apply_all(page.source.loc[[source_id], pair.crm].astype(object), pair.from_crm).iloc[0]
                )
        if value is None and self.mapping.erp.new_key_prefix:
            value = new_erp_key(self.mapping.erp.new_key_prefix, source_id)
        return None if value is None else str(value)

    def _create_erp(self, page: Page, source_ids: list[str], outcome: PageOutcome) -> None:
        erp = self.mapping.erp
        ops: list[BatchOperation] = []
        pending: list[tuple[str, str, bool]] = []
        for source_id in source_ids:
            body = self.payload(Direction.FROM_CRM, page.value_rows[source_id], insert=True)
            if erp.key:
                key = self.erp_key_for_insert(page, source_id)
                if key is None:
                    self._fail(
                        page,
                        outcome,
                        source_id,
                        ErrorKind.RECORD.value,
                        f"cannot create the {erp.entity_set} record: its {erp.key} is blank and the mapping has no "
                        "new_key_prefix",
                    )
                    continue
                body[erp.key] = key
                pending.append((source_id, key, False))
            ops.append(self.erp.create_op(source_id, erp, body))
        self._add_pending(page, pending)
        for op, result in zip(ops, self._send(page, self.erp, ops), strict=True):
            if result.ok and isinstance(result.body, dict):
                outcome.counts["inserted"] += 1
                record = dict(result.body)
                record["id"] = str(record["id"]).lower()
                self.created_erp_records.append(record)
                self._couple(page, outcome, op.id, record["id"], written=True, dest_record=record, is_new=True)
            else:
                message, detail = error_text(result, op)
                self._fail(page, outcome, op.id, ErrorKind.RECORD.value, message, detail)

    def _add_pending(self, page: Page, creates: list[tuple[str, str, bool]]) -> None:
        """Commit the pending couplings of ``(source_id, dest_key, dest_key_is_id)`` creates before they are sent
        (``dynamics.sync_pending_create``): each with the coupling the create will make, so a run after a crash
        or a lost answer commits exactly that coupling (:meth:`.runner.MappingRunner` settles them first)."""
        if not creates:
            return
        self.store.add_pending(
            [
                PendingCreate(
                    direction=page.flow.value,
                    source_id=source_id,
                    dest_key=dest_key,
                    dest_key_is_id=is_id,
                    coupling=self._pending_coupling(page, source_id),
                )
                for source_id, dest_key, is_id in creates
            ]
        )
        self.checkpoint(f"{page.stage}.pending")

    def _pending_coupling(self, page: Page, source_id: str) -> Coupling:
        """The coupling a create of ``source_id`` makes, with a blank destination id; kept on the page so a
        successful create to the CRM only fills the id in (the pair's other columns do not depend on it)."""
        coupling = self._coupling(page, source_id, "", written=True, is_new=True)
        page.__dict__.setdefault("_pending_couplings", {})[source_id] = coupling
        return coupling

    # -- match-based coupling ----------------------------------------------------------------------------------
    def _match(self, page: Page, source_ids: list[str], outcome: PageOutcome) -> dict[str, tuple[str, dict]]:
        """Match-based coupling: per priority level, the destination records whose fields equal the source's.

        Destination records already coupled are not candidates; a source record with several candidates
        fails (ambiguous). Creates to the ERP first try the key the record would be created with.
        """
        flow = page.flow
        dest_side = Side.CRM if flow is Direction.TO_CRM else Side.ERP
        dest = self.mapping.side(dest_side)
        endpoint = self.crm if dest_side is Side.CRM else self.erp
        select = self.mapping.read_fields(dest_side)
        levels: list[list[tuple[str, pd.Series]]] = []
        if flow is Direction.FROM_CRM and dest.key:
            keys = pd.Series({s: self.erp_key_for_insert(page, s) for s in source_ids}, dtype=object)
            levels.append([(dest.key, keys)])
        for pairs in self.mapping.match_levels():
            levels.append([(str(_dest_field(f, flow)), self._match_values(page, f, source_ids)) for f in pairs])

        matches: dict[str, tuple[str, dict]] = {}
        pending = list(source_ids)
        for number, level in enumerate(levels):
            if not pending:
                break
            first_field, first_values = level[0]
            wanted = [v for v in first_values.reindex(pending).tolist() if v is not None]
            if not wanted:
                continue
            base = (
                None
                if (number == 0 and flow is Direction.FROM_CRM)
                else endpoint.render_filter(dest.filter, self.integration_user)
            )
            records = endpoint.read_where(
                dest.entity_set, first_field, wanted, select, base_filter=base, id_field=dest.id_field
            )
            if not records:
                continue
            found = pd.DataFrame.from_records(records)
            found.index = found[dest.id_field].astype(str)
            coupled = self.store.couplings("crm_id" if dest_side is Side.CRM else "erp_id", found.index.tolist())
            found = found[~found.index.isin(coupled["crm_id" if dest_side is Side.CRM else "erp_id"])]
            for field_name, _ in level:
                if field_name in found.columns:
                    found[f"__{field_name}"] = found[field_name].map(canonical)
            still: list[str] = []
            for source_id in pending:
                candidates = found
                for field_name, field_values in level:
                    wanted_value = field_values.get(source_id)
                    if wanted_value is None or f"__{field_name}" not in candidates.columns:
                        candidates = candidates.iloc[0:0]
                        break
                    candidates = candidates[candidates[f"__{field_name}"] == wanted_value]
                if len(candidates) == 1:
                    record = {k: v for k, v in candidates.iloc[0].to_dict().items() if not str(k).startswith("__")}
                    matches[source_id] = (str(candidates.index[0]), record)
                elif len(candidates) > 1:
                    fields = ", ".join(name for name, _ in level)
                    self._fail(
                        page,
                        outcome,
                        source_id,
                        ErrorKind.RECORD.value,
                        f"match-based coupling on {fields} found {len(candidates)} {dest.entity_set} records "
                        f"({', '.join(candidates.index[:5])}); make the values unique or couple the record by hand",
                    )
                else:
                    still.append(source_id)
            pending = still
        return matches

    def _match_values(self, page: Page, f: FieldMapping, source_ids: list[str]) -> pd.Series:
        source_field = f.erp if page.flow is Direction.TO_CRM else f.crm
        if source_field is None or source_field not in page.source.columns:
            return pd.Series(None, index=source_ids, dtype=object)
        series = apply_all(page.source.loc[source_ids, source_field].astype(object), f.transformations(page.flow))
        return series.map(canonical)

    def _current_hash(self, flow: Direction, record: dict[str, Any]) -> str:
        frame = pd.DataFrame.from_records([record])
        current = current_values(self.mapping, flow, frame)
        return str(fingerprint_rows(canonical_frame(current), hash_columns(self.mapping, flow)).iloc[0])

    # -- updates -------------------------------------------------------------------------------------------
    def _update(self, page: Page, source_ids: list[str], outcome: PageOutcome) -> None:
        flow = page.flow
        ops: list[BatchOperation] = []
        for source_id in source_ids:
            dest_id = str(page.plan_rows[source_id]["dest_id"])
            body = self.payload(flow, page.value_rows[source_id], insert=False)
            if flow is Direction.TO_CRM:
                ops.append(self.crm.upsert_op(source_id, self.mapping.crm, dest_id, body, mode="update"))
            else:
                ops.append(self.erp.update_op(source_id, self.mapping.erp, dest_id, body))
        endpoint = self.crm if flow is Direction.TO_CRM else self.erp
        deleted: list[str] = []
        for op, result in zip(ops, self._send(page, endpoint, ops), strict=True):
            dest_id = str(page.plan_rows[op.id]["dest_id"])
            is_new = op.id not in page.existing
            if result.ok:
                outcome.counts["modified"] += 1
                if is_new:  # matched by match-based coupling, then updated
                    outcome.counts["coupled"] += 1
                record = _erp_record(result) if flow is Direction.FROM_CRM else None
                self._couple(page, outcome, op.id, dest_id, written=True, dest_record=record, is_new=is_new)
            elif result.status == 404 and not is_new:
                deleted.append(op.id)
            else:
                message, detail = error_text(result, op)
                self._fail(page, outcome, op.id, ErrorKind.RECORD.value, message, detail)
        if deleted:
            self._resolve_deletions(page, deleted, outcome)

    def _resolve_deletions(self, page: Page, source_ids: list[str], outcome: PageOutcome) -> None:
        """Coupled destination records that no longer exist (BC's deletion conflict)."""
        rule = self.mapping.resolve_deletion_conflicts
        flow = page.flow
        dest = self.mapping.crm if flow is Direction.TO_CRM else self.mapping.erp
        if rule is DeletionConflictResolution.NONE:
            for source_id in source_ids:
                dest_id = str(page.plan_rows[source_id]["dest_id"])
                self._fail(
                    page,
                    outcome,
                    source_id,
                    ErrorKind.DELETED.value,
                    f"the coupled {dest.entity_set} record {dest_id} no longer exists (deleted). Set "
                    f"resolve_deletion_conflicts of {self.mapping.name} to restore (create it again) or "
                    "remove_coupling, or restore the record",
                )
            return
        if rule is DeletionConflictResolution.REMOVE_COUPLING:
            for source_id in source_ids:
                erp_id = source_id if flow is Direction.TO_CRM else str(page.existing[source_id]["erp_id"])
                outcome.removed_couplings.append(erp_id)
                self._clear_error(page, outcome, source_id)
                # BC (5345 GetCoupledRecord, "Remove Coupling"): the record is decoupled and nothing is written
                outcome.counts["uncoupled"] += 1
            return
        if flow is Direction.TO_CRM:
            ops = [
                self.crm.upsert_op(
                    s,
                    self.mapping.crm,
                    str(page.plan_rows[s]["dest_id"]),
                    self.payload(flow, page.value_rows[s], insert=True),
                    mode="upsert",
                )
                for s in source_ids
            ]
            restored: list[tuple[str, str]] = []
            for op, result in zip(ops, self._send(page, self.crm, ops), strict=True):
                if result.ok:
                    restored.append((op.id, str(page.plan_rows[op.id]["dest_id"])))
                else:
                    message, detail = error_text(result, op)
                    self._fail(page, outcome, op.id, ErrorKind.DELETED.value, message, detail)
            for source_id, crm_id in self._write_after_insert(page, restored, outcome):
                outcome.counts["inserted"] += 1
                self._couple(page, outcome, source_id, crm_id, written=True)
            return
        for source_id in source_ids:
            outcome.removed_couplings.append(str(page.existing[source_id]["erp_id"]))
        self._create_erp(page, source_ids, outcome)


def _index_rows(frame: pd.DataFrame) -> dict[Any, dict[str, Any]]:
    """``frame.to_dict("index")`` column by column: the same Python values (``tolist`` unboxes numpy scalars as
    ``to_dict`` does) at a fraction of the cost of pandas' per-cell boxing."""
    columns = list(frame.columns)
    if not columns:
        return {key: {} for key in frame.index}
    values = [frame[c].tolist() for c in columns]
    rows = zip(*values, strict=True)
    return {key: dict(zip(columns, row, strict=True)) for key, row in zip(frame.index, rows, strict=True)}


def _writes_erp_id(f: FieldMapping) -> bool:
    """True when the lookup writes an ERP record's id (an ``erp_via`` hop whose matched field is ``id``)."""
    return f.lookup is not None and f.lookup.erp_via is not None and f.lookup.erp_via.match == "id"


def _dest_field(f: FieldMapping, flow: Direction) -> str | None:
    return f.crm if flow is Direction.TO_CRM else f.erp


def _record_id(result: BatchResult) -> str:
    """The id of a successful CRM write: ``DataverseHook.batch`` resolves it for every successful write (from
    ``OData-EntityId``, the key or a read back) or fails that record alone (502 NoEntityId)."""
    return str(result.record_id).lower()


def _erp_record(result: BatchResult) -> dict[str, Any] | None:
    if isinstance(result.body, dict) and result.body.get("lastModifiedDateTime"):
        return dict(result.body)
    return None


def _text(value: Any) -> str | None:
    value = canonical(value)
    return None if value is None else str(value)


def _version(value: Any) -> int | None:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return int(value)


def _datetime(value: Any) -> Any:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    return value
