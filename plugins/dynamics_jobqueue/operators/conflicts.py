"""Update conflicts as Airflow required actions (Human-in-the-loop), for mappings resolving them by ``ask``.

A bidirectional mapping with ``resolve_update_conflicts: ask`` fails a record whose two sides both changed a
bidirectional field, as with ``none`` (Business Central's rule and message, codeunit 5345 "Integration Rec.
Synch. Invoke"); the crm_sync DAG then lists the mapping's open conflicts
(:func:`~dynamics_jobqueue.sync.conflict_choices.open_conflicts`) and asks about
each in a mapped :class:`ConflictChoiceOperator`: a required action in Airflow's UI (Browse > Required Actions,
or the REST API ``/api/v2/hitlDetails``) showing both values per field, with the options "send ERP data", "take
CRM data" and "skip". The choice is stored in ``dynamics.sync_conflict_choice`` with the responder's name
(:func:`~dynamics_jobqueue.sync.conflict_choices.save_choice`):

- "send ERP data" / "take CRM data": the next run's ERP->CRM pass applies it as ``send_erp_data`` /
  ``take_crm_data`` would (:func:`dynamics_jobqueue.sync.planner.plan_page`), logs it and marks it applied;
- "skip": at once, the record is marked Skipped (it stays out of the sync until reset in the console).

Airflow's Human-in-the-loop: https://airflow.apache.org/docs/apache-airflow-providers-standard/stable/operators/hitl.html
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.hitl import HITLOperator

from dynamics_jobqueue.sync.conflict_choices import open_conflicts, save_choice

if TYPE_CHECKING:
    from airflow.sdk import Context

log = logging.getLogger(__name__)

STATE_CONN_ID = "dynamics_state"
SEND_ERP_DATA = "send ERP data"
TAKE_CRM_DATA = "take CRM data"
SKIP = "skip"
#: The required action's options -> the stored resolution.
OPTIONS = {SEND_ERP_DATA: "send_erp_data", TAKE_CRM_DATA: "take_crm_data", SKIP: "skip"}


def conflict_body(conflict: dict[str, Any]) -> str:
    """The required action's text (Markdown): both values per field, then BC's message."""
    lines = [
        f"The ERP record **{conflict.get('source_key') or conflict['source_id']}** and the CRM record "
        f"`{conflict.get('destination_id')}` of **{conflict['mapping']}** both changed since the last sync.",
        "",
        "| Field (ERP / CRM) | ERP value | CRM value |",
        "|---|---|---|",
    ]
    for f in conflict.get("fields") or []:
        lines.append(f"| {f.get('erp_field') or ''} / {f['field']} | {_cell(f.get('erp'))} | {_cell(f.get('crm'))} |")
    lines += [
        "",
        f"**{SEND_ERP_DATA}**: the ERP's values overwrite the CRM record. **{TAKE_CRM_DATA}**: the CRM's values "
        f"overwrite the ERP record. The next run applies the choice. **{SKIP}**: the record is marked Skipped "
        "until it is reset in the console.",
        "",
        f"> {conflict.get('message') or ''}",
    ]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    return "*(blank)*" if value is None or value == "" else str(value).replace("|", "\\|")


class ConflictChoiceOperator(HITLOperator):
    """Ask a user how to resolve one update conflict, and store the choice with who made it.

    Used mapped (``.partial(...).expand(conflict=...)``): one required action per conflict. The choice is stored
    in ``dynamics.sync_conflict_choice`` (resolution ``send_erp_data``, ``take_crm_data`` or ``skip``; the
    responder's name as ``chosen_by``); "skip" marks the record Skipped at once.

    :param conflict: one item of :func:`~dynamics_jobqueue.sync.conflict_choices.open_conflicts`.
    :param state_conn_id: the state store.
    :param response_timeout_min: minutes to wait; unanswered, the task fails (no default choice is taken) and
        the next run asks again.
    :return: the HITL payload (``chosen_options``, ``responded_by_user``, ...).
    """

    ui_color = "#fff3cd"

    def __init__(
        self,
        *,
        conflict: dict[str, Any],
        state_conn_id: str = STATE_CONN_ID,
        response_timeout_min: int = 25,
        **kwargs: Any,
    ) -> None:
        record = conflict.get("source_key") or conflict["source_id"]
        kwargs.setdefault("subject", f"Update conflict: {conflict['mapping']} {record}")
        kwargs.setdefault("body", conflict_body(conflict))
        super().__init__(
            options=list(OPTIONS),
            multiple=False,
            response_timeout=timedelta(minutes=response_timeout_min) if response_timeout_min > 0 else None,
            **kwargs,
        )
        self.conflict = conflict
        self.state_conn_id = state_conn_id

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        from dynamics_jobqueue.hooks.state import StateStoreHook

        payload = super().execute_complete(context, event)
        (chosen,) = payload["chosen_options"]
        responder = payload["responded_by_user"] or {}
        who = str(responder.get("name") or responder.get("id") or "?")
        resolution = OPTIONS[chosen]
        c = self.conflict
        ti = context["ti"]
        save_choice(
            StateStoreHook(state_conn_id=self.state_conn_id),
            c,
            resolution,
            chosen_by=who,
            dag_id=ti.dag_id,
            run_id=ti.run_id,
            task_id=ti.task_id,
            map_index=ti.map_index,
        )
        self.log.info(
            "%s chose %r (%s) for the update conflict of %s %s (CRM %s)%s",
            who,
            chosen,
            resolution,
            c["mapping"],
            c.get("source_key") or c["source_id"],
            c.get("destination_id"),
            ": marked Skipped" if resolution == "skip" else ": the next run applies it",
        )
        return payload


def ask_conflicts_tasks(mapping_name: str, slug: str, sync_task: Any, timeout_min: int) -> Sequence[Any]:
    """The crm_sync tasks of one ``ask`` mapping: ``conflicts_<slug>`` lists its open conflicts after its sync
    task, ``ask_<slug>`` asks about each (mapped :class:`ConflictChoiceOperator`; none: skipped)."""
    from airflow.sdk import task

    @task(task_id=f"conflicts_{slug}", retries=0)
    def list_conflicts() -> list[dict[str, Any]]:
        from dynamics_jobqueue.hooks.state import StateStoreHook

        found = open_conflicts(StateStoreHook(state_conn_id=STATE_CONN_ID), mapping_name)
        log.info("%s: %d update conflict(s) to ask about", mapping_name, len(found))
        return found

    listed = list_conflicts()
    sync_task >> listed
    ask = ConflictChoiceOperator.partial(task_id=f"ask_{slug}", retries=0, response_timeout_min=timeout_min).expand(
        conflict=listed
    )
    return [listed, ask]
