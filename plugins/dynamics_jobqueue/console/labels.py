"""Human labels of the stored codes the console shows (``from_crm`` -> "From CRM", ``not_run`` -> "Not run").

The JSON API returns each code with its label (``<field>_label``) so every client shows the same words; the codes
stay in the API for filtering. Job queue statuses are stored as their labels already (Ready, In Process, ...).
"""

from __future__ import annotations

DIRECTION = {"to_crm": "ERP to CRM", "from_crm": "CRM to ERP", "bidirectional": "Both directions"}

#: Integration Synch. Job status.
SYNC_RUN_STATUS = {"running": "Running", "success": "Succeeded", "failed": "Failed", "interrupted": "Interrupted"}

#: Why a record failed (:class:`dynamics_jobqueue.sync.planner.ErrorKind`).
ERROR_KIND = {
    "record": "Record error",
    "dependency": "Dependency not coupled",
    "conflict": "Update conflict",
    "deleted": "Deleted on the other side",
}
#: A user's choice for an update conflict (required action options of dynamics_jobqueue.operators.conflicts).
CONFLICT_CHOICE = {"send_erp_data": "Send ERP data", "take_crm_data": "Take CRM data", "skip": "Skip"}

WORKLOAD_STATUS = {"not_run": "Not run", "success": "Succeeded", "failure": "Failed"}
WORKLOAD = {"incoming": "Incoming email", "outgoing": "Outgoing email", "act": "Appointments, contacts, tasks"}
MESSAGE_OUTCOME = {"tracked": "Tracked", "filtered": "Filtered out", "quarantined": "Quarantined"}


def label(labels: dict[str, str], code: str | None) -> str:
    """The label of ``code`` (the code itself when it has none, so a new code still shows)."""
    if code is None:
        return ""
    return labels.get(code, code.replace("_", " ").capitalize())


def skipped_reason(skipped: bool, error_count: int, message: str) -> str | None:
    """Why a record is Skipped, in words: its last error and how often it failed. A record is Skipped when the
    same error repeated *skip_after_same_error* times (Integration Synch. Job Errors) or a user chose Skip; later
    runs leave it alone until Retry or un-skip."""
    if not skipped:
        return None
    times = "once" if error_count == 1 else f"{error_count} times"
    return f"Skipped after failing {times}; last error: {message}"
