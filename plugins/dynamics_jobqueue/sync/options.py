"""One run of an option mapping: Business Central codes -> the options of a Dataverse choice column.

Business Central syncs its payment terms, shipment methods and shipping agents to the account's choice columns
``paymenttermscode``, ``address1_freighttermscode`` and ``address1_shippingmethodcode`` (codeunit 7204 "CDS Setup
Defaults": mappings PAYMENT TERMS, SHIPMENT METHOD, SHIPPING AGENT, direction To Integration Table, Synch. Only
Coupled Records, the code used for match-based coupling; codeunits 5364 "Int. Option Synch. Invoke" and 5365 "CDS
Int. Option Couple"). The ERP record's code is the option's label; its coupling (table "CRM Option Mapping") holds
the option's value, which the CUSTOMER mapping's lookups then write to the account.

Per ERP record of the mapping's Table Filter (these tables are small and read whole on every run):

========== =============================================================================================
Unchanged  coupled, changed in the ERP since its last sync (or a full sync), and the option still has the code
           as its label; a record not changed since is no candidate and not counted
Modified   coupled, and the label differs (a renamed option): ``UpdateOptionValue`` relabels it
Inserted   not coupled, no option has the code as its label, and the run may create (a Full Synch. Review):
           ``InsertOptionValue`` adds it
Coupled    not coupled and an option with that label (case-insensitive, as BC matches) exists: coupled to it
           (counted Unchanged too, or Modified when the label's case differs and is set to the code)
Skipped    not coupled, no match, and the mapping syncs only coupled records; or marked Skipped after errors
Failed     the coupled option no longer exists (deletion conflict, resolution ``none``), or an API error
========== =============================================================================================
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from dynamics_jobqueue.hooks.errors import ApiError
from dynamics_jobqueue.sync.endpoints import ErpEndpoint
from dynamics_jobqueue.sync.mapping import DeletionConflictResolution, Direction
from dynamics_jobqueue.sync.planner import ErrorKind
from dynamics_jobqueue.sync.runner import MappingRunner, MappingRunResult, PassResult, SyncSystemicError
from dynamics_jobqueue.sync.store import Coupling, PageOutcome, RecordFailure, SyncStore

if TYPE_CHECKING:
    from dynamics_jobqueue.hooks.business_central import BusinessCentralHook
    from dynamics_jobqueue.hooks.dataverse import DataverseHook
    from dynamics_jobqueue.hooks.state import StateStoreHook
    from dynamics_jobqueue.sync.loader import MappingSet
    from dynamics_jobqueue.sync.mapping import TableMapping

log = logging.getLogger(__name__)


class OptionMappingRunner:
    """Runs one option mapping (same parameters and result as :class:`~dynamics_jobqueue.sync.runner.MappingRunner`).

    :param full_synch_review: create the options that match nothing even under ``synch_only_coupled_records``.
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
        **_: Any,
    ) -> None:
        assert mapping.crm.option_set is not None, f"{mapping.name} is not an option mapping"
        self.mapping = replace(mapping, synch_only_coupled_records=False) if full_synch_review else mapping
        self.state = state
        self.erp = ErpEndpoint(erp_hook, erp_page_size)
        self.crm_hook = crm_hook
        self.run_id = run_id or f"manual__{datetime.now(UTC).isoformat()}"
        self.full_sync = full_sync
        self.table, self.column = mapping.crm.option_set

    def run(self) -> MappingRunResult:
        """Sync every ERP record of the mapping to the choice column's options.

        :raises SyncSystemicError: on authentication, throttling or outage errors after the hooks' retries.
        """
        flow = Direction.TO_CRM
        with SyncStore.open(self.state, self.mapping.name) as store:
            job_id = store.start_job(self.run_id, flow.value, self.full_sync)
            result = PassResult(self.mapping.name, flow, job_id)
            try:
                outcome = self._sync(store, job_id)
                store.commit_page(job_id, flow.value, outcome, skip_after=self.mapping.skip_after_same_error)
            except ApiError as exc:
                store.finish_job(job_id, status="failed", message=str(exc)[:4000], direction=flow.value, watermark=None)
                if exc.is_systemic:
                    raise SyncSystemicError(self.mapping.name, exc) from exc
                raise
            except Exception as exc:
                store.finish_job(job_id, status="failed", message=str(exc)[:4000], direction=flow.value, watermark=None)
                raise
            result.counts.update(outcome.counts)
            result.failures.extend(outcome.failures[:10])
            run = MappingRunResult(self.mapping.name, [result])
            status = "failed" if result.counts["failed"] else "success"
            store.finish_job(
                job_id,
                status=status,
                message=run.describe() if result.counts["failed"] else None,
                direction=flow.value,
                watermark=None,
            )
        log.info("%s to CRM: %s", self.mapping.name, ", ".join(f"{k} {v}" for k, v in sorted(result.counts.items())))
        return run

    def _sync(self, store: SyncStore, job_id: int) -> PageOutcome:
        mapping = self.mapping
        key = str(mapping.erp.key)
        records: list[dict[str, Any]] = []
        for page, _ in self.erp.read_changed(
            mapping.erp, ["id", key, "lastModifiedDateTime"], since=None, integration_user=None
        ):
            records.extend(page)
        options = self.crm_hook.option_set(self.table, self.column)
        ids = [str(r["id"]).lower() for r in records]
        couplings = store.couplings("erp_id", ids).set_index("erp_id")
        state = store.record_state(job_id, ids, [])
        skipped = set(state.loc[state["skipped"].astype(bool), "source_id"]) if not state.empty else set()
        errored = set(state["source_id"]) if not state.empty else set()
        taken = {str(v) for v in couplings["crm_id"]} if not couplings.empty else set()
        outcome = PageOutcome(counts=Counter())

        def couple(erp_id: str, code: str, value: int, modified: Any, *, is_new: bool) -> None:
            outcome.couplings.append(
                Coupling(
                    erp_id=erp_id,
                    crm_id=str(value),
                    erp_key=code,
                    crm_key=code,
                    erp_modified_at=_time(modified),
                    crm_version=None,
                    erp_hash=None,
                    crm_hash=None,
                    is_new=is_new,
                )
            )
            taken.add(str(value))
            if erp_id in errored:
                outcome.succeeded.append(erp_id)

        def fail(erp_id: str, code: str, kind: str, message: str, value: Any = None) -> None:
            outcome.counts["failed"] += 1
            outcome.failures.append(RecordFailure(erp_id, code, None if value is None else str(value), kind, message))

        for record, erp_id in zip(records, ids, strict=True):
            code = str(record.get(key) or "")
            if erp_id in skipped:
                outcome.counts["skipped"] += 1
                continue
            if not code:
                continue
            try:
                if erp_id in couplings.index:
                    value = int(couplings.loc[erp_id, "crm_id"])
                    if value in options:
                        if options[value] == code:
                            synced = couplings.loc[erp_id, "erp_modified_at"]
                            modified = _time(record.get("lastModifiedDateTime"))
                            if self.full_sync or synced is None or modified is None or modified > synced:
                                outcome.counts["unchanged"] += 1
                            else:  # not changed since its last sync: not a candidate (BC reads changes only)
                                continue
                        else:
                            self.crm_hook.update_option_value(self.table, self.column, value, code)
                            options[value] = code
                            outcome.counts["modified"] += 1
                        couple(erp_id, code, value, record.get("lastModifiedDateTime"), is_new=False)
                        continue
                    rule = mapping.resolve_deletion_conflicts
                    if rule is DeletionConflictResolution.NONE:
                        fail(
                            erp_id,
                            code,
                            ErrorKind.DELETED.value,
                            f"the coupled option {value} of {self.table}.{self.column} no longer exists (deleted). "
                            f"Set resolve_deletion_conflicts of {mapping.name} to restore (add it again) or "
                            "remove_coupling",
                            value,
                        )
                        continue
                    if rule is DeletionConflictResolution.REMOVE_COUPLING:
                        outcome.removed_couplings.append(erp_id)
                        outcome.counts["uncoupled"] += 1
                        continue
                    new = self.crm_hook.insert_option_value(self.table, self.column, code)
                    options[new] = code
                    outcome.counts["inserted"] += 1
                    couple(erp_id, code, new, record.get("lastModifiedDateTime"), is_new=True)
                    continue
                # Match-based coupling on the code (BC compares case-insensitively), to an option not coupled yet.
                match = next(
                    (v for v, label in options.items() if label.lower() == code.lower() and str(v) not in taken), None
                )
                if match is not None:
                    # Synch. After Bulk Coupling (true in CDS Setup Defaults): the coupled option takes the code
                    # as its label ("FedEx" becomes "FEDEX").
                    if options[match] != code:
                        self.crm_hook.update_option_value(self.table, self.column, match, code)
                        options[match] = code
                        outcome.counts["modified"] += 1
                    else:
                        outcome.counts["unchanged"] += 1
                    outcome.counts["coupled"] += 1
                    couple(erp_id, code, match, record.get("lastModifiedDateTime"), is_new=True)
                elif mapping.synch_only_coupled_records:
                    outcome.counts["skipped"] += 1
                else:
                    new = self.crm_hook.insert_option_value(self.table, self.column, code)
                    options[new] = code
                    outcome.counts["inserted"] += 1
                    couple(erp_id, code, new, record.get("lastModifiedDateTime"), is_new=True)
            except ApiError as exc:
                if exc.is_systemic:
                    raise
                fail(erp_id, code, ErrorKind.RECORD.value, str(exc))
        return outcome


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    stamp = pd.Timestamp(value)
    return (stamp.tz_convert("UTC") if stamp.tzinfo else stamp.tz_localize("UTC")).to_pydatetime()


def runner_class(mapping: TableMapping) -> type[MappingRunner] | type[OptionMappingRunner]:
    """The runner of ``mapping``: :class:`OptionMappingRunner` for an option mapping, else ``MappingRunner``."""
    return OptionMappingRunner if mapping.is_option_mapping else MappingRunner
