"""The operator console's JSON API over the state store, mounted in Airflow's api-server by
:mod:`dynamics_jobqueue.plugin` (under ``/dynamics``), and the bundle of its React app.

The pages are a React app the Airflow UI renders itself (``react_apps``; source in ``ui/console``, built into
``static/console.js``, served at ``/ui/console.js``): Job Queue Entries (and My Job Queue), Show Error, Documents
to handle, Job Queue Log Entries, Integration Sync, Mailboxes and Trends. They call the JSON API under ``/api``
(OpenAPI at ``/openapi.json``, Swagger UI at ``/docs``, ReDoc at ``/redoc``). Every route needs a signed-in
Airflow user; actions need edit permission and a CSRF token or a bearer token
(:mod:`dynamics_jobqueue.console.security`), and each is recorded in Airflow's Audit Log. Lists are paged, sorted
and filtered on the server (:mod:`dynamics_jobqueue.console.listing`). Actions only write the state store; one
that does work (Test & Enable talks to mail servers and the CRM) triggers a DAG run with conf instead
(:mod:`dynamics_jobqueue.console.runs`) and links to it.
"""

from __future__ import annotations

import functools
import importlib.resources
import uuid
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Annotated, Any

from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.logging.decorators import action_logging
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response

from dynamics_jobqueue import __version__
from dynamics_jobqueue.console import labels, records, runs, service
from dynamics_jobqueue.console import queries as q
from dynamics_jobqueue.console.links import console_url
from dynamics_jobqueue.console.listing import PageOf, PageRequest, Period, page_request, period
from dynamics_jobqueue.console.models import (
    ActionResult,
    CategoryOut,
    ConflictChoiceOut,
    CoupleBody,
    CouplingOut,
    CrmUserOut,
    DagRunTriggered,
    DocumentToHandleOut,
    EnqueueBody,
    ErrorOut,
    JobQueueEntryDetail,
    JobQueueEntryOut,
    JobQueueLogEntryOut,
    MailboxMessageOut,
    MailboxOut,
    MailboxTrendOut,
    MappingOut,
    PostingTrendOut,
    RemapBody,
    SessionOut,
    SyncErrorOut,
    SyncRecordBody,
    SyncRunOut,
    SyncTrendOut,
)
from dynamics_jobqueue.console.security import (
    EditUser,
    ReadUser,
    can_edit,
    check_api_csrf,
    csrf_token,
    edit_user,
)
from dynamics_jobqueue.hooks.state import StateStoreHook
from dynamics_jobqueue.mailbox.records import (
    MailboxAlreadyMappedError,
    get_mailbox,
    map_user,
    request_remap,
    set_remap_run,
)
from dynamics_jobqueue.operators.mailbox import TEST_AND_ENABLE
from dynamics_jobqueue.posting import queue
from dynamics_jobqueue.posting.entries import JobQueueEntry, Status
from dynamics_jobqueue.sync import job_queue as sync_job_queue
from dynamics_jobqueue.sync.store import reset_skipped

ENTRY_STATUSES = [str(s) for s in Status]
LOG_STATUSES = ["In Process", "Success", "Error"]


@functools.cache
def _state_store() -> StateStoreHook:
    # One hook for the process: it opens a connection per transaction and migrates the schema once.
    return StateStoreHook()


def get_store() -> StateStoreHook:
    """Dependency: the state store (Airflow connection ``dynamics_state``, else the embedded Postgres)."""
    return _state_store()


Store = Annotated[StateStoreHook, Depends(get_store)]


# -- helpers -----------------------------------------------------------------------------------------------------
def _entry_out(entry: JobQueueEntry) -> JobQueueEntryOut:
    return JobQueueEntryOut(
        **{name: getattr(entry, name) for name in JobQueueEntryOut.model_fields if name != "job_queue_status"},
        job_queue_status=str(entry.job_queue_status),
    )


def _open_entry(store: StateStoreHook, entry_id: uuid.UUID) -> JobQueueEntry:
    entry = queue.get_entry(store, entry_id)
    if entry is None or entry.status is Status.FINISHED:
        raise service.ConsoleActionError(f"Job queue entry {entry_id} is not in the job queue.")
    return entry


def remove_entry(store: StateStoreHook, entry_id: uuid.UUID) -> str:
    """Remove from Job Queue by entry id (see :func:`queue.remove`); returns the message for the user."""
    entry = _open_entry(store, entry_id)
    queue.remove(store, entry.document_type, entry.document_number)
    return f"{entry.describe()} was removed from the job queue."


