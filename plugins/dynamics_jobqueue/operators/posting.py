"""Operators of background posting: Batch Post (find and queue open documents) and the job queue drain."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from dynamics_jobqueue.console.links import PostingConsoleLink

# The runner, the hooks and psycopg are imported in execute(): the dag-processor parses the DAG file every 30 s
# and pays for every import made at module level (issue 7: <= 0.3 s per file).
if TYPE_CHECKING:
    from airflow.sdk import Context

    from dynamics_jobqueue.hooks.business_central import BusinessCentralHook
    from dynamics_jobqueue.posting.entries import PostingTask
    from dynamics_jobqueue.posting.runner import PostingRunner
    from dynamics_jobqueue.posting.schedule import PostingSchedule

STATE_CONN_ID = "dynamics_state"


def _bc(conn_id: str) -> BusinessCentralHook:
    from dynamics_jobqueue.hooks.business_central import BusinessCentralHook

    return BusinessCentralHook(conn_id)


class BatchPostOperator(BaseOperator):
    """Batch Post: queue the category's open documents that match the run's params, then let the drain post.

    Runs when the run is the daily Batch Post run (its time in :class:`PostingSchedule`), or a manual run, or
    when the param ``batch_post`` is ``"always"``; otherwise (the frequent drain runs, or ``"never"``) it is
    skipped. The params mirror the reference's Batch Post request page (see
    :class:`~dynamics_jobqueue.posting.batch.BatchPostOptions`). Documents Business Central could not release
    are not queued; the task queues the others, then fails with an alert naming each of them and the ERP's
    message (the drain still runs: its trigger rule is ``all_done``). Options that need the posting page on a
    connection without it fail the task before anything is queued, naming the missing endpoint.

    :param category_code: the job queue category (``SALESPOST`` / ``PURCHPOST``).
    :param schedule: the DAG's schedule (decides which scheduled run is the Batch Post run).
    :param state_conn_id: the state store connection. :param business_central_conn_id: the ERP connection.
    """

    operator_extra_links = (PostingConsoleLink(),)
    template_fields: Sequence[str] = ("category_code",)

    def __init__(
        self,
        *,
        category_code: str,
        schedule: PostingSchedule,
        state_conn_id: str = STATE_CONN_ID,
        business_central_conn_id: str = "business_central_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.category_code = category_code
        self.schedule = schedule
        self.state_conn_id = state_conn_id
        self.business_central_conn_id = business_central_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        params = context["params"]
        dag_run = context["dag_run"]
        mode = str(params.get("batch_post") or "auto")
        scheduled_at = dag_run.run_after
        wanted = mode == "always" or (
            mode == "auto"
            and (
                dag_run.run_type == "manual" or (scheduled_at is not None and self.schedule.is_batch_time(scheduled_at))
            )
        )
        if not wanted:
            raise AirflowSkipException("not the Batch Post run; the drain posts what is queued")
        from dynamics_jobqueue.posting.batch import BatchPostOptions

        try:
            options = BatchPostOptions.from_params(dict(params))
            options.validate()
        except ValueError as exc:
            raise AirflowFailException(f"Batch Post params: {exc}") from exc
        from dynamics_jobqueue.hooks.errors import MissingEndpointError
        from dynamics_jobqueue.hooks.state import StateStoreHook
        from dynamics_jobqueue.posting.batch import batch_post

        user_id = str(params.get("user_id") or getattr(dag_run, "triggering_user_name", None) or "AIRFLOW")
        try:
            result = batch_post(
                StateStoreHook(state_conn_id=self.state_conn_id),
                _bc(self.business_central_conn_id),
                self.category_code,
                options,
                user_id=user_id,
            )
        except MissingEndpointError as exc:
            raise AirflowFailException(f"Batch Post params: {exc}") from exc
        for message in result.refused:
            self.log.info("Left alone: %s", message)
        if result.not_released:
            failure = AirflowFailException(
                f"Batch Post queued {result.queued} document(s) of {self.category_code}; "
                f"{len(result.not_released)} could not be released and were not queued:\n"
                + "\n".join(f"- {line}" for line in result.not_released)
            )
            failure.queued_by = [user_id]  # type: ignore[attr-defined]
            raise failure
        return {"found": result.found, "queued": result.queued, "already_scheduled": len(result.refused)}


class DrainJobQueueOperator(BaseOperator):
    """Post the category's Ready entries one at a time, in one task (no mapping: 10,000 entries fit one run).

    Use it with ``pool=<category>`` (one slot) so Airflow never runs two drains of a category; the runner's
    category lock holds across Airflow deployments and the CLI too. The task fails — the alert — when any
    entry ended in Error, naming each document, the user who queued it and the reason; the other entries
    were posted regardless. Retrying is the job queue's (Maximum No. of Attempts, Rerun Delay), so
    ``retries`` is 0.

    :param category_code: the job queue category (templated).
    :param print_destination: Post & Print destination: a folder/URL, ``lp`` or ``lp:<printer>`` (templated);
        default ``DYNAMICS_POSTING_PRINT_DESTINATION`` or ``<state dir>/printed``.
    :param print_conn_id: storage connection of a remote print folder.
    :param max_entries: stop after this many entries (``None``: until none is due).
    :param lease_s: lease of an entry In Process (seconds), renewed while it posts.
    :param lock_wait_s: how long to wait for another runner of the category (seconds).
    """

    operator_extra_links = (PostingConsoleLink(),)
    template_fields: Sequence[str] = ("category_code", "print_destination")

    def __init__(
        self,
        *,
        category_code: str,
        print_destination: str | None = None,
        print_conn_id: str | None = None,
        max_entries: int | None = None,
        lease_s: float = 60.0,
        lock_wait_s: float = 60.0,
        state_conn_id: str = STATE_CONN_ID,
        business_central_conn_id: str = "business_central_default",
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("retries", 0)
        super().__init__(**kwargs)
        self.category_code = category_code
        self.print_destination = print_destination
        self.print_conn_id = print_conn_id
        self.max_entries = max_entries
        self.lease_s = lease_s
        self.lock_wait_s = lock_wait_s
        self.state_conn_id = state_conn_id
        self.business_central_conn_id = business_central_conn_id

    def runner(self, task: PostingTask | None = None) -> PostingRunner:
        """The category's runner; ``task``: the task instance its Job Queue Log Entries name."""
        from dynamics_jobqueue.hooks.state import StateStoreHook
        from dynamics_jobqueue.posting.printing import printer_for
        from dynamics_jobqueue.posting.runner import PostingRunner

        return PostingRunner(
            StateStoreHook(state_conn_id=self.state_conn_id),
            _bc(self.business_central_conn_id),
            self.category_code,
            printer=printer_for(self.print_destination or None, conn_id=self.print_conn_id),
            task=task,
            lease_s=self.lease_s,
            lock_wait_s=self.lock_wait_s,
        )

    def execute(self, context: Context) -> dict[str, Any]:
        from dynamics_jobqueue.posting.entries import PostingTask

        ti = context.get("ti")
        runner = self.runner(PostingTask.of(ti) if ti is not None else None)
        result = runner.drain(max_entries=self.max_entries)
        self.log.info("%s", result.summary())
        summary = {
            "posted": result.posted,
            "printed": result.printed,
            "failed": [str(f) for f in result.failed],
            "rescheduled": len(result.rescheduled),
            "recovered": result.recovered,
            # A dead worker's posting that may still be running in the ERP: the category waits for it (the next
            # drain resolves it once the ERP shows it posted or its Job Timeout has passed).
            "waiting_for": result.waiting_for,
        }
        if result.failed:
            failure = AirflowFailException(
                f"{len(result.failed)} document(s) of {self.category_code} could not be posted:\n"
                + "\n".join(f"- {failure}" for failure in result.failed)
            )
            # The failure notifier also writes to the users who queued the documents (Notify On Failure).
            failure.queued_by = sorted({f.user_id for f in result.failed})  # type: ignore[attr-defined]
            raise failure
        return summary
