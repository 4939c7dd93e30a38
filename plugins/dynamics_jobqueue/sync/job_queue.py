"""The job queue entry of a table mapping: Ready, or On Hold with Inactivity Timeout (issue 17).

Business Central runs each integration table mapping as a recurring job queue entry (every 30 minutes) with an
*Inactivity Timeout Period* (720 or 1440 minutes, per mapping: codeunits 7204 "CDS Setup Defaults" and 5334
"CRM Setup Defaults", ``RecreateJobQueueEntryFromIntTableMapping``). After each run, codeunit 5341 "CRM Int.
Table. Subscriber" (``OnAfterJobQueueEntryRun``) sets the entry **On Hold with Inactivity Timeout** when the run
was idle (table 5338 "Integration Synch. Job", ``HaveJobsBeenIdle``: Inserted + Modified + Deleted + Failed =
0) and **Ready** otherwise. An on-hold entry runs again after its Inactivity Timeout Period (codeunit 448 "Job
Queue Dispatcher", ``CalcNextRunTimeHoldDuetoInactivityJob``), or sooner when a record of a table it syncs
changes: codeunit 5330 "CRM Integration Management" sets the entries acting on that table Ready 30 seconds
after the change.

Here each crm_sync task records the status of its mapping after every sync, whatever started the run
(:func:`record_run`; state store table ``dynamics.sync_job_queue_entry``). A *scheduled* run (the cron tick)
skips an on-hold mapping before any request to either service (:func:`scheduled_skip_reason`) when all of
these hold:

- its Inactivity Timeout Period has not passed since the idle run that put it on hold;
- both of its tables announce their changes, so a change wakes it: the Business Central entity set has a live
  webhook subscription (``dynamics.bc_webhook_subscriptions``) that existed when the mapping went on hold (a
  subscription recreated since may have missed changes), and the Dataverse table is watched (the change-tracking
  watcher is on, :func:`dynamics_jobqueue.sync.assets.change_poll_interval_s` > 0: every
  ``crm_change_poll_interval_s`` seconds, or, with Dataverse webhooks, every ``crm_change_safety_poll_interval_s``);
- no mapping it depends on synced changes earlier in the same run (a dependency's new couplings may let its
  failed or skipped records through).

The wake-up itself is crm_sync's asset-triggered run (:mod:`dynamics_jobqueue.sync.assets`): it syncs the
mappings reading the changed table and their dependents, whatever their status. A mapping whose Business
Central entity set accepts no webhook (``contacts``, ``salespeoplePurchasers``) is never skipped: it is polled
every 30 minutes, where Business Central's own table triggers wake its job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

from dynamics_jobqueue.sync import queries as q
from dynamics_jobqueue.sync.assets import change_poll_interval_s, crm_asset_name, erp_asset_name

if TYPE_CHECKING:
    from dynamics_jobqueue.hooks.state import StateStoreHook
    from dynamics_jobqueue.sync.loader import MappingSet
    from dynamics_jobqueue.sync.mapping import TableMapping


class JobQueueStatus(StrEnum):
    """The statuses a mapping's job queue entry takes here (table 472 "Job Queue Entry", field Status)."""

    READY = "Ready"
    ON_HOLD = "On Hold with Inactivity Timeout"


@dataclass(frozen=True)
class JobQueueEntry:
    """A mapping's job queue entry as the state store keeps it.

    :param status_since: when the status was set (UTC): the end of the mapping's last sync.
    :param inactivity_timeout_min: the mapping's Inactivity Timeout Period (minutes) at that time.
    :param last_run_id: the DAG run of that sync. :param last_run_idle: whether that sync was idle.
    """

    mapping: str
    status: JobQueueStatus
    status_since: datetime
    inactivity_timeout_min: int
    last_run_id: str
    last_run_idle: bool

    @property
    def on_hold_until(self) -> datetime | None:
        """When the Inactivity Timeout ends (UTC); ``None`` when the entry is Ready."""
        if self.status is not JobQueueStatus.ON_HOLD:
            return None
        return self.status_since + timedelta(minutes=self.inactivity_timeout_min)


def _entry(row: tuple) -> JobQueueEntry:
    mapping, status, since, timeout, run_id, idle = row
    return JobQueueEntry(mapping, JobQueueStatus(status), since, int(timeout), run_id, bool(idle))