def set_entry_ready(store: StateStoreHook, entry_id: uuid.UUID) -> JobQueueEntry:
    """Set Status to Ready by entry id (see :func:`queue.set_status`): an entry in Error runs again."""
    entry = _open_entry(store, entry_id)
    return queue.set_status(store, entry.document_type, entry.document_number, Status.READY)


#: The DAG whose runs do Test & Enable (run conf ``{"test_and_enable": [mailbox ids]}``).
MAILBOX_DAG_ID = "mailbox_sync"
REMAP_DAG_ID = "mailbox_remap_approval"


def test_and_enable(store: StateStoreHook, mailbox_id: int, user: Any, *, from_api: bool) -> DagRunTriggered:
    """Test & Enable: trigger a mailbox_sync DAG run that tests the mailbox's workloads and enables those that
    work; its outcome shows on the mailbox's workloads and in the run's logs.

    :raises ConsoleActionError: when there is no such mailbox.
    :raises runs.TriggerRefusedError: when Airflow refuses the run.
    """
    try:
        mailbox = get_mailbox(store, mailbox_id)
    except KeyError as exc:
        raise service.ConsoleActionError(f"There is no mailbox {mailbox_id}.") from exc
    what = f"Test & Enable of mailbox {mailbox.email_address}"
    run = runs.trigger(
        MAILBOX_DAG_ID,
        {TEST_AND_ENABLE: [mailbox_id]},
        user,
        from_api=from_api,
        note=f"{what}, from the Dynamics console.",
    )
    return DagRunTriggered(
        message=f"{what}: {run.describe()}", dag_id=run.dag_id, dag_run_id=run.run_id, dag_run_url=run.url
    )


def remap(
    store: StateStoreHook, mailbox_id: int, crm_user_id: uuid.UUID, confirm: bool, user: BaseUser, *, from_api: bool
) -> ActionResult:
    """Map the mailbox to an enabled CRM user (:func:`map_user`). A remap that breaks a mapping is refused unless
    ``confirm``; a confirmed one is not applied but waits for approval as an Airflow required action: a pending
    request (:func:`request_remap`) and a run of the mailbox_remap_approval DAG asking for it.

    :param user: the console's user: who asks, and whose right to trigger the DAG is checked.
    :raises records.InvalidInputError: when ``crm_user_id`` is not an enabled CRM user.
    :raises MailboxAlreadyMappedError: when a mapping would break and ``confirm`` is false.
    :raises runs.TriggerForbiddenError, runs.TriggerRefusedError: when Airflow refuses the approval run.
    """
    records.check_crm_user(crm_user_id)
    try:
        broken = map_user(store, mailbox_id, crm_user_id, confirm=False, changed_by=user.get_name())
    except KeyError as exc:
        raise service.ConsoleActionError(f"There is no mailbox {mailbox_id}.") from exc
    except MailboxAlreadyMappedError as exc:
        if not confirm:
            raise
        reason = str(exc).split(". Map again", 1)[0]
        request_id = request_remap(store, mailbox_id, crm_user_id, reason=reason, requested_by=user.get_name())
        email = get_mailbox(store, mailbox_id).email_address
        run = runs.trigger(
            REMAP_DAG_ID,
            {"request_id": request_id},
            user,
            from_api=from_api,
            note=f"Approval of remapping mailbox {email} to CRM user {crm_user_id}, from the Dynamics console.",
        )
        set_remap_run(store, request_id, run.run_id)
        return ActionResult(
            message=f"Remapping mailbox {email} to CRM user {crm_user_id} breaks a mapping: it waits for approval "
            f"in Required Actions (remap request {request_id}, {run.describe()})",
            details=[reason],
        )
    return ActionResult(message=f"Mailbox {mailbox_id} is mapped to CRM user {crm_user_id}.", details=broken)


def couple_records(store: StateStoreHook, mapping: str, erp_id: str, crm_id: str) -> str:
    """Couple after :func:`records.check_couple` (mapping loaded, both records exist); returns the notice.

    :raises records.InvalidInputError, records.RecordNotFoundError, records.SystemUnavailableError: see there.
    :raises ConsoleActionError: when either record is already coupled.
    """
    pair = records.check_couple(mapping, erp_id, crm_id)
    service.couple(store, pair.mapping, pair.erp_id, pair.crm_id, pair.erp_key, pair.crm_key)
    keys = f" ({pair.erp_key or '-'} / {pair.crm_key or '-'})" if pair.erp_key or pair.crm_key else ""
    return f"{pair.mapping}: ERP record {pair.erp_id} is coupled to CRM record {pair.crm_id}{keys}."


