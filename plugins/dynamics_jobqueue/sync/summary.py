"""The run summary: one row per mapping with BC's Integration Synch. Job counters.

Read from ``dynamics.sync_job`` (docs/reference/dynamics-semantics.md section 1, step 6: Inserted, Modified, Deleted,
Unchanged, Skipped, Failed per mapping and direction, and Coupled, Uncoupled as table 5338 "Integration Synch. Job"
counts them). The demo prints it after ``crm_sync``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from dynamics_jobqueue.sync import queries as q
from dynamics_jobqueue.sync.loader import MappingSet, load_mappings
from dynamics_jobqueue.sync.mapping import Direction

if TYPE_CHECKING:
    from dynamics_jobqueue.hooks.state import StateStoreHook

COUNTERS = ["inserted", "modified", "deleted", "unchanged", "skipped", "failed", "coupled", "uncoupled"]
SUMMARY_COLUMNS = ["mapping", "direction", *COUNTERS]


def run_jobs(state_hook: StateStoreHook, dag_run_id: str | None = None) -> pd.DataFrame:
    """Every job (mapping and direction) of one run, in the order they started.

    :param state_hook: the state store.
    :param dag_run_id: the Airflow DAG run id; the latest run when ``None``.
    :return: columns ``id, mapping, direction, status, started_at, finished_at`` (UTC), the counters and
        ``message``; empty when there is no such run.
    """
    columns = ["id", "mapping", "direction", "status", "started_at", "finished_at", *COUNTERS, "message"]
    with state_hook.transaction() as cur:
        if dag_run_id is None:
            cur.execute(q.LATEST_RUN)
            row = cur.fetchone()
            if row is None:
                return pd.DataFrame(columns=columns)
            dag_run_id = row[0]
        cur.execute(q.JOBS_OF_RUN, (dag_run_id,))
        rows = cur.fetchall()
    return pd.DataFrame(rows, columns=columns)


def run_summary(
    state_hook: StateStoreHook, dag_run_id: str | None = None, mappings: MappingSet | None = None
) -> pd.DataFrame:
    """One row per mapping of a run, in run order, with the counters of its directions added up.

    Run order is the DAG's: dependencies first, ties in the order of the mapping files (the seeds' recommended
    order), whichever of two independent tasks happened to start first; mappings no longer in the files come
    last, in the order they started.

    :param state_hook: the state store.
    :param dag_run_id: the Airflow DAG run id (e.g. ``manual__2026-11-21T10:00:00+00:00``); the latest run
        when ``None``.
    :param mappings: the mappings that give the run order (default: :func:`load_mappings`).
    :return: columns ``mapping, direction, inserted, modified, deleted, unchanged, skipped, failed, coupled,
        uncoupled``;
        ``direction`` is ``to CRM``, ``from CRM`` or ``both`` (the directions that ran); counters are ints.
        Empty (with those columns) when the run has no sync jobs.
    """
    jobs = run_jobs(state_hook, dag_run_id)
    if jobs.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    order = {name: i for i, name in enumerate((mappings or load_mappings()).names)}
    first_start = {name: i for i, name in enumerate(dict.fromkeys(jobs["mapping"]))}
    jobs = jobs.assign(_order=jobs["mapping"].map(lambda m: (order.get(m, len(order)), first_start[m]))).sort_values(
        "_order", kind="stable"
    )
    rows = []
    for mapping, group in jobs.groupby("mapping", sort=False):
        directions = set(group["direction"])
        if directions == {Direction.TO_CRM.value, Direction.FROM_CRM.value}:
            direction = Direction.BIDIRECTIONAL.label
        else:
            direction = Direction(directions.pop()).label
        rows.append({"mapping": mapping, "direction": direction, **{c: int(group[c].sum()) for c in COUNTERS}})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
