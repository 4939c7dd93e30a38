"""Console actions that do work run as DAG runs, never inside the api-server's request.

The console triggers the run the way Airflow's own trigger endpoint does (``POST /api/v2/dags/{dag_id}/dagRuns``):
the user needs the auth manager's permission to create runs of that DAG, the run is a manual run queued for
the scheduler, and it records who triggered it (``triggering_user_name``) and from where (``triggered_by``: the
console's pages count as the UI, its JSON API as the REST API). The user follows the run in the Airflow UI at
``/dags/<dag_id>/runs/<run_id>`` (:func:`airflow.utils.helpers.build_airflow_dagrun_url`, from ``[api] base_url``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from airflow.api.common.trigger_dag import trigger_dag
from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
from airflow.exceptions import DagNotFound
from airflow.models import DagModel
from airflow.utils.helpers import build_airflow_dagrun_url
from airflow.utils.types import DagRunTriggeredByType


class TriggerRefusedError(Exception):
    """The run cannot be triggered (DAG unknown to Airflow, manual runs refused); the message is for the user."""


class TriggerForbiddenError(TriggerRefusedError):
    """The auth manager does not let the user create runs of the DAG."""


@dataclass(frozen=True)
class TriggeredRun:
    """A queued DAG run: its ``dag_id``, ``run_id``, the Airflow UI ``url`` of the run, and whether the DAG is
    paused (then the run waits until it is unpaused)."""

    dag_id: str
    run_id: str
    url: str
    paused: bool

    def describe(self) -> str:
        """The run in words, for a notice."""
        waiting = f" {self.dag_id} is paused: the run starts when it is unpaused." if self.paused else ""
        return f"DAG run {self.run_id} of {self.dag_id} is queued.{waiting}"


def run_url(dag_id: str, run_id: str) -> str:
    """The Airflow UI page of a DAG run (path segments quoted: a run id may hold ``+`` and ``:``)."""
    return build_airflow_dagrun_url(quote(dag_id, safe=""), quote(run_id, safe=""))


def trigger(dag_id: str, conf: dict[str, Any], user: BaseUser, *, from_api: bool, note: str) -> TriggeredRun:
    """Queue a manual run of ``dag_id`` with ``conf`` on behalf of ``user``.

    :param from_api: the console's JSON API (``triggered_by`` REST API) rather than its pages (UI).
    :param note: the run's note in the Airflow UI (what the run is for).
    :raises TriggerForbiddenError: when the auth manager does not let ``user`` create runs of ``dag_id``.
    :raises TriggerRefusedError: when Airflow does not know the DAG (its dag-processor has not parsed it) or
        refuses manual runs of it.
    """
    team_name = DagModel.get_team_name(dag_id)
    allowed = get_auth_manager().is_authorized_dag(
        method="POST",
        access_entity=DagAccessEntity.RUN,
        details=DagDetails(id=dag_id, team_name=team_name),
        user=user,
    )
    if not allowed:
        raise TriggerForbiddenError(f"{user.get_name()} may not trigger runs of the {dag_id} DAG.")
    try:
        dag_run = trigger_dag(
            dag_id,
            triggered_by=DagRunTriggeredByType.REST_API if from_api else DagRunTriggeredByType.UI,
            triggering_user_name=user.get_name(),
            conf=conf,
            note=note,
        )
    except DagNotFound as exc:
        raise TriggerRefusedError(
            f"Airflow does not know the {dag_id} DAG yet: check that its DAG file is in the DAGs folder and has"
            " no import errors (Airflow UI, Dag import errors)."
        ) from exc
    except ValueError as exc:  # manual runs not allowed, or a conf the DAG refuses
        raise TriggerRefusedError(f"The {dag_id} DAG refused the run: {exc}") from exc
    if dag_run is None:
        raise TriggerRefusedError(f"Airflow created no run of the {dag_id} DAG.")
    model = DagModel.get_current(dag_id)
    return TriggeredRun(dag_id, dag_run.run_id, run_url(dag_id, dag_run.run_id), bool(model and model.is_paused))