#: Refusals meant for the user (the domain's messages); anything else is a server error.
USER_ERRORS = (queue.JobQueueError, service.ConsoleActionError, runs.TriggerRefusedError, ValueError)
#: Refusals of the checks against the mappings and both systems (:mod:`records`).
CHECK_ERRORS = (records.RecordNotFoundError, records.SystemUnavailableError)


# -- JSON API ----------------------------------------------------------------------------------------------------
api = APIRouter(prefix="/api", tags=["console API"])


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorOut, "description": RESPONSE_TEXT[code]} for code in (401, 403, *codes)}


RESPONSE_TEXT = {
    401: "Not signed in (no Airflow token).",
    403: "Invalid token, no permission (reading needs DAG read, actions DAG edit), or CSRF token missing.",
    404: "The record, entry or mailbox does not exist.",
    409: "The state refuses the action (already coupled, being posted, a mapping would break).",
    422: "Invalid input (unknown mapping, not a GUID, not a CRM user, unknown sort, out-of-range paging).",
    502: "Business Central or Dataverse did not answer the check.",
}


def _write(event: str) -> list[Any]:
    """Dependencies of a write: edit permission first, the CSRF check, then the Airflow Audit Log entry
    (``airflow.api_fastapi.logging.decorators.action_logging``: a row of Airflow's ``log`` table with the event,
    the user and the request's parameters and body, shown in the UI's Audit Log)."""
    return [Depends(edit_user), Depends(check_api_csrf), Depends(action_logging(event=f"{AUDIT_PREFIX}.{event}"))]


#: Prefix of the console's Audit Log events (``dynamics_console.couple`` ...).
AUDIT_PREFIX = "dynamics_console"
Paging = Annotated[PageRequest, Depends(page_request)]
Search = Annotated[str | None, Query(description="case-insensitive substring")]


def _page(items: list[Any], total: int, sort: str, request: PageRequest) -> dict[str, Any]:
    return {"items": items, "total": total, "offset": request.offset, "limit": request.limit, "sort": sort}


@api.get("/session", response_model=SessionOut, responses=_responses())
def api_session(request: Request, response: Response, user: ReadUser) -> SessionOut:
    """Who is signed in, whether they may act, and the CSRF token a browser client repeats in ``X-CSRF-Token``
    (the ``dynamics_csrf`` cookie is HttpOnly; a foreign site cannot read this same-origin answer)."""
    token = csrf_token(request, response)
    return SessionOut(user=user.get_name(), can_edit=can_edit(user), csrf_token=token)


@api.get("/job-queue-entries", response_model=PageOf[JobQueueEntryOut], responses=_responses(422))
def api_job_queue_entries(
    store: Store,
    user: ReadUser,
    paging: Paging,
    category: str | None = None,
    entry_status: Annotated[str | None, Query(alias="status", description=", ".join(ENTRY_STATUSES))] = None,
    user_id: str | None = None,
    mine: bool = False,
    search: Search = None,
) -> dict[str, Any]:
    """Job Queue Entries, newest first; ``mine=true`` gives My Job Queue (the signed-in user's entries).
    Sorts: created_at, entry_no, priority, status, category_code, document_number, user_id, earliest_start_at."""
    entries, total, sort = service.job_queue_entries(
        store,
        paging,
        category_code=category,
        status=entry_status,
        user_id=user.get_name() if mine else user_id,
        search=search,
    )
    return _page([_entry_out(e) for e in entries], total, sort, paging)


@api.post(
    "/job-queue-entries",
    response_model=JobQueueEntryOut,
    status_code=status.HTTP_201_CREATED,
    dependencies=_write("enqueue"),
    responses=_responses(409, 422),
)
def api_enqueue(body: EnqueueBody, store: Store, user: EditUser) -> JobQueueEntryOut:
    """Post via the job queue: queue a document for posting as the signed-in user (409 when already scheduled)."""
    request = queue.EnqueueRequest(
        document_type=body.document_type,
        document_id=body.document_id,
        document_number=body.document_number,
        user_id=user.get_name(),
        priority=body.priority,
        earliest_start_at=body.earliest_start_at,
        post_and_print=body.post_and_print,
    )
    try:
        return _entry_out(queue.enqueue(store, request))
    except queue.AlreadyScheduledError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    except USER_ERRORS as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, str(exc)) from exc


