"""A mailbox remap that breaks a mapping, approved as an Airflow required action (Human-in-the-loop).

One user <-> one mailbox: mapping a mailbox that is already mapped (or to a user who already has a mailbox)
breaks the previous mapping only after explicit confirmation (docs/reference/dynamics-semantics.md section 3,
the confirmation dialog of Business Central's mailbox mapping). The console records such a remap as a pending
request (:func:`dynamics_jobqueue.mailbox.records.request_remap`) and triggers the ``mailbox_remap_approval`` DAG
with conf ``{"request_id": <id>}``; its :class:`RemapApprovalOperator` shows the required action (Browse >
Required Actions, or the REST API ``/api/v2/hitlDetails``). "Approve" applies the remap
(:func:`~dynamics_jobqueue.mailbox.records.decide_remap`, through the same ``map_user`` the console uses; the
mapping log names the approver), "Reject" drops it; either way the request keeps who decided.

Airflow's Human-in-the-loop: https://airflow.apache.org/docs/apache-airflow-providers-standard/stable/operators/hitl.html
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.hitl import ApprovalOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

    from dynamics_jobqueue.mailbox.records import RemapRequest

STATE_CONN_ID = "dynamics_state"
DAG_ID = "mailbox_remap_approval"
#: The task of a mailbox_remap_approval run that waits in Required Actions.
TASK_ID = "approve_remap"


def remap_subject(request: RemapRequest) -> str:
    """The required action's subject: which mailbox goes to which user, and who loses what."""
    return f"Remap mailbox {request.email_address} to CRM user {request.crm_user_id}?"


def remap_body(request: RemapRequest) -> str:
    """The required action's text (Markdown): the mapping(s) it breaks and what each answer does."""
    return "\n".join(
        [
            f"**{request.requested_by}** asked to map the mailbox **{request.email_address}** to the CRM user "
            f"`{request.crm_user_id}`. This breaks an existing mapping (one user <-> one mailbox):",
            "",
            f"> {request.reason}",
            "",
            "**Approve**: the remap is applied; the previous user loses the mailbox (a user whose mailbox moves "
            "here has none afterwards). **Reject**: nothing changes.",
        ]
    )


class RemapApprovalOperator(ApprovalOperator):
    """Ask for the approval of one pending remap request (conf ``request_id``) and apply the decision.

    :param state_conn_id: the state store.
    :param response_timeout_min: minutes to wait; unanswered, the task fails and the request stays pending.
    :return: the HITL payload (``chosen_options``, ``responded_by_user``, ...).
    :raises KeyError: when the run's ``request_id`` names no request.
    """

    ui_color = "#fff3cd"

    def __init__(self, *, state_conn_id: str = STATE_CONN_ID, response_timeout_min: int = 24 * 60, **kwargs: Any):
        kwargs.setdefault("subject", "Remap a mailbox?")
        super().__init__(
            response_timeout=timedelta(minutes=response_timeout_min) if response_timeout_min > 0 else None,
            **kwargs,
        )
        self.state_conn_id = state_conn_id

    def _request(self, context: Context) -> RemapRequest:
        from dynamics_jobqueue.hooks.state import StateStoreHook
        from dynamics_jobqueue.mailbox.records import get_remap_request

        conf = context["dag_run"].conf or {}
        return get_remap_request(StateStoreHook(state_conn_id=self.state_conn_id), int(conf["request_id"]))

    def execute(self, context: Context) -> Any:
        request = self._request(context)
        if request.status != "pending":
            self.log.info(
                "Remap request %s was already %s by %s", request.request_id, request.status, request.decided_by
            )
            return None
        self.subject = remap_subject(request)
        self.body = remap_body(request)
        return super().execute(context)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        from dynamics_jobqueue.hooks.state import StateStoreHook
        from dynamics_jobqueue.mailbox.records import decide_remap

        payload = super().execute_complete(context, event)
        approved = payload["chosen_options"] == [self.APPROVE]
        responder = payload["responded_by_user"] or {}
        who = str(responder.get("name") or responder.get("id") or "?")
        request = self._request(context)
        broken = decide_remap(
            StateStoreHook(state_conn_id=self.state_conn_id), request.request_id, approved=approved, decided_by=who
        )
        self.log.info(
            "%s %s remap request %s: mailbox %s to CRM user %s%s",
            who,
            "approved" if approved else "rejected",
            request.request_id,
            request.email_address,
            request.crm_user_id,
            (" (" + "; ".join(broken) + ")") if broken else "",
        )
        return payload
