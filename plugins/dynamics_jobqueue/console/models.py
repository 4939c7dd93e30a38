"""Request and response bodies of the console's JSON API (they document it in FastAPI's OpenAPI schema).

Times are ISO 8601 in UTC; ids are the state store's (job queue entry UUIDs, Business Central and Dataverse
GUIDs as lower-case text).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, computed_field

from dynamics_jobqueue.console.links import task_instance_url


class JobQueueEntryOut(BaseModel):
    """A Job Queue Entry: one document queued for posting."""

    id: uuid.UUID
    entry_no: int | None = Field(None, description="the entry's number (Entry No.)")
    category_code: str
    document_type: str
    document_id: uuid.UUID
    document_number: str
    description: str
    status: str = Field(description="Ready, In Process, Error, On Hold or Finished")
    job_queue_status: str = Field(description="the document's Job Queue Status: Scheduled for Posting, Posting, Error")
    user_id: str
    priority: int
    attempts: int
    max_attempts: int
    earliest_start_at: datetime = Field(description="next start: not before this moment")
    expires_at: datetime | None
    error_message: str | None
    created_at: datetime | None
    updated_at: datetime | None


class JobQueueLogEntryOut(BaseModel):
    """A Job Queue Log Entry: one attempt of one entry, with the Airflow task instance that ran it (``dag_id``,
    ``run_id``, ``task_id``, ``map_index``, ``try_number``; all null for an attempt of the posting CLI) and the
    link to that task instance's log."""

    entry_no: int
    job_queue_entry_id: uuid.UUID
    category_code: str
    document_type: str
    document_number: str
    user_id: str
    description: str
    status: str = Field(description="In Process, Success or Error")
    started_at: datetime
    ended_at: datetime | None
    error_message: str | None
    error_detail: str | None
    worker: str | None = Field(description="the process that ran it (<host>:<pid>)")
    dag_id: str | None = Field(None, description="the DAG of the posting task (<category>_background_posting ...)")
    run_id: str | None = Field(None, description="its DAG run")
    task_id: str | None = Field(None, description="its task (the drain)")
    map_index: int | None = Field(None, description="-1 for an unmapped task")
    try_number: int | None = None

    @computed_field(  # type: ignore[prop-decorator]
        description="the task instance's log (of this try) in the Airflow UI, from [api] base_url; null without a "
        "task instance"
    )
    @property
    def task_log_url(self) -> str | None:
        if not (self.dag_id and self.run_id and self.task_id):
            return None
        return task_instance_url(
            self.dag_id, self.run_id, self.task_id, map_index=self.map_index, try_number=self.try_number
        )


class JobQueueEntryDetail(BaseModel):
    """Show Error: an entry with every attempt of it."""

    entry: JobQueueEntryOut
    log_entries: list[JobQueueLogEntryOut]


class EnqueueBody(BaseModel):
    """Post via the job queue: what an external system's "Post" button sends."""

    document_type: str = Field(examples=["Sales Invoice"])
    document_id: uuid.UUID = Field(description="the document's id (SystemId) in Business Central")
    document_number: str = Field(examples=["103001"])
    priority: int = 1000
    earliest_start_at: datetime | None = None
    post_and_print: bool = False


class CategoryOut(BaseModel):
    """A job queue category."""

    code: str
    description: str | None


class DocumentToHandleOut(BaseModel):
    """A document whose posting failed: Job Queue Status Error, with the reason."""

    document_type: str
    document_number: str
    document_id: uuid.UUID
    category_code: str
    job_queue_entry_id: uuid.UUID
    user_id: str
    error_message: str | None
    updated_at: datetime
    attempts: int
    max_attempts: int