@api.get("/job-queue-entries/{entry_id}", response_model=JobQueueEntryDetail, responses=_responses(404))
def api_job_queue_entry(entry_id: uuid.UUID, store: Store, user: ReadUser) -> JobQueueEntryDetail:
    """Show Error: the entry, its error message and every attempt with its error detail."""
    entry = queue.get_entry(store, entry_id)
    if entry is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job queue entry {entry_id}")
    logs = queue.list_log_entries(store, entry_id)
    return JobQueueEntryDetail(
        entry=_entry_out(entry), log_entries=[JobQueueLogEntryOut.model_validate(log.__dict__) for log in logs]
    )


@api.delete(
    "/job-queue-entries/{entry_id}",
    response_model=ActionResult,
    dependencies=_write("remove_from_job_queue"),
    responses=_responses(409),
)
def api_remove(entry_id: uuid.UUID, store: Store, user: EditUser) -> ActionResult:
    """Remove from Job Queue: the document's Job Queue Status becomes blank (409 while it is being posted or
    when it is not in the job queue)."""
    try:
        return ActionResult(message=remove_entry(store, entry_id))
    except USER_ERRORS as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc


@api.post(
    "/job-queue-entries/{entry_id}/set-ready",
    response_model=JobQueueEntryOut,
    dependencies=_write("set_status_to_ready"),
    responses=_responses(409),
)
def api_set_ready(entry_id: uuid.UUID, store: Store, user: EditUser) -> JobQueueEntryOut:
    """Set Status to Ready: an entry in Error or On Hold runs again with fresh attempts."""
    try:
        return _entry_out(set_entry_ready(store, entry_id))
    except USER_ERRORS as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc


@api.get("/job-queue-categories", response_model=list[CategoryOut], responses=_responses())
def api_categories(store: Store, user: ReadUser) -> list[dict[str, Any]]:
    """Job queue categories (the filters of the job queue lists)."""
    return service.categories(store)


@api.get("/documents-to-handle", response_model=PageOf[DocumentToHandleOut], responses=_responses(422))
def api_documents_to_handle(
    store: Store,
    user: ReadUser,
    paging: Paging,
    category: str | None = None,
    user_id: str | None = None,
    search: Search = None,
) -> dict[str, Any]:
    """Documents whose posting failed (Job Queue Status Error), with the reason; ``search`` matches the document
    number or the error. Sorts: updated_at, document_type, document_number, category_code, user_id."""
    rows, total, sort = service.documents_to_handle(
        store, paging, category_code=category, user_id=user_id, search=search
    )
    return _page(rows, total, sort, paging)


@api.get("/job-queue-log-entries", response_model=PageOf[JobQueueLogEntryOut], responses=_responses(422))
def api_log_entries(
    store: Store,
    user: ReadUser,
    paging: Paging,
    category: str | None = None,
    log_status: Annotated[str | None, Query(alias="status", description=", ".join(LOG_STATUSES))] = None,
    user_id: str | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
    search: Search = None,
    job_queue_entry_id: uuid.UUID | None = None,
    run_id: Annotated[str | None, Query(description="the DAG run whose task ran the attempts")] = None,
) -> dict[str, Any]:
    """Job Queue Log Entries, newest first, filtered by category, status, user, start date (UTC days), entry and
    DAG run; each names the task instance that ran it and links to its log (``task_log_url``).
    Sorts: entry_no, started_at, ended_at, status, category_code, document_number, user_id."""
    filters = service.LogFilter(
        category, log_status, user_id, date_from, date_to, search, str(job_queue_entry_id or "") or None, run_id
    )
    rows, total, sort = service.log_entries(store, filters, paging)
    return _page(rows, total, sort, paging)


