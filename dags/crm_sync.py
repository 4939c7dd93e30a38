"""CRM synchronization: Business Central <-> Dataverse, one task per integration table mapping.

The tasks are the table mappings of ``include/mappings`` (currencies, salespeople, units of measure, customers,
contacts, resources and items as products) and the edges are their dependencies, so a mapping starts as soon as
the mappings it looks up have synced and independent ones run in parallel - BC's Full Synch. Review as a DAG.
Every 30 minutes by default (setting ``crm_sync_schedule``: a cron expression, or ``none`` for manual runs
only) **or** as soon as a table a mapping reads changed (``AssetOrTimeSchedule``): each mapping's Business Central
entity set and Dataverse table is an Asset (:mod:`dynamics_jobqueue.sync.assets`) whose events come from Business
Central webhooks and Dataverse webhooks (the receiver in the api-server; subscriptions and steps kept by the
``webhook_subscriptions`` DAG) and from a Dataverse change-tracking watcher in the triggerer (every
``crm_change_poll_interval_s`` seconds, or every ``crm_change_safety_poll_interval_s`` as a safety net when
``dataverse_webhook_url`` is set; the interval is chosen when this file is parsed). A run started
by such events syncs only the mappings reading a changed table and those depending on them (the others end
skipped); the 30-minute schedule stays the safety net for anything a notification missed.

An idle tenant costs almost nothing (Business Central's *On Hold with Inactivity Timeout*): after every sync a
mapping's job queue entry is On Hold with Inactivity Timeout when nothing was inserted, modified, deleted or
failed, else Ready (the task log says which; the console's ``/dynamics/api/sync/mappings`` has it as
``job_queue_status``). A scheduled run (the cron tick) skips an on-hold mapping, before any request to either
service, for its ``inactivity_timeout_min`` (Business Central's 720 or 1440 minutes per mapping) as long as a
change to either of its tables starts a run instead: the Business Central entity set has a live webhook
subscription and the Dataverse watcher is on. Mappings without a webhook (contacts, salespeople) are polled every
30 minutes; a mapping whose dependency synced changes earlier in the run is not skipped; other run types never
skip for it (:mod:`dynamics_jobqueue.sync.job_queue`).

Scheduled runs sync coupled records only (every default mapping has *Synch. Only Coupled Records*, as in
Business Central): an uncoupled record is coupled to its match, never created. The first synchronization is a
run with ``full_synch_review`` (BC's Full Synch. Review): every mapping in dependency order, records coupled by
match and the rest created and coupled (`make demo` does this on its first run).

Params: ``full_sync`` reads every record instead of the changes since the last run; ``full_synch_review`` is the
first synchronization above; ``mappings`` runs only the named mappings. A mapping with failed records ends
failed after committing everything else, and the mappings that depend on it still run (trigger rule
``all_done``): their records whose dependencies are coupled sync, the others fail alone with "dependency not
coupled" and are retried by the next run. A final watcher task (trigger rule ``one_failed``) then fails
the DAG run, so a run with a failed mapping is never green.

A bidirectional mapping resolving update conflicts by ``ask`` has two more tasks after its sync task:
``conflicts_<mapping>`` lists its open update conflicts and ``ask_<mapping>`` (mapped) turns each into a
required action (Browse > Required Actions) where a user chooses "send ERP data", "take CRM data" or "skip"
(:mod:`dynamics_jobqueue.operators.conflicts`); the next run applies the choice. The run waits for the answers
(at most ``crm_conflict_response_timeout_min`` minutes).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import DAG, AssetAny, AssetOrTimeSchedule, CronTriggerTimetable, Param

from dynamics_jobqueue import settings
from dynamics_jobqueue.notifiers import failure_callbacks
from dynamics_jobqueue.operators.conflicts import ask_conflicts_tasks
from dynamics_jobqueue.operators.sync import CrmSyncOperator
from dynamics_jobqueue.operators.watcher import watch
from dynamics_jobqueue.sync.assets import change_poll_interval_s, mapping_assets
from dynamics_jobqueue.sync.loader import load_mappings
from dynamics_jobqueue.sync.mapping import UpdateConflictResolution

MAPPINGS = load_mappings()
SCHEDULE = settings.get("crm_sync_schedule")
ASSETS = mapping_assets(MAPPINGS, poll_interval_s=change_poll_interval_s())

with DAG(
    dag_id="crm_sync",
    schedule=None
    if SCHEDULE.strip().lower() in ("", "none")
    else AssetOrTimeSchedule(timetable=CronTriggerTimetable(SCHEDULE, timezone="UTC"), assets=AssetAny(*ASSETS)),
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    params={
        "full_sync": Param(False, type="boolean", description="Ignore the watermarks and read every record"),
        "full_synch_review": Param(
            False,
            type="boolean",
            description="Full Synch. Review: read every record, couple by match and create what matches nothing",
        ),
        "mappings": Param(
            [],
            type="array",
            items={"type": "string", "enum": MAPPINGS.names},
            description="Run only these mappings (empty: all)",
        ),
    },
    default_args={
        "on_failure_callback": failure_callbacks(),
        # Job queue defaults of sync jobs: Rerun Delay 30 s, more attempts with a growing delay.
        "retries": 3,
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
        "trigger_rule": "all_done",
        "pool": settings.get("crm_sync_pool"),
    },
    doc_md=__doc__,
    tags=["dynamics", "crm"],
) as dag:
    sync = {m.name: CrmSyncOperator(task_id=m.slug, mapping_name=m.name, doc_md=m.description) for m in MAPPINGS}
    for mapping in MAPPINGS:
        for dependency in mapping.depends_on:
            sync[dependency] >> sync[mapping.name]
        if mapping.resolve_update_conflicts is UpdateConflictResolution.ASK:
            ask_conflicts_tasks(
                mapping.name,
                mapping.slug,
                sync[mapping.name],
                int(settings.get("crm_conflict_response_timeout_min")),
            )
    watch(dag)