class SyncRunOut(BaseModel):
    """An Integration Synch. Job: one mapping, direction and run, with its counts."""

    id: int
    run_id: str = Field(description="the crm_sync DAG run's run_id")
    mapping: str
    direction: str = Field(description="to_crm or from_crm")
    direction_label: str = Field(description="ERP to CRM, CRM to ERP")
    full_sync: bool
    status: str = Field(description="running, success, failed or interrupted")
    status_label: str
    started_at: datetime
    finished_at: datetime | None
    inserted: int
    modified: int
    deleted: int
    unchanged: int
    skipped: int
    failed: int
    message: str | None


class SyncErrorOut(BaseModel):
    """The current error of a failing record."""

    mapping: str
    direction: str = Field(description="to_crm or from_crm")
    direction_label: str
    source_id: str
    source_key: str | None
    destination_id: str | None
    kind: str = Field(description="record, dependency, conflict or deleted")
    kind_label: str
    message: str
    detail: str | None
    error_count: int
    skipped: bool
    skipped_reason: str | None = Field(description="why the record is Skipped, when it is")
    first_failed_at: datetime
    last_failed_at: datetime
    last_job_id: int | None
    run_id: str | None = Field(description="the crm_sync DAG run that last failed the record")
    choice: str | None = Field(
        None, description="an update conflict's latest user choice: send_erp_data, take_crm_data or skip"
    )
    choice_label: str | None = None
    chosen_by: str | None = Field(None, description="who chose it (the required action's responder)")
    chosen_at: datetime | None = None


class ConflictChoiceOut(BaseModel):
    """A user's choice for an update conflict (an answered required action of a mapping resolved by ``ask``)."""

    id: int
    mapping: str
    source_id: str = Field(description="the ERP record")
    source_key: str | None
    destination_id: str | None = Field(description="the CRM record")
    resolution: str = Field(description="send_erp_data, take_crm_data or skip")
    resolution_label: str
    fields: list[dict[str, Any]] = Field(description="per differing field: field, erp_field, erp and crm values")
    chosen_by: str = Field(description="the required action's responder (Airflow user)")
    chosen_at: datetime
    dag_id: str | None
    run_id: str | None = Field(description="the DAG run that asked")
    task_id: str | None
    map_index: int | None
    applied_at: datetime | None = Field(description="when a run applied it (skip: at once)")
    applied_run_id: str | None = Field(description="the crm_sync DAG run that applied it")


class SyncRecordBody(BaseModel):
    """Names one failing record of a mapping and direction (``to_crm`` or ``from_crm``)."""

    mapping: str
    direction: str = Field(pattern="^(to_crm|from_crm)$")
    source_id: str


class CouplingOut(BaseModel):
    """A coupling (CRM Integration Record)."""

    mapping: str
    erp_id: str
    crm_id: str
    erp_key: str | None
    crm_key: str | None
    coupled_at: datetime
    synced_at: datetime


class CoupleBody(BaseModel):
    """Couple an ERP record to a CRM record of a mapping: a mapping of ``GET /api/sync/mappings`` (loaded) and
    both records' ids (GUIDs), each checked in its system; the business keys are read from the records."""

    mapping: str = Field(examples=["CUSTOMER"])
    erp_id: str = Field(description="the Business Central record's id (SystemId)")
    crm_id: str = Field(description="the Dataverse row's primary key")


class WorkloadOut(BaseModel):
    """One workload (incoming, outgoing, act) of a mailbox."""

    workload: str
    workload_label: str
    status: str = Field(description="not_run, success or failure")
    status_label: str
    permanent_error: bool
    last_error_code: str | None
    last_error_message: str | None
    last_error_fix: str | None
    error_count: int
    last_error_at: datetime | None
    last_success_at: datetime | None
    last_run_at: datetime | None
    items_processed: int
    items_failed: int
    next_sync_at: datetime