@api.get("/sync/mappings", response_model=list[MappingOut], responses=_responses())
def api_mappings(store: Store, user: ReadUser) -> list[dict[str, Any]]:
    """The table mappings: the loaded ones (mappings folder, run order) and any other the state store has rows
    of (``loaded`` false: a mapping removed from the folder), each with its job queue entry's status."""
    loaded = {name: records.mapping(name) for name in records.mapping_names()}
    names = list(loaded) + [name for name in service.mappings(store) if name not in loaded]
    entries = sync_job_queue.entries(store)
    out = []
    for name in names:
        table = loaded.get(name)
        entry = entries.get(name)
        out.append(
            {
                "name": name,
                "loaded": table is not None,
                "direction": str(table.direction) if table else None,
                "direction_label": labels.label(labels.DIRECTION, str(table.direction)) if table else None,
                "erp_entity_set": table.erp.entity_set if table else None,
                "crm_entity_set": table.crm.entity_set if table else None,
                "resolve_update_conflicts": str(table.resolve_update_conflicts) if table else None,
                "inactivity_timeout_min": table.inactivity_timeout_min if table else None,
                "job_queue_status": entry.status.value if entry else None,
                "job_queue_status_since": entry.status_since if entry else None,
                "on_hold_until": entry.on_hold_until if entry else None,
            }
        )
    return out


def _with_labels(rows: list[dict[str, Any]], **fields: dict[str, str]) -> list[dict[str, Any]]:
    for row in rows:
        for name, table in fields.items():
            row[f"{name}_label"] = labels.label(table, row[name])
    return rows


@api.get("/sync/runs", response_model=PageOf[SyncRunOut], responses=_responses(422))
def api_sync_runs(
    store: Store,
    user: ReadUser,
    paging: Paging,
    mapping: str | None = None,
    direction: Annotated[str | None, Query(pattern="^(to_crm|from_crm)$")] = None,
    run_status: Annotated[
        str | None, Query(alias="status", description="running, success, failed, interrupted")
    ] = None,
    run_id: Annotated[str | None, Query(description="a crm_sync DAG run's run_id")] = None,
    date_from: date | None = None,
    date_to: date | None = None,
) -> dict[str, Any]:
    """Integration Synch. Jobs with Inserted/Modified/Deleted/Unchanged/Skipped/Failed, newest first.
    Sorts: started_at, finished_at, mapping, direction, status and each count."""
    rows, total, sort = service.sync_runs(
        store,
        paging,
        mapping=mapping,
        direction=direction,
        status=run_status,
        run_id=run_id,
        date_from=date_from,
        date_to=date_to,
    )
    return _page(_with_labels(rows, direction=labels.DIRECTION, status=labels.SYNC_RUN_STATUS), total, sort, paging)


@api.get("/sync/errors", response_model=PageOf[SyncErrorOut], responses=_responses(422))
def api_sync_errors(
    store: Store,
    user: ReadUser,
    paging: Paging,
    mapping: str | None = None,
    direction: Annotated[str | None, Query(pattern="^(to_crm|from_crm)$")] = None,
    kind: Annotated[str | None, Query(description="record, dependency, conflict, deleted")] = None,
    skipped: bool | None = None,
    search: Search = None,
) -> dict[str, Any]:
    """The current error of each failing record, with source and destination ids, the reason a Skipped record
    is skipped, and the DAG run that last failed it. Sorts: last_failed_at, first_failed_at, mapping,
    source_key, kind, error_count, skipped."""
    rows, total, sort = service.sync_errors(
        store, paging, mapping=mapping, direction=direction, kind=kind, skipped=skipped, search=search
    )
    rows = _with_labels(rows, direction=labels.DIRECTION, kind=labels.ERROR_KIND)
    for row in rows:
        row["choice_label"] = labels.label(labels.CONFLICT_CHOICE, row["choice"]) if row["choice"] else None
    return _page(rows, total, sort, paging)


@api.get("/sync/conflicts", response_model=PageOf[ConflictChoiceOut], responses=_responses(422))
def api_conflict_choices(
    store: Store,
    user: ReadUser,
    paging: Paging,
    mapping: str | None = None,
    resolution: Annotated[str | None, Query(pattern="^(send_erp_data|take_crm_data|skip)$")] = None,
    applied: bool | None = None,
    search: Search = None,
) -> dict[str, Any]:
    """Users' choices for update conflicts of mappings resolved by ``ask`` (answered Airflow required actions):
    who chose what for which pair, both values per field as asked, the run that asked and the run that applied
    it. Sorts: chosen_at, applied_at, mapping, source_key, chosen_by, resolution."""
    rows, total, sort = service.conflict_choices(
        store, paging, mapping=mapping, resolution=resolution, applied=applied, search=search
    )
    return _page(_with_labels(rows, resolution=labels.CONFLICT_CHOICE), total, sort, paging)


