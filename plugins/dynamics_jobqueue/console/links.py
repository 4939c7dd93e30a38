"""Operator extra links: from a sync, posting or mailbox task instance to its page of the console in the Airflow UI.

Airflow computes a link when the task instance finishes and keeps it (an XCom under :attr:`xcom_key`); the UI shows
it as a button on the task instance. The console page then lists what that run did (its sync runs, its job queue
log entries, the mailboxes), and the console links back to the DAG run and its task logs. Links are absolute,
from ``[api] base_url`` as Airflow's own links are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote, urlencode

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk.types import TaskInstanceKey


def console_url(page: str, **params: Any) -> str:
    """The Airflow UI URL of a console page (``plugin/dynamics-<page>``) with its query parameters."""
    from airflow.configuration import conf

    base = conf.get("api", "base_url", fallback="").rstrip("/")
    query = urlencode({k: v for k, v in params.items() if v not in (None, "")})
    return f"{base}/plugin/dynamics-{page}" + (f"?{query}" if query else "")


def task_instance_url(
    dag_id: str,
    run_id: str,
    task_id: str,
    *,
    map_index: int | None = None,
    try_number: int | None = None,
    tab: str = "",
) -> str:
    """The Airflow UI URL of a task instance: its logs (of try ``try_number``), or one of its tabs (``tab``:
    ``required_actions`` ...).

    The Airflow UI's route ``/dags/<dag_id>/runs/<run_id>/tasks/<task_id>[/mapped/<map_index>][/<tab>]``
    (``?try_number=<n>`` picks the try whose log shows); path segments are quoted (a run id may hold ``+`` and
    ``:``). Absolute from ``[api] base_url`` as :func:`console_url`.

    :param map_index: the mapped task instance's index; ``None`` or -1 for an unmapped task.
    """
    from airflow.configuration import conf

    base = conf.get("api", "base_url", fallback="").rstrip("/")
    path = "/".join(quote(part, safe="") for part in ("dags", dag_id, "runs", run_id, "tasks", task_id))
    if map_index is not None and map_index >= 0:
        path += f"/mapped/{map_index}"
    if tab:
        path += f"/{tab}"
    query = f"?try_number={try_number}" if try_number else ""
    return f"{base}/{path}{query}"


class _ConsoleLink(BaseOperatorLink):
    page: ClassVar[str] = ""

    def params(self, operator: Any, ti_key: TaskInstanceKey) -> dict[str, Any]:
        return {"run_id": ti_key.run_id}

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        return console_url(self.page, **self.params(operator, ti_key))


class SyncConsoleLink(_ConsoleLink):
    """A crm_sync task -> Integration Sync, its mapping's runs of this DAG run."""

    name = "Integration Sync (console)"
    page = "sync"

    def params(self, operator: Any, ti_key: TaskInstanceKey) -> dict[str, Any]:
        return {"mapping": getattr(operator, "mapping_name", None), "run_id": ti_key.run_id}


class PostingConsoleLink(_ConsoleLink):
    """A posting task -> Job Queue Log Entries of its category and DAG run (the attempts its runs posted)."""

    name = "Job Queue Log Entries (console)"
    page = "job-queue-log"

    def params(self, operator: Any, ti_key: TaskInstanceKey) -> dict[str, Any]:
        return {"category": getattr(operator, "category_code", None), "run_id": ti_key.run_id}


class MailboxConsoleLink(_ConsoleLink):
    """A mailbox task -> Mailboxes."""

    name = "Mailboxes (console)"
    page = "mailboxes"

    def params(self, operator: Any, ti_key: TaskInstanceKey) -> dict[str, Any]:
        return {}


#: Registered by the plugin so the api-server knows the link classes of serialized DAGs.
OPERATOR_LINKS = [SyncConsoleLink(), PostingConsoleLink(), MailboxConsoleLink()]
