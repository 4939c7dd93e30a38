"""Operator of ERP <-> CRM synchronization: one task runs one integration table mapping."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from dynamics_jobqueue.console.links import SyncConsoleLink
from dynamics_jobqueue.sync.assets import affected_mappings
from dynamics_jobqueue.sync.loader import load_mappings

# The runner (pandas, psycopg, requests) is imported in execute(): the dag-processor parses the DAG file every
# 30 s and pays for every import made at module level (issue 7: <= 0.3 s per file).
if TYPE_CHECKING:
    from airflow.sdk import Context

STATE_CONN_ID = "dynamics_state"


class CrmSyncOperator(BaseOperator):
    """Run one integration table mapping (a job queue entry of BC's CRM synchronization, as a task).

    The run's params decide the details: ``full_sync`` (bool) ignores the watermarks; ``full_synch_review``
    (bool) is BC's Full Synch. Review, the first synchronization: every record is read, and uncoupled records
    that match nothing are created and coupled even in mappings with ``synch_only_coupled_records``;
    ``mappings`` (list of mapping names or task ids) runs only those, the other tasks end skipped. A run started
    by asset events (:mod:`dynamics_jobqueue.sync.assets`) runs only the mappings that read a changed table and
    those depending on them; the others end skipped.

    Job queue entry (:mod:`dynamics_jobqueue.sync.job_queue`): after every sync the mapping is On Hold with
    Inactivity Timeout when the sync was idle, else Ready. A *scheduled* run (``dag_run.run_type`` scheduled: the
    cron tick) ends the task skipped, before any request to either service, while the mapping is on hold, its
    ``inactivity_timeout_min`` has not passed, both of its tables announce their changes (a live Business Central
    webhook subscription, the Dataverse change watcher) and no mapping it depends on synced changes earlier in
    the run (their jobs in this run's job log). Asset-triggered, manual, ``full_sync``, ``full_synch_review`` and
    ``mappings`` runs never skip for that.

    Before reading anything the task checks the mapping's names against both services' ``$metadata``, unless the
    same mapping definition passed against the same services within ``metadata_check_max_age_h`` hours
    (:func:`dynamics_jobqueue.sync.metadata.check_unless_passed`); a Business Central company looked up by name
    is kept in the state store for the next tasks (:mod:`dynamics_jobqueue.sync.company_ids`).

    Outcomes: every record that can sync is committed. When records failed, the task fails *without* an
    Airflow retry (the next scheduled run retries exactly those records, and an immediate retry would count
    the same error twice and mark records Skipped); the failure lists the counts and the first records with
    their reasons. Wrong credentials fail at once too. Throttling and outages that outlast the hooks' own
    retries raise normally, so the task's retries (exponential backoff) apply.

    :param mapping_name: the mapping's name, e.g. ``CUSTOMER`` (templated).
    :param mappings_dir: folder of the mapping files (default ``include/mappings``).
    :param state_conn_id: the state store. :param business_central_conn_id: the ERP connection.
    :param dataverse_conn_id: the CRM connection.
    """

    operator_extra_links = (SyncConsoleLink(),)
    template_fields: Sequence[str] = ("mapping_name",)
    ui_color = "#e8f1fb"

    def __init__(
        self,
        *,
        mapping_name: str,
        mappings_dir: str | None = None,
        state_conn_id: str = STATE_CONN_ID,
        business_central_conn_id: str = "business_central_default",
        dataverse_conn_id: str = "dataverse_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.mapping_name = mapping_name
        self.mappings_dir = mappings_dir
        self.state_conn_id = state_conn_id
        self.business_central_conn_id = business_central_conn_id
        self.dataverse_conn_id = dataverse_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from dynamics_jobqueue import settings
        from dynamics_jobqueue.hooks.business_central import BusinessCentralHook
        from dynamics_jobqueue.hooks.dataverse import DataverseHook
        from dynamics_jobqueue.hooks.errors import AuthenticationError
        from dynamics_jobqueue.hooks.state import StateStoreHook
        from dynamics_jobqueue.sync.company_ids import StateStoreCompanyIds
        from dynamics_jobqueue.sync.job_queue import record_run, scheduled_skip_reason
        from dynamics_jobqueue.sync.mapping import MappingError
        from dynamics_jobqueue.sync.metadata import check_unless_passed
        from dynamics_jobqueue.sync.options import runner_class
        from dynamics_jobqueue.sync.runner import COUNT_NAMES, SyncRecordsFailed, SyncSystemicError

        params = context["params"]
        mappings = load_mappings(self.mappings_dir)
        mapping = mappings.get(self.mapping_name)
        selected = [str(name) for name in params.get("mappings") or []]
        if selected and mapping.name not in selected and mapping.slug not in selected:
            raise AirflowSkipException(f"{mapping.name} is not in this run's mappings ({', '.join(selected)})")
        # A run started by asset events (a table changed) syncs the mappings reading that table and their dependents.
        changed = sorted({asset.name for asset in context.get("triggering_asset_events") or {}})
        if changed and not selected and mapping.name not in affected_mappings(mappings, changed):
            raise AirflowSkipException(f"{mapping.name} reads none of the changed tables ({', '.join(changed)})")
        review = bool(params.get("full_synch_review", False))
        full_sync = bool(params.get("full_sync", False) or review)
        state = StateStoreHook(state_conn_id=self.state_conn_id)
        run_type = getattr(context.get("dag_run"), "run_type", None)
        if getattr(run_type, "value", run_type) == "scheduled" and not selected and not full_sync:
            # Before the $metadata check: an idle tenant's cron tick costs no request for this mapping.
            on_hold = scheduled_skip_reason(state, mapping, mappings, context["run_id"])
            if on_hold:
                raise AirflowSkipException(f"{mapping.name}: {on_hold}")
        # A company looked up by name is kept in the state store: the next tasks skip the GET companies.
        erp_hook = BusinessCentralHook(self.business_central_conn_id, company_ids=StateStoreCompanyIds(state))
        crm_hook = DataverseHook(self.dataverse_conn_id)
        try:  # a misspelt entity set or field fails here, named, instead of as an HTTP 400 per record
            max_age_h = settings.metadata_check_max_age_h()
            if not check_unless_passed(state, mapping, erp_hook, crm_hook, max_age_h=max_age_h):
                self.log.info("%s: $metadata check passed within %g h; not read again", mapping.name, max_age_h)
        except MappingError as exc:
            raise AirflowFailException(
                f"{exc}. Fix the mapping file; the services' $metadata lists the names."
            ) from exc
        except AuthenticationError as exc:
            raise AirflowFailException(f"{exc} Check the connection's client id, secret and tenant.") from exc
        runner = runner_class(mapping)(
            mapping,
            mappings,
            state=state,
            erp_hook=erp_hook,
            crm_hook=crm_hook,
            run_id=context["run_id"],
            full_sync=full_sync,
            full_synch_review=review,
        )
        try:
            result = runner.run()
        except SyncSystemicError as exc:
            record_run(state, mapping, context["run_id"], idle=False)  # not idle: the next cron tick runs it
            if isinstance(exc.error, AuthenticationError):
                raise AirflowFailException(f"{exc} Check the connection's client id, secret and tenant.") from exc
            raise
        entry = record_run(state, mapping, context["run_id"], idle=result.idle)
        until = f" until {entry.on_hold_until:%Y-%m-%d %H:%M:%S} UTC" if entry.on_hold_until else ""
        self.log.info("%s: job queue entry %s%s", mapping.name, entry.status.value, until)
        if result.failed:
            raise AirflowFailException(str(SyncRecordsFailed(result)))
        return {p.flow.value: {name: p.counts[name] for name in COUNT_NAMES} for p in result.passes}