def _record_endpoint(action: Callable[[StateStoreHook, SyncRecordBody], str]) -> Callable[..., ActionResult]:
    def endpoint(body: SyncRecordBody, store: Store, user: EditUser) -> ActionResult:
        try:
            return ActionResult(message=action(store, body))
        except USER_ERRORS as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc

    endpoint.__doc__ = action.__doc__
    return endpoint


def _retry(store: StateStoreHook, body: SyncRecordBody) -> str:
    """Retry a failing record: fresh attempts on the next run, Skipped or not (404 when it has no error)."""
    service.retry_record(store, body.mapping, body.direction, body.source_id)
    return f"{body.mapping}: record {body.source_id} will be retried on the next run."


def _skip(store: StateStoreHook, body: SyncRecordBody) -> str:
    """Skip a failing record: later runs leave it alone until it is un-skipped (404 when it has no error)."""
    service.skip_record(store, body.mapping, body.direction, body.source_id)
    return f"{body.mapping}: record {body.source_id} is skipped."


def _unskip(store: StateStoreHook, body: SyncRecordBody) -> str:
    """Un-skip a Skipped record (the sync module's reset): the next run retries it (404 when not skipped)."""
    if not reset_skipped(store, body.mapping, [body.source_id]):
        raise service.ConsoleActionError(f"{body.mapping}: record {body.source_id} is not skipped.")
    return f"{body.mapping}: record {body.source_id} is no longer skipped."


RECORD_ACTIONS: dict[str, Callable[[StateStoreHook, SyncRecordBody], str]] = {
    "retry": _retry,
    "skip": _skip,
    "unskip": _unskip,
}
for _name, _action in RECORD_ACTIONS.items():
    api.add_api_route(
        f"/sync/errors/{_name}",
        _record_endpoint(_action),
        methods=["POST"],
        response_model=ActionResult,
        dependencies=_write(f"sync_{_name}"),
        name=f"api_sync_{_name}",
        summary=f"{_name.capitalize()} a failing record",
        responses=_responses(404, 422),
    )


@api.get("/sync/couplings", response_model=PageOf[CouplingOut], responses=_responses(422))
def api_couplings(
    store: Store, user: ReadUser, paging: Paging, mapping: str | None = None, search: Search = None
) -> dict[str, Any]:
    """Couplings, searchable by either id or business key.
    Sorts: mapping, erp_key, crm_key, erp_id, crm_id, coupled_at, synced_at."""
    rows, total, sort = service.couplings(store, paging, mapping=mapping, search=search)
    return _page(rows, total, sort, paging)


@api.post(
    "/sync/couplings",
    response_model=ActionResult,
    status_code=201,
    dependencies=_write("couple"),
    responses=_responses(404, 409, 422, 502),
)
def api_couple(body: CoupleBody, store: Store, user: EditUser) -> ActionResult:
    """Couple an ERP record to a CRM record: the mapping must be loaded (422), both records must exist in
    their systems (404; 502 when a system does not answer), neither may be coupled yet (409). The coupling
    keeps both business keys."""
    try:
        message = couple_records(store, body.mapping, body.erp_id, body.crm_id)
    except records.InvalidInputError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, str(exc)) from exc
    except records.RecordNotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except records.SystemUnavailableError as exc:
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, str(exc)) from exc
    except USER_ERRORS as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    return ActionResult(message=message)


@api.delete(
    "/sync/couplings/{mapping}/{erp_id}",
    response_model=ActionResult,
    dependencies=_write("uncouple"),
    responses=_responses(404, 422),
)
def api_uncouple(
    mapping: str,
    erp_id: str,
    store: Store,
    user: EditUser,
    confirm: Annotated[bool, Query(description="must be true: the user confirmed the uncoupling")] = False,
) -> ActionResult:
    """Uncouple an ERP record from its CRM record; needs ``confirm=true`` (422 without), 404 when not coupled."""
    if not confirm:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_ENTITY, "Uncouple needs confirm=true: the next run treats both as new."
        )
    try:
        crm_id = service.uncouple(store, mapping, erp_id)
    except USER_ERRORS as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    return ActionResult(message=f"{mapping}: {erp_id} is no longer coupled to {crm_id}.")


