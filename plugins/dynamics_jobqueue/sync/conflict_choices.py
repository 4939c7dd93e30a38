"""Users' choices for the update conflicts of mappings resolved by ``ask`` (``dynamics.sync_conflict_choice``).

A bidirectional mapping with ``resolve_update_conflicts: ask`` fails a record whose two sides both changed a
bidirectional field (Business Central's rule and message, codeunit 5345 "Integration Rec. Synch. Invoke") and
keeps it in ``dynamics.sync_record_error`` (kind ``conflict``). :func:`open_conflicts` lists those still to ask
about; :func:`save_choice` stores a user's answer. The ERP->CRM pass of the next run applies a pending
``send_erp_data`` / ``take_crm_data`` choice (:meth:`~dynamics_jobqueue.sync.store.SyncStore.conflict_choices`);
a ``skip`` is applied at once. Asking (Airflow required actions) is :mod:`dynamics_jobqueue.operators.conflicts`.
SQL in :mod:`dynamics_jobqueue.sync.queries`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from dynamics_jobqueue.sync import queries as q

if TYPE_CHECKING:
    from dynamics_jobqueue.hooks.state import StateStoreHook

#: At most this many conflicts per mapping and run are asked about (the rest are asked by the next runs).
MAX_ASKED = 100


def open_conflicts(store: StateStoreHook, mapping: str, limit: int = MAX_ASKED) -> list[dict[str, Any]]:
    """The update conflicts of ``mapping`` waiting for a user's choice: failing (not Skipped) and without a choice
    waiting to be applied.

    :return: up to ``limit`` dicts ``mapping``, ``source_id`` (ERP id), ``source_key`` (e.g. the customer number),
        ``destination_id`` (CRM id), ``message`` (BC's conflict message) and ``fields`` (per differing field
        ``field`` (CRM), ``erp_field``, ``erp`` and ``crm`` values), ordered by key.
    """
    with store.transaction() as cur:
        rows = cur.execute(q.CONFLICTS_TO_ASK, (mapping, limit)).fetchall()
    return [
        {
            "mapping": mapping,
            "source_id": source_id,
            "source_key": source_key,
            "destination_id": destination_id,
            "message": message,
            "fields": json.loads(detail) if detail else [],
        }
        for source_id, source_key, destination_id, message, detail in rows
    ]


def save_choice(
    store: StateStoreHook,
    conflict: dict[str, Any],
    resolution: str,
    *,
    chosen_by: str,
    dag_id: str | None = None,
    run_id: str | None = None,
    task_id: str | None = None,
    map_index: int | None = None,
) -> None:
    """Store a user's choice for one conflict, in one transaction.

    ``send_erp_data`` and ``take_crm_data`` wait for the next run (``applied_at`` empty); ``skip`` is applied at
    once: ``applied_at`` is set and the record's error is marked Skipped (it stays out of the sync until reset in
    the console).

    :param conflict: one item of :func:`open_conflicts` (``mapping`` and ``source_id`` needed; ``source_key``,
        ``destination_id`` and ``fields`` stored as given).
    :param resolution: ``send_erp_data``, ``take_crm_data`` or ``skip``.
    :param chosen_by: who chose (the required action's responder).
    :param dag_id: the task instance that asked, with ``run_id``, ``task_id`` and ``map_index``.
    :raises psycopg.errors.CheckViolation: for another ``resolution`` (the table's CHECK constraint).
    """
    skip = resolution == "skip"
    with store.transaction() as cur:
        cur.execute(
            q.SAVE_CONFLICT_CHOICE,
            (
                conflict["mapping"],
                conflict["source_id"],
                conflict.get("source_key"),
                conflict.get("destination_id"),
                resolution,
                json.dumps(conflict.get("fields") or [], default=str),
                chosen_by,
                dag_id,
                run_id,
                task_id,
                map_index,
                skip,
            ),
        )
        if skip:
            cur.execute(q.SKIP_CONFLICT_RECORD, (conflict["mapping"], conflict["source_id"]))