class RemapRequestOut(BaseModel):
    """A remap that breaks a mapping, approved or rejected as an Airflow required action (mailbox_remap_approval).

    ``status``: pending, approved (applied) or rejected (dropped); ``decided_by``: the responder's Airflow user
    name; ``dag_run_id``: the mailbox_remap_approval run that asks."""

    request_id: int
    crm_user_id: str
    reason: str
    requested_by: str
    requested_at: datetime
    status: str
    decided_by: str | None
    decided_at: datetime | None
    dag_run_id: str | None
    dag_id: str = Field(description="the DAG whose run asks: mailbox_remap_approval")
    task_id: str = Field(description="the task that waits for the answer: approve_remap")
    required_action_url: str | None = Field(
        description="the task instance's Required Actions tab in the Airflow UI, where it is approved or rejected "
        "(none before the run exists)"
    )


class MailboxOut(BaseModel):
    """A mailbox with the status of each workload."""

    mailbox_id: int
    name: str
    email_address: str
    crm_user_id: str | None
    server_profile: str
    server_type: str
    incoming_method: str
    outgoing_method: str
    act_method: str
    incoming_filter: str
    workloads: list[WorkloadOut]
    remap_request: RemapRequestOut | None = None


class RemapBody(BaseModel):
    """Map a mailbox to a CRM user (one of ``GET /api/crm-users``); ``confirm`` must be true to break an existing
    mapping."""

    crm_user_id: uuid.UUID
    confirm: bool = False


class CrmUserOut(BaseModel):
    """A CRM user (Dataverse ``systemuser``) to pick."""

    systemuserid: uuid.UUID
    fullname: str | None
    internalemailaddress: str | None


class MailboxMessageOut(BaseModel):
    """A message a mailbox handled."""

    mailbox_id: int
    message_id: str
    outcome: str = Field(description="tracked, filtered or quarantined")
    outcome_label: str
    reason: str | None
    subject: str | None
    folder: str | None
    processed_at: datetime


class MappingOut(BaseModel):
    """A table mapping: loaded from the mappings folder, or only known from the state store's rows."""

    name: str
    loaded: bool = Field(description="in the mappings folder (only loaded mappings can be coupled)")
    direction: str | None
    direction_label: str | None
    erp_entity_set: str | None
    crm_entity_set: str | None
    resolve_update_conflicts: str | None
    inactivity_timeout_min: int | None = Field(None, description="the mapping's Inactivity Timeout Period (0: none)")
    job_queue_status: str | None = Field(
        None,
        description="its job queue entry after its last sync: Ready or On Hold with Inactivity Timeout (none: "
        "never synced since issue 17)",
    )
    job_queue_status_since: datetime | None = None
    on_hold_until: datetime | None = Field(
        None, description="end of the Inactivity Timeout: until then scheduled runs may skip it (UTC)"
    )


class SyncTrendOut(BaseModel):
    """Counts of one mapping's runs that started in one hour or day (UTC)."""

    bucket: datetime
    mapping: str
    inserted: int
    modified: int
    deleted: int
    skipped: int
    failed: int
    runs: int


class PostingTrendOut(BaseModel):
    """Posting attempts of one job queue category that started in one hour or day (UTC)."""

    bucket: datetime
    category_code: str
    posted: int
    failed: int
    attempts: int


class MailboxTrendOut(BaseModel):
    """Messages of one mailbox handled in one hour or day (UTC), by outcome."""

    bucket: datetime
    email_address: str
    tracked: int
    filtered: int
    quarantined: int


class SessionOut(BaseModel):
    """The signed-in user as the console sees them."""

    user: str
    can_edit: bool = Field(description="may use the actions (Airflow's edit permission on DAGs)")
    csrf_token: str = Field(description="repeat it in the X-CSRF-Token header of every write")


class ErrorOut(BaseModel):
    """A refusal: ``detail`` says why, for the user."""

    detail: str


class ActionResult(BaseModel):
    """The outcome of an action, in words for the user."""

    message: str
    details: list[str] = Field(default_factory=list)


class DagRunTriggered(BaseModel):
    """An action that does work: the DAG run it queued, to follow in the Airflow UI."""

    message: str
    dag_id: str
    dag_run_id: str
    dag_run_url: str = Field(description="the run's page in the Airflow UI (/dags/<dag_id>/runs/<run_id>)")