@api.get("/sync/trends", response_model=list[SyncTrendOut], responses=_responses(422))
def api_sync_trends(
    store: Store, user: ReadUser, period: Annotated[Period, Depends(period)], mapping: str | None = None
) -> list[dict[str, Any]]:
    """Per mapping and hour or day (UTC): inserted, modified, deleted, skipped, failed and runs."""
    return service.trends(store, q.SYNC_TRENDS, period, mapping=mapping)


@api.get("/job-queue-trends", response_model=list[PostingTrendOut], responses=_responses(422))
def api_posting_trends(
    store: Store, user: ReadUser, period: Annotated[Period, Depends(period)], category: str | None = None
) -> list[dict[str, Any]]:
    """Per job queue category and hour or day (UTC): posting attempts, posted and failed."""
    return service.trends(store, q.POSTING_TRENDS, period, category_code=category)


@api.get("/mailbox-trends", response_model=list[MailboxTrendOut], responses=_responses(422))
def api_mailbox_trends(
    store: Store, user: ReadUser, period: Annotated[Period, Depends(period)], mailbox_id: int | None = None
) -> list[dict[str, Any]]:
    """Per mailbox and hour or day (UTC): messages tracked, filtered out and quarantined (failures)."""
    return service.trends(store, q.MAILBOX_TRENDS, period, mailbox_id=mailbox_id)


@api.get("/mailboxes", response_model=list[MailboxOut], responses=_responses())
def api_mailboxes(store: Store, user: ReadUser) -> list[dict[str, Any]]:
    """Mailboxes with each workload's status, last error and fix, next sync and items processed, and the latest
    remap request (``remap_request``: pending approval, or approved/rejected with who decided)."""
    boxes = service.mailboxes(store)
    for box in boxes:
        _with_labels(box["workloads"], workload=labels.WORKLOAD, status=labels.WORKLOAD_STATUS)
    return boxes


@api.get("/mailbox-messages", response_model=PageOf[MailboxMessageOut], responses=_responses(422))
def api_mailbox_messages(
    store: Store,
    user: ReadUser,
    paging: Paging,
    mailbox_id: int | None = None,
    outcome: Annotated[str | None, Query(description="tracked, filtered, quarantined")] = None,
) -> dict[str, Any]:
    """Messages the mailboxes handled, newest first. Sorts: processed_at, outcome, subject, folder."""
    rows, total, sort = service.mailbox_messages(store, paging, mailbox_id=mailbox_id, outcome=outcome)
    return _page(_with_labels(rows, outcome=labels.MESSAGE_OUTCOME), total, sort, paging)


@api.get("/crm-users", response_model=list[CrmUserOut], responses=_responses(502))
def api_crm_users(
    user: ReadUser, search: Search = None, limit: Annotated[int, Query(ge=1, le=100)] = 20
) -> list[dict[str, Any]]:
    """The Remap picker: enabled CRM users (Dataverse systemusers) whose name or email contains ``search``."""
    try:
        return records.crm_users(search, limit)
    except records.SystemUnavailableError as exc:
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, str(exc)) from exc


@api.post(
    "/mailboxes/{mailbox_id}/test-and-enable",
    response_model=DagRunTriggered,
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=_write("test_and_enable"),
    responses=_responses(404, 409),
)
def api_test_and_enable(mailbox_id: int, store: Store, user: EditUser) -> DagRunTriggered:
    """Test & Enable: queue a mailbox_sync DAG run that tests the mailbox's workloads now (errors are recorded on
    the mailbox with their fix); 404 for an unknown mailbox, 403 when the user may not trigger mailbox_sync runs,
    409 when Airflow refuses the run (DAG not parsed yet, manual runs not allowed)."""
    try:
        return test_and_enable(store, mailbox_id, user, from_api=True)
    except service.ConsoleActionError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except runs.TriggerForbiddenError as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from exc
    except runs.TriggerRefusedError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc


@api.post(
    "/mailboxes/{mailbox_id}/sync-now",
    response_model=ActionResult,
    dependencies=_write("sync_now"),
    responses=_responses(404),
)
def api_sync_now(mailbox_id: int, store: Store, user: EditUser) -> ActionResult:
    """Sync now: every workload of the mailbox is due at once; the next mailbox cycle runs it."""
    try:
        count = service.sync_now(store, mailbox_id)
    except USER_ERRORS as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    return ActionResult(message=f"{count} workloads of mailbox {mailbox_id} are due now.")