def record_run(state: StateStoreHook, mapping: TableMapping, run_id: str, *, idle: bool) -> JobQueueEntry:
    """Set the mapping's job queue entry after a sync of it, as codeunit 5341 does after a job queue run.

    :param idle: the sync inserted, modified, deleted and failed nothing (``MappingRunResult.idle``).
    :return: the entry: On Hold with Inactivity Timeout after an idle sync of a mapping with an Inactivity
        Timeout Period, else Ready.
    """
    on_hold = idle and mapping.inactivity_timeout_min > 0
    status = JobQueueStatus.ON_HOLD if on_hold else JobQueueStatus.READY
    with state.transaction() as cur:
        cur.execute(q.SET_JOB_QUEUE_ENTRY, (mapping.name, status.value, mapping.inactivity_timeout_min, run_id, idle))
        row = cur.fetchone()
    assert row is not None
    return _entry(row)


def entries(state: StateStoreHook) -> dict[str, JobQueueEntry]:
    """Every mapping's job queue entry, by mapping name (a mapping that never synced has none)."""
    with state.transaction() as cur:
        cur.execute(q.JOB_QUEUE_ENTRIES)
        return {row[0]: _entry(row) for row in cur.fetchall()}


def crm_table_watched() -> bool:
    """Dataverse changes reach crm_sync as asset events: the change-tracking watcher is on (with Dataverse
    webhooks, at its slow safety interval: the webhook brings the change, the watcher what a lost delivery
    missed)."""
    return change_poll_interval_s() > 0


def skip_reason(
    mapping: TableMapping,
    entry: JobQueueEntry | None,
    *,
    now: datetime,
    erp_subscribed_since: datetime | None,
    crm_watched: bool,
    active_dependencies: list[str],
) -> str | None:
    """Why a scheduled run skips ``mapping``, or ``None`` when it syncs it (the rules of the module docstring).

    :param entry: the mapping's job queue entry (``None``: it never synced).
    :param now: the current time (UTC).
    :param erp_subscribed_since: creation time of the live webhook subscription to the mapping's Business
        Central entity set; ``None`` when there is none.
    :param crm_watched: Dataverse changes of the mapping's table arrive as asset events.
    :param active_dependencies: the mappings it depends on that synced changes earlier in this run.
    """
    if entry is None or entry.status is not JobQueueStatus.ON_HOLD or mapping.inactivity_timeout_min <= 0:
        return None
    until = entry.status_since + timedelta(minutes=mapping.inactivity_timeout_min)
    if now >= until or active_dependencies:
        return None
    if erp_subscribed_since is None or erp_subscribed_since > entry.status_since or not crm_watched:
        return None
    erp, crm = erp_asset_name(mapping.erp.entity_set), crm_asset_name(mapping.crm.entity_set)
    return (
        f"On Hold with Inactivity Timeout until {until.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC: a change to {erp} or "
        f"{crm} wakes it"
    )


def dependencies(mappings: MappingSet, name: str) -> list[str]:
    """Every mapping ``name`` depends on, directly or through others."""
    found: list[str] = []
    todo = list(mappings.get(name).depends_on)
    while todo:
        dependency = todo.pop()
        if dependency not in found:
            found.append(dependency)
            todo.extend(mappings.get(dependency).depends_on)
    return found


def scheduled_skip_reason(
    state: StateStoreHook, mapping: TableMapping, mappings: MappingSet, run_id: str, *, now: datetime | None = None
) -> str | None:
    """:func:`skip_reason` with its facts read from the state store (no request to either service).

    :param run_id: the DAG run: its job log says which dependencies synced changes.
    """
    with state.transaction() as cur:
        cur.execute(q.JOB_QUEUE_ENTRY, (mapping.name,))
        row = cur.fetchone()
        entry = _entry(row) if row else None
        if entry is None or entry.status is not JobQueueStatus.ON_HOLD:
            return None
        cur.execute(q.LIVE_WEBHOOK_SUBSCRIPTION, (mapping.erp.entity_set,))
        subscription = cur.fetchone()
        cur.execute(q.ACTIVE_MAPPINGS_OF_RUN, (run_id, dependencies(mappings, mapping.name)))
        active = [r[0] for r in cur.fetchall()]
    return skip_reason(
        mapping,
        entry,
        now=now or datetime.now(UTC),
        erp_subscribed_since=subscription[0] if subscription else None,
        crm_watched=crm_table_watched(),
        active_dependencies=active,
    )
