"""Operators of the mailbox cycle: pick the due mailboxes, then synchronize them (mapped, isolated)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from dynamics_jobqueue.console.links import MailboxConsoleLink

# The domain modules (psycopg, requests, imaplib ...) are imported in execute(): the dag-processor parses
# the DAG file every 30 s and pays for every import made at module level (issue 7: <= 0.3 s per file).
if TYPE_CHECKING:
    from airflow.sdk import Context

    from dynamics_jobqueue.hooks.state import StateStoreHook

STATE_CONN_ID = "dynamics_state"
#: DAG run conf key: a run with ``{"test_and_enable": [mailbox ids]}`` runs Test & Enable on those mailboxes
#: instead of the due ones (what the console's Test & Enable button triggers).
TEST_AND_ENABLE = "test_and_enable"


def _tested(context: Context) -> list[int]:
    """Mailbox ids the DAG run asks Test & Enable for (run conf :data:`TEST_AND_ENABLE`), else empty."""
    dag_run = context.get("dag_run")
    conf = getattr(dag_run, "conf", None) or {}
    return sorted({int(i) for i in conf.get(TEST_AND_ENABLE) or []})


class SelectDueMailboxesOperator(BaseOperator):
    """Return the due mailboxes as batches for ``expand`` (one mailbox per batch while fewer than
    Airflow's ``max_map_length``); in a run whose conf asks Test & Enable (:data:`TEST_AND_ENABLE`), those
    mailboxes instead. Mailboxes whose user has email in Pending Send are due at once (one CRM query).

    :param state_conn_id: the state store connection.
    :param dataverse_conn_id: the CRM connection.
    """

    def __init__(
        self, *, state_conn_id: str = STATE_CONN_ID, dataverse_conn_id: str = "dataverse_default", **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.state_conn_id = state_conn_id
        self.dataverse_conn_id = dataverse_conn_id

    def execute(self, context: Context) -> list[list[int]]:
        from dynamics_jobqueue.hooks.dataverse import DataverseHook
        from dynamics_jobqueue.hooks.state import StateStoreHook
        from dynamics_jobqueue.mailbox.cycle import plan_batches, select_due

        tested = _tested(context)
        if tested:
            self.log.info("Test & Enable of mailbox(es) %s", tested)
            return plan_batches(tested)
        due = select_due(StateStoreHook(state_conn_id=self.state_conn_id), DataverseHook(self.dataverse_conn_id))
        self.log.info("%d mailbox(es) due", len(due))
        return plan_batches(due)


class MailboxSyncOperator(BaseOperator):
    """Synchronize a batch of mailboxes; each mailbox runs isolated from the others. In a run whose conf asks
    Test & Enable (:data:`TEST_AND_ENABLE`), run :func:`~dynamics_jobqueue.mailbox.cycle.test_and_enable` on
    each mailbox of the batch instead.

    The task fails (an alert) when any mailbox of its batch failed; the message names each mailbox and the
    fix, and the alert also goes to each failed mailbox's owner (the mapped CRM user's email). Retrying is the
    mailbox schedule's job (adaptive frequency), not Airflow's, so ``retries`` is 0.

    :param mailbox_ids: ids of ``dynamics.mailbox`` rows (templated).
    :param state_conn_id: the state store connection.
    :param dataverse_conn_id: the CRM connection.
    """

    operator_extra_links = (MailboxConsoleLink(),)
    template_fields: Sequence[str] = ("mailbox_ids",)

    def __init__(
        self,
        *,
        mailbox_ids: list[int],
        state_conn_id: str = STATE_CONN_ID,
        dataverse_conn_id: str = "dataverse_default",
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("retries", 0)
        super().__init__(**kwargs)
        self.mailbox_ids = mailbox_ids
        self.state_conn_id = state_conn_id
        self.dataverse_conn_id = dataverse_conn_id

    @cached_property
    def state(self) -> StateStoreHook:
        from dynamics_jobqueue.hooks.state import StateStoreHook

        return StateStoreHook(state_conn_id=self.state_conn_id)

    def execute(self, context: Context) -> list[dict[str, Any]]:
        from dynamics_jobqueue.hooks.dataverse import DataverseHook
        from dynamics_jobqueue.mailbox.cycle import failure_of, sync_mailboxes, test_and_enable

        dataverse = DataverseHook(self.dataverse_conn_id)
        ids = [int(i) for i in self.mailbox_ids]
        if _tested(context):
            summaries = [test_and_enable(self.state, i, dataverse=dataverse) for i in ids]
        else:
            summaries = sync_mailboxes(ids, state=self.state, dataverse=dataverse, raise_on_error=False)
        for s in summaries:
            self.log.info(
                "Mailbox %s: %d tracked, %d filtered out, %d quarantined, %d sent; next run %s",
                s.mailbox,
                len(s.tracked),
                len(s.filtered),
                len(s.quarantined),
                len(s.sent),
                s.next_sync_at,
            )
        failure = failure_of(summaries, dataverse)
        if failure is not None:
            raise failure  # the failure alert goes to the alert address and to each failed mailbox's owner
        return [s.as_dict() for s in summaries]