@api.post(
    "/mailboxes/{mailbox_id}/remap",
    response_model=ActionResult,
    dependencies=_write("remap"),
    responses=_responses(404, 409, 422, 502),
)
def api_remap(mailbox_id: int, body: RemapBody, store: Store, user: EditUser) -> ActionResult:
    """Remap the mailbox to a CRM user: 422 when the id is not an enabled CRM user, 409 when a mapping would
    break and ``confirm`` is false, 404 for an unknown mailbox. A confirmed remap that breaks a mapping is not
    applied: it waits for approval as an Airflow required action (a mailbox_remap_approval run; 403 when the user
    may not trigger it); the mailbox's ``remap_request`` shows it and, once decided, who decided."""
    try:
        return remap(store, mailbox_id, body.crm_user_id, body.confirm, user, from_api=True)
    except MailboxAlreadyMappedError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    except runs.TriggerForbiddenError as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from exc
    except runs.TriggerRefusedError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    except records.InvalidInputError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, str(exc)) from exc
    except records.SystemUnavailableError as exc:
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, str(exc)) from exc
    except USER_ERRORS as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc


def _base(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


# -- the app -----------------------------------------------------------------------------------------------------
#: Swagger UI and ReDoc assets, served from the fastapi-offline package (no CDN: the docs work offline).
DOCS_ASSETS = Path(str(importlib.resources.files("fastapi_offline") / "static"))
DOCS_FILES = {"swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png"}


#: The React app plugin's bundle (UMD, registering ``globalThis.AirflowPlugin``).
UI_BUNDLE = Path(__file__).with_name("static") / "console.js"


def create_app() -> FastAPI:
    """The console's FastAPI app (pages, JSON API, its OpenAPI schema and docs, all behind Airflow's auth)."""
    app = FastAPI(
        title="Dynamics job queue console",
        description=(
            "Job queue entries, job queue log entries, integration sync and mailboxes of the state store. Every "
            "route needs a signed-in Airflow user (the UI's `_token` cookie or `Authorization: Bearer <JWT>` from "
            "`POST /auth/token`); actions need edit permission, and with the cookie the `X-CSRF-Token` header "
            "repeating the `dynamics_csrf` cookie. Lists are paged (`offset`, `limit` up to 500, `sort`, "
            "`-sort` descending) and return `total`. Every action is recorded in Airflow's Audit Log."
        ),
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.include_router(api)

    @app.get("/", include_in_schema=False)
    def index(request: Request, user: ReadUser) -> RedirectResponse:
        # The console's pages are the Airflow UI's (react_apps); its mount point leads there.
        return RedirectResponse(console_url("job-queue"), status_code=status.HTTP_303_SEE_OTHER)

    @app.get("/openapi.json", include_in_schema=False)
    def openapi(request: Request, user: ReadUser) -> JSONResponse:
        # ``servers`` is where the console is mounted, so "Try it out" calls the console, not Airflow's /api.
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
            servers=[{"url": _base(request) or "/", "description": "this Airflow api-server's console"}],
        )
        return JSONResponse(schema)

    @app.get("/docs", include_in_schema=False)
    def docs(request: Request, user: ReadUser) -> HTMLResponse:
        base = _base(request)
        return get_swagger_ui_html(
            openapi_url=f"{base}/openapi.json",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{base}/docs-assets/swagger-ui-bundle.js",
            swagger_css_url=f"{base}/docs-assets/swagger-ui.css",
            swagger_favicon_url=f"{base}/docs-assets/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request, user: ReadUser) -> HTMLResponse:
        base = _base(request)
        return get_redoc_html(
            openapi_url=f"{base}/openapi.json",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{base}/docs-assets/redoc.standalone.js",
            redoc_favicon_url=f"{base}/docs-assets/favicon.png",
            with_google_fonts=False,
        )

    @app.get("/ui/console.js", include_in_schema=False)
    def ui_bundle(user: ReadUser) -> FileResponse:
        # The React app's bundle (built by `make console-ui`, shipped in the package); the Airflow UI imports it.
        return FileResponse(
            UI_BUNDLE,
            media_type="text/javascript",
            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
        )

    @app.get("/docs-assets/{name}", include_in_schema=False)
    def docs_asset(name: str, user: ReadUser) -> FileResponse:
        if name not in DOCS_FILES:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no docs asset {name}")
        return FileResponse(DOCS_ASSETS / name)

    return app
