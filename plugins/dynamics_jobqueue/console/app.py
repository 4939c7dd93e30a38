"""The operator console: server-rendered pages and a JSON API over the state store, mounted in Airflow's
api-server by :mod:`dynamics_jobqueue.plugin` (under ``/dynamics``).

Pages (Jinja2, autoescaped): Job Queue Entries (and My Job Queue), Show Error, Documents to handle, Job Queue
Log Entries, Integration Sync (runs with a chart of their counts, errors, couplings), Mailboxes. Every listing
and action is also a JSON endpoint under ``/api`` (OpenAPI at ``/openapi.json``, Swagger UI at ``/docs``).
Every route needs a signed-in Airflow user; actions need edit permission and a CSRF token
(:mod:`dynamics_jobqueue.console.security`). Form actions answer with a redirect (303) back to the page with a
``notice`` or ``error`` message. Actions only write the state store; one that does work (Test & Enable talks
to mail servers and the CRM) triggers a DAG run with conf instead (:mod:`dynamics_jobqueue.console.runs`) and
links to it.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

import jinja2
from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Query, Request, status
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from dynamics_jobqueue.console import runs, service
from dynamics_jobqueue.console.models import (
    ActionResult,
    CoupleBody,
    CouplingOut,
    DagRunTriggered,
    DocumentToHandleOut,
    EnqueueBody,
    JobQueueEntryDetail,
    JobQueueEntryOut,
    JobQueueLogEntryOut,
    MailboxOut,
    RemapBody,
    SyncErrorOut,
    SyncRecordBody,
    SyncRunOut,
)
from dynamics_jobqueue.console.security import (
    EditUser,
    ReadUser,
    can_edit,
    check_api_csrf,
    check_form_csrf,
    csrf_token,
    set_csrf_cookie,
)
from dynamics_jobqueue.hooks.state import StateStoreHook
from dynamics_jobqueue.mailbox.records import MailboxAlreadyMappedError, get_mailbox, map_user
from dynamics_jobqueue.operators.mailbox import TEST_AND_ENABLE
from dynamics_jobqueue.posting import queue
from dynamics_jobqueue.posting.entries import JobQueueEntry, Status
from dynamics_jobqueue.sync.store import reset_skipped

TEMPLATES = Path(__file__).with_name("templates")
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


def _utc(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def _templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,  # names, subjects and error messages come from users and mail: always text
        undefined=jinja2.StrictUndefined,
    )
    env.filters["utc"] = _utc
    return Jinja2Templates(env=env)


templates = _templates()


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


def remap(store: StateStoreHook, mailbox_id: int, crm_user_id: uuid.UUID, confirm: bool, user: str) -> ActionResult:
    """Map the mailbox to a CRM user; breaking a mapping needs ``confirm`` (:func:`map_user`)."""
    try:
        broken = map_user(store, mailbox_id, crm_user_id, confirm=confirm, changed_by=user)
    except KeyError as exc:
        raise service.ConsoleActionError(f"There is no mailbox {mailbox_id}.") from exc
    return ActionResult(message=f"Mailbox {mailbox_id} is mapped to CRM user {crm_user_id}.", details=broken)


#: Refusals meant for the user (the domain's messages); anything else is a server error.
USER_ERRORS = (queue.JobQueueError, service.ConsoleActionError, runs.TriggerRefusedError, ValueError)


def _log_filter(
    category: str | None, status_: str | None, user_id: str | None, date_from: date | None, date_to: date | None
) -> service.LogFilter:
    return service.LogFilter(category or None, status_ or None, user_id or None, date_from, date_to)


def _optional_date(value: str | None) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, f"not a date (YYYY-MM-DD): {value}") from exc


# -- JSON API ----------------------------------------------------------------------------------------------------
api = APIRouter(prefix="/api", tags=["console API"])
api_write = [Depends(check_api_csrf)]


@api.get("/job-queue-entries", response_model=list[JobQueueEntryOut])
def api_job_queue_entries(
    store: Store,
    user: ReadUser,
    category: str | None = None,
    entry_status: Annotated[str | None, Query(alias="status")] = None,
    user_id: str | None = None,
    mine: bool = False,
) -> list[JobQueueEntryOut]:
    """Job Queue Entries, newest first; ``mine=true`` gives My Job Queue (the signed-in user's entries)."""
    statuses = [Status(entry_status)] if entry_status else None
    entries = queue.list_entries(
        store, category_code=category or None, statuses=statuses, user_id=user.get_name() if mine else user_id
    )
    return [_entry_out(e) for e in entries]


@api.post(
    "/job-queue-entries", response_model=JobQueueEntryOut, status_code=status.HTTP_201_CREATED, dependencies=api_write
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


@api.get("/job-queue-entries/{entry_id}", response_model=JobQueueEntryDetail)
def api_job_queue_entry(entry_id: uuid.UUID, store: Store, user: ReadUser) -> JobQueueEntryDetail:
    """Show Error: the entry, its error message and every attempt with its error detail."""
    entry = queue.get_entry(store, entry_id)
    if entry is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job queue entry {entry_id}")
    logs = queue.list_log_entries(store, entry_id)
    return JobQueueEntryDetail(
        entry=_entry_out(entry), log_entries=[JobQueueLogEntryOut.model_validate(log.__dict__) for log in logs]
    )


@api.delete("/job-queue-entries/{entry_id}", response_model=ActionResult, dependencies=api_write)
def api_remove(entry_id: uuid.UUID, store: Store, user: EditUser) -> ActionResult:
    """Remove from Job Queue: the document's Job Queue Status becomes blank (409 while it is being posted)."""
    try:
        return ActionResult(message=remove_entry(store, entry_id))
    except USER_ERRORS as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc


@api.post("/job-queue-entries/{entry_id}/set-ready", response_model=JobQueueEntryOut, dependencies=api_write)
def api_set_ready(entry_id: uuid.UUID, store: Store, user: EditUser) -> JobQueueEntryOut:
    """Set Status to Ready: an entry in Error or On Hold runs again with fresh attempts."""
    try:
        return _entry_out(set_entry_ready(store, entry_id))
    except USER_ERRORS as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc


@api.get("/documents-to-handle", response_model=list[DocumentToHandleOut])
def api_documents_to_handle(store: Store, user: ReadUser) -> list[dict[str, Any]]:
    """Documents whose posting failed (Job Queue Status Error), with the reason."""
    return service.documents_to_handle(store)


@api.get("/job-queue-log-entries", response_model=list[JobQueueLogEntryOut])
def api_log_entries(
    store: Store,
    user: ReadUser,
    category: str | None = None,
    log_status: Annotated[str | None, Query(alias="status")] = None,
    user_id: str | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
) -> list[dict[str, Any]]:
    """Job Queue Log Entries, newest first, filtered by category, status, user and start date (UTC days)."""
    return service.log_entries(store, _log_filter(category, log_status, user_id, date_from, date_to))


@api.get("/sync/mappings", response_model=list[str])
def api_mappings(store: Store, user: ReadUser) -> list[str]:
    """Table mappings with runs, couplings or errors."""
    return service.mappings(store)


@api.get("/sync/runs", response_model=list[SyncRunOut])
def api_sync_runs(store: Store, user: ReadUser, mapping: str | None = None) -> list[dict[str, Any]]:
    """Recent Integration Synch. Jobs with Inserted/Modified/Deleted/Unchanged/Skipped/Failed."""
    return service.sync_runs(store, mapping or None)


@api.get("/sync/errors", response_model=list[SyncErrorOut])
def api_sync_errors(store: Store, user: ReadUser, mapping: str | None = None) -> list[dict[str, Any]]:
    """The current error of each failing record, with source and destination ids."""
    return service.sync_errors(store, mapping or None)


def _record_endpoint(action: Callable[[StateStoreHook, SyncRecordBody], str]) -> Callable[..., ActionResult]:
    def endpoint(body: SyncRecordBody, store: Store, user: EditUser) -> ActionResult:
        try:
            return ActionResult(message=action(store, body))
        except USER_ERRORS as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc

    endpoint.__doc__ = action.__doc__
    return endpoint


def _retry(store: StateStoreHook, body: SyncRecordBody) -> str:
    """Retry a failing record: fresh attempts on the next run, Skipped or not."""
    service.retry_record(store, body.mapping, body.direction, body.source_id)
    return f"{body.mapping}: record {body.source_id} will be retried on the next run."


def _skip(store: StateStoreHook, body: SyncRecordBody) -> str:
    """Skip a failing record: later runs leave it alone until it is un-skipped."""
    service.skip_record(store, body.mapping, body.direction, body.source_id)
    return f"{body.mapping}: record {body.source_id} is skipped."


def _unskip(store: StateStoreHook, body: SyncRecordBody) -> str:
    """Un-skip a Skipped record (the sync module's reset): the next run retries it."""
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
        dependencies=api_write,
        name=f"api_sync_{_name}",
        summary=f"{_name.capitalize()} a failing record",
    )


@api.get("/sync/couplings", response_model=list[CouplingOut])
def api_couplings(
    store: Store, user: ReadUser, mapping: str | None = None, search: str | None = None
) -> list[dict[str, Any]]:
    """Couplings, searchable by either id or business key."""
    return service.couplings(store, mapping or None, search)


@api.post("/sync/couplings", response_model=ActionResult, status_code=201, dependencies=api_write)
def api_couple(body: CoupleBody, store: Store, user: EditUser) -> ActionResult:
    """Couple an ERP record to a CRM record (409 when either is already coupled)."""
    try:
        service.couple(store, body.mapping, body.erp_id, body.crm_id, body.erp_key)
    except USER_ERRORS as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    return ActionResult(message=f"{body.mapping}: {body.erp_id} is coupled to {body.crm_id}.")


@api.delete("/sync/couplings/{mapping}/{erp_id}", response_model=ActionResult, dependencies=api_write)
def api_uncouple(mapping: str, erp_id: str, store: Store, user: EditUser) -> ActionResult:
    """Uncouple an ERP record from its CRM record (404 when not coupled)."""
    try:
        crm_id = service.uncouple(store, mapping, erp_id)
    except USER_ERRORS as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    return ActionResult(message=f"{mapping}: {erp_id} is no longer coupled to {crm_id}.")


@api.get("/mailboxes", response_model=list[MailboxOut])
def api_mailboxes(store: Store, user: ReadUser) -> list[dict[str, Any]]:
    """Mailboxes with each workload's status, last error and fix, next sync and items processed."""
    return service.mailboxes(store)


@api.post(
    "/mailboxes/{mailbox_id}/test-and-enable",
    response_model=DagRunTriggered,
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=api_write,
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


@api.post("/mailboxes/{mailbox_id}/sync-now", response_model=ActionResult, dependencies=api_write)
def api_sync_now(mailbox_id: int, store: Store, user: EditUser) -> ActionResult:
    """Sync now: every workload of the mailbox is due at once; the next mailbox cycle runs it."""
    try:
        count = service.sync_now(store, mailbox_id)
    except USER_ERRORS as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    return ActionResult(message=f"{count} workloads of mailbox {mailbox_id} are due now.")


@api.post("/mailboxes/{mailbox_id}/remap", response_model=ActionResult, dependencies=api_write)
def api_remap(mailbox_id: int, body: RemapBody, store: Store, user: EditUser) -> ActionResult:
    """Remap the mailbox to a CRM user; 409 when a mapping would break and ``confirm`` is false."""
    try:
        return remap(store, mailbox_id, body.crm_user_id, body.confirm, user.get_name())
    except MailboxAlreadyMappedError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    except USER_ERRORS as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc


# -- pages -------------------------------------------------------------------------------------------------------
pages = APIRouter(include_in_schema=False)
FormCsrf = [Depends(check_form_csrf)]


def _base(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def render(request: Request, user: Any, template: str, active: str, **context: Any) -> HTMLResponse:
    """Render a page; the CSRF cookie is issued with the first page a browser gets."""
    probe = Response()
    token = csrf_token(request, probe)
    response = templates.TemplateResponse(
        request,
        template,
        {
            "base": _base(request),
            "active": active,
            "user_name": user.get_name(),
            "can_edit": can_edit(user),
            "csrf_token": token,
            "notice": request.query_params.get("notice"),
            "error": request.query_params.get("error"),
            "dag_run": _dag_run_link(request),
            **context,
        },
    )
    if "set-cookie" in probe.headers:
        set_csrf_cookie(response, token, _base(request) or "/")
    return response


def _dag_run_link(request: Request) -> dict[str, str] | None:
    """The DAG run a notice is about (``dag_id`` and ``dag_run_id`` parameters), with its Airflow UI URL."""
    dag_id, run_id = request.query_params.get("dag_id"), request.query_params.get("dag_run_id")
    if not dag_id or not run_id:
        return None
    return {"dag_id": dag_id, "run_id": run_id, "url": runs.run_url(dag_id, run_id)}


def back(
    request: Request, path: str, *, notice: str | None = None, error: str | None = None, **params: Any
) -> Response:
    """303 to a console page with a message for the user."""
    query = {k: v for k, v in {**params, "notice": notice, "error": error}.items() if v}
    return RedirectResponse(f"{_base(request)}{path}?{urlencode(query)}", status_code=status.HTTP_303_SEE_OTHER)


def _do(request: Request, path: str, action: Callable[[], str], **params: Any) -> Response:
    try:
        return back(request, path, notice=action(), **params)
    except (*USER_ERRORS, MailboxAlreadyMappedError) as exc:
        return back(request, path, error=str(exc), **params)


@pages.get("/", response_class=HTMLResponse)
def index(request: Request, user: ReadUser) -> Response:
    return RedirectResponse(f"{_base(request)}/job-queue", status_code=status.HTTP_303_SEE_OTHER)


@pages.get("/job-queue", response_class=HTMLResponse)
def job_queue_page(
    request: Request,
    store: Store,
    user: ReadUser,
    category: str | None = None,
    entry_status: Annotated[str | None, Query(alias="status")] = None,
    mine: bool = False,
) -> Response:
    entries = queue.list_entries(
        store,
        category_code=category or None,
        statuses=[Status(entry_status)] if entry_status else None,
        user_id=user.get_name() if mine else None,
    )
    return render(
        request,
        user,
        "job_queue.html",
        "my-job-queue" if mine else "job-queue",
        entries=entries,
        categories=service.categories(store),
        statuses=ENTRY_STATUSES,
        category=category or "",
        status=entry_status or "",
        mine=mine,
    )


@pages.get("/job-queue/{entry_id}", response_class=HTMLResponse)
def entry_page(request: Request, entry_id: uuid.UUID, store: Store, user: ReadUser) -> Response:
    entry = queue.get_entry(store, entry_id)
    if entry is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job queue entry {entry_id}")
    return render(
        request, user, "entry.html", "job-queue", entry=entry, log_entries=queue.list_log_entries(store, entry_id)
    )


@pages.post("/job-queue/{entry_id}/remove", dependencies=FormCsrf)
def remove_form(request: Request, entry_id: uuid.UUID, store: Store, user: EditUser) -> Response:
    return _do(request, "/job-queue", lambda: remove_entry(store, entry_id))


@pages.post("/job-queue/{entry_id}/set-ready", dependencies=FormCsrf)
def set_ready_form(
    request: Request, entry_id: uuid.UUID, store: Store, user: EditUser, next_page: Annotated[str, Form()] = ""
) -> Response:
    def action() -> str:
        entry = set_entry_ready(store, entry_id)
        return f"{entry.describe()} is Ready and will be posted again."

    return _do(request, "/documents" if next_page == "documents" else "/job-queue", action)


@pages.get("/documents", response_class=HTMLResponse)
def documents_page(request: Request, store: Store, user: ReadUser) -> Response:
    return render(request, user, "documents.html", "documents", documents=service.documents_to_handle(store))


@pages.get("/log", response_class=HTMLResponse)
def log_page(
    request: Request,
    store: Store,
    user: ReadUser,
    category: str | None = None,
    log_status: Annotated[str | None, Query(alias="status")] = None,
    user_id: str | None = None,
    date_from: str | None = None,
    date_to: str | None = None,
) -> Response:
    filters = _log_filter(category, log_status, user_id, _optional_date(date_from), _optional_date(date_to))
    return render(
        request,
        user,
        "log.html",
        "log",
        entries=service.log_entries(store, filters),
        categories=service.categories(store),
        statuses=LOG_STATUSES,
        filters=filters,
    )


@pages.get("/sync", response_class=HTMLResponse)
def sync_page(
    request: Request, store: Store, user: ReadUser, mapping: str | None = None, search: str | None = None
) -> Response:
    runs = service.sync_runs(store, mapping or None)
    return render(
        request,
        user,
        "sync.html",
        "sync",
        mappings=service.mappings(store),
        mapping=mapping or "",
        search=search or "",
        runs=runs,
        chart=chart_bars(runs),
        series=CHART_SERIES,
        errors=service.sync_errors(store, mapping or None),
        couplings=service.couplings(store, mapping or None, search),
    )


#: Counts of a run in the order the chart stacks them, with their colours.
CHART_SERIES = [
    ("inserted", "#2e7d32"),
    ("modified", "#1565c0"),
    ("deleted", "#6d4c41"),
    ("unchanged", "#9e9e9e"),
    ("skipped", "#f9a825"),
    ("failed", "#c62828"),
]


def chart_bars(runs: list[dict[str, Any]], width: int = 600) -> list[dict[str, Any]]:
    """Horizontal stacked bars of the runs' counts, oldest first, scaled to the largest run.

    :param width: pixels of the largest bar.
    :return: per run its label and the segments (series name, count, x offset and width in pixels, colour).
    """
    ordered = list(reversed(runs[:20]))
    largest = max((sum(run[name] for name, _ in CHART_SERIES) for run in ordered), default=0) or 1
    bars = []
    for run in ordered:
        x = 0.0
        segments = []
        for name, colour in CHART_SERIES:
            size = run[name] * width / largest
            if run[name]:
                segments.append({"name": name, "count": run[name], "x": x, "width": max(size, 1), "colour": colour})
            x += size
        label = f"{run['mapping']} {run['direction']} {_utc(run['started_at'])}"
        bars.append({"label": label, "segments": segments})
    return bars


@pages.post("/sync/errors/{action}", dependencies=FormCsrf)
def record_form(
    request: Request,
    action: str,
    store: Store,
    user: EditUser,
    mapping: Annotated[str, Form()],
    direction: Annotated[str, Form()],
    source_id: Annotated[str, Form()],
) -> Response:
    if action not in RECORD_ACTIONS:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no action {action}")
    try:
        body = SyncRecordBody(mapping=mapping, direction=direction, source_id=source_id)
    except ValueError as exc:
        return back(request, "/sync", error=str(exc), mapping=mapping)
    return _do(request, "/sync", lambda: RECORD_ACTIONS[action](store, body), mapping=mapping)


@pages.post("/sync/couplings/uncouple", dependencies=FormCsrf)
def uncouple_form(
    request: Request,
    store: Store,
    user: EditUser,
    mapping: Annotated[str, Form()],
    erp_id: Annotated[str, Form()],
) -> Response:
    def action() -> str:
        crm_id = service.uncouple(store, mapping, erp_id)
        return f"{mapping}: {erp_id} is no longer coupled to {crm_id}."

    return _do(request, "/sync", action, mapping=mapping)


@pages.post("/sync/couplings/couple", dependencies=FormCsrf)
def couple_form(
    request: Request,
    store: Store,
    user: EditUser,
    mapping: Annotated[str, Form()],
    erp_id: Annotated[str, Form()],
    crm_id: Annotated[str, Form()],
) -> Response:
    def action() -> str:
        service.couple(store, mapping, erp_id.strip(), crm_id.strip())
        return f"{mapping}: {erp_id} is coupled to {crm_id}."

    return _do(request, "/sync", action, mapping=mapping)


@pages.get("/mailboxes", response_class=HTMLResponse)
def mailboxes_page(request: Request, store: Store, user: ReadUser) -> Response:
    boxes = service.mailboxes(store)
    for box in boxes:
        box["messages"] = service.recent_messages(store, box["mailbox_id"])
    return render(request, user, "mailboxes.html", "mailboxes", mailboxes=boxes)


@pages.post("/mailboxes/{mailbox_id}/test-and-enable", dependencies=FormCsrf)
def test_and_enable_form(request: Request, mailbox_id: int, store: Store, user: EditUser) -> Response:
    try:
        run = test_and_enable(store, mailbox_id, user, from_api=False)
    except USER_ERRORS as exc:
        return back(request, "/mailboxes", error=str(exc))
    return back(request, "/mailboxes", notice=run.message, dag_id=run.dag_id, dag_run_id=run.dag_run_id)


@pages.post("/mailboxes/{mailbox_id}/sync-now", dependencies=FormCsrf)
def sync_now_form(request: Request, mailbox_id: int, store: Store, user: EditUser) -> Response:
    return _do(
        request,
        "/mailboxes",
        lambda: f"{service.sync_now(store, mailbox_id)} workloads of mailbox {mailbox_id} are due now.",
    )


@pages.post("/mailboxes/{mailbox_id}/remap", dependencies=FormCsrf)
def remap_form(
    request: Request,
    mailbox_id: int,
    store: Store,
    user: EditUser,
    crm_user_id: Annotated[str, Form()],
    confirm: Annotated[str, Form()] = "",
) -> Response:
    """Remap; when it would break a mapping and is not confirmed yet, a page asks for explicit confirmation."""
    try:
        target = uuid.UUID(crm_user_id.strip())
    except ValueError:
        return back(request, "/mailboxes", error=f"Not a CRM user id (GUID): {crm_user_id}")
    try:
        result = remap(store, mailbox_id, target, confirm == "yes", user.get_name())
    except MailboxAlreadyMappedError as exc:
        return render(
            request,
            user,
            "remap_confirm.html",
            "mailboxes",
            mailbox_id=mailbox_id,
            crm_user_id=target,
            conflict=str(exc),
        )
    except USER_ERRORS as exc:
        return back(request, "/mailboxes", error=str(exc))
    return back(request, "/mailboxes", notice=" ".join([result.message, *result.details]))


# -- the app -----------------------------------------------------------------------------------------------------
def create_app() -> FastAPI:
    """The console's FastAPI app (pages, JSON API, and its OpenAPI schema, all behind Airflow's auth)."""
    app = FastAPI(
        title="Dynamics job queue console",
        description="Job queue entries, job queue log entries, integration sync and mailboxes of the state store.",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.include_router(api)
    app.include_router(pages)

    @app.get("/openapi.json", include_in_schema=False)
    def openapi(user: ReadUser) -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False)
    def docs(request: Request, user: ReadUser) -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=f"{_base(request)}/openapi.json", title=app.title)

    return app
