"""Dataverse webhooks: the ``serviceendpoints``, ``sdkmessages``, ``sdkmessagefilters`` and
``sdkmessageprocessingsteps`` entity sets, and the asynchronous service that POSTs a registered step's
``RemoteExecutionContext`` to its webhook.

As documented in "Use webhooks to create external handlers for server events" and "Register a WebHook"
(https://learn.microsoft.com/power-apps/developer/data-platform/use-webhooks, .../register-web-hook), the
ServiceEndpoint and SdkMessageProcessingStep table references and "Asynchronous service":

- A webhook is a ``serviceendpoint`` of ``contract`` 8 with a ``url`` and an ``authtype``: 4 WebhookKey (the
  ``authvalue`` is sent as ``?code=<value>``), 5 HttpHeader or 6 HttpQueryString (the ``authvalue`` is
  ``<settings><setting name="k" value="v" /></settings>``, sent as headers or query parameters). ``authvalue``
  cannot be read back (it is always ``null`` in an answer). "Registered WebHooks support only port 80 for HTTP
  and port 443 for HTTPS": other ports are refused.
- A step names its message (``sdkmessageid@odata.bind``), the message filter of the table
  (``sdkmessagefilterid@odata.bind``, whose ``primaryobjecttypecode`` is the table's logical name) and the
  webhook (``eventhandler_serviceendpoint@odata.bind``); ``name``, ``mode``, ``rank`` and ``stage`` are required;
  an asynchronous step (mode 1) must be PostOperation (stage 40), and only such a step may set
  ``asyncautodelete``. A step of another message's filter is refused.
- After a Create, Update or Delete of a row of a table with an enabled asynchronous step, the service creates a
  system job; it runs "as soon as resources are available" (here after ``delay_s``) and POSTs the context with
  the headers ``x-request-id``, ``x-ms-dynamics-organization``, ``x-ms-dynamics-entity-name``,
  ``x-ms-dynamics-request-name``, ``x-ms-correlation-request-id`` (and ``x-ms-dynamics-msg-size-exceeded``
  when the payload exceeds 256 KB: then ``ParentContext``, ``InputParameters``, ``PreEntityImages`` and
  ``PostEntityImages`` are left out). A write rolled back (a failed change set) creates no job.
- "If no response is returned before the timeout period [60 s] or if the response StatusCode value is not
  within the 2xx range it will fail. The exception is 502, 503, 504 [...] The WebHook service will make one
  more attempt only when these error codes are returned." A failed system job ends with status reason Failed
  (31); one that succeeded is deleted when the step has ``asyncautodelete``, else kept as Succeeded (30).
  Nothing is retried later: a receiver that was down loses those events.

Sandbox simplifications (``SANDBOX_DV_WEBHOOK_*`` environment or ``POST /_sandbox/dataverse-webhooks``):
``delay_s`` (the async service's pickup, default 2 s), ``retry_s`` (when the one more attempt is made, default
5 s), ``timeout_s`` (60 s) and the single leniency ``allow_loopback_port`` (default off): when on, a webhook URL on
a loopback host may use any port, so tests can run a receiver on a free port. ``sdkmessages`` holds Create,
Update and Delete; ``sdkmessagefilters`` one per message and table of the sandbox (no Delete of systemuser,
which Dataverse does not delete). Only the ``$filter`` comparisons ``eq``/``ne`` with ``and``/``or`` and
``$select`` are supported on these sets. System jobs are not exposed as ``asyncoperations``; ``GET
/_sandbox/dataverse-webhooks`` counts them by status.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlencode, urlsplit
from xml.etree import ElementTree

import requests

from sandbox.api import ApiError, ApiRequest, ApiResponse
from sandbox.dataverse_errors import BAD_REQUEST, json_object
from sandbox.dataverse_errors import bad_request as _bad
from sandbox.odata import matches, parse_filter

if TYPE_CHECKING:
    import sqlite3

    from sandbox.api import Caller
    from sandbox.schema import EntitySet
    from sandbox.store import Row, Store

LOG = logging.getLogger(__name__)
NOT_FOUND = "0x80040217"
NAMESPACE = uuid.UUID("5a0d0e00-0000-4000-8000-00000000beef")
MESSAGES = ("Create", "Update", "Delete")
WEBHOOK, WEBHOOK_KEY, HTTP_HEADER, HTTP_QUERY_STRING = 8, 4, 5, 6
MAX_PAYLOAD = 256 * 1024
ORGANIZATION_DOMAIN = "sandbox.crm.dynamics.com"
ORGANIZATION_NAME = "CRONUS"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
ENTITY_CONTRACT = "Entity:http://schemas.microsoft.com/xrm/2011/Contracts"
REFERENCE_CONTRACT = "EntityReference:http://schemas.microsoft.com/xrm/2011/Contracts"
_PATH = re.compile(
    r"^(?P<set>serviceendpoints|sdkmessages|sdkmessagefilters|sdkmessageprocessingsteps)(?:\((?P<key>[^)]*)\))?$"
)
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_BIND = re.compile(r"^(?:https?://[^/]+)?(?:/dataverse)?(?:/api/data/v9\.2)?/?(?P<set>[a-z]+)\((?P<key>[^)]+)\)$")


def message_id(name: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"sdkmessage:{name}"))


def filter_id(message: str, table: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"sdkmessagefilter:{message}:{table}"))


@dataclass
class DataverseWebhookConfig:
    """The asynchronous service's timing (seconds) and the loopback-port leniency."""

    delay_s: float = 2.0
    retry_s: float = 5.0
    timeout_s: float = 60.0
    allow_loopback_port: bool = False

    @classmethod
    def from_env(cls) -> DataverseWebhookConfig:
        """From ``SANDBOX_DV_WEBHOOK_DELAY_S``, ``..._RETRY_S``, ``..._TIMEOUT_S``, ``..._ALLOW_LOOPBACK_PORT``."""
        prefix = "SANDBOX_DV_WEBHOOK_"
        return cls.from_json(
            {n: os.environ[prefix + n.upper()] for n in cls.__dataclass_fields__ if prefix + n.upper() in os.environ}
        )

    @classmethod
    def from_json(cls, data: dict[str, Any], base: DataverseWebhookConfig | None = None) -> DataverseWebhookConfig:
        values = asdict(base or cls())
        for name, value in data.items():
            if name not in values:
                raise ValueError(f"unknown Dataverse webhook setting {name!r}")
            if name == "allow_loopback_port":
                values[name] = value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
            else:
                values[name] = float(value)
        return cls(**values)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _ticks(seconds: float) -> str:
    return f"/Date({int(seconds * 1000)})/"


class DataverseWebhooks:
    """The webhook registrations of the sandbox's organisation and its asynchronous service.

    :param store: the sandbox database (tables ``dv_serviceendpoints``, ``dv_steps``, ``dv_jobs``).
    :param tables: the logical names of the sandbox's tables (their message filters).
    """

    def __init__(self, store: Store, tables: list[str], organization_id: str, business_unit_id: str) -> None:
        self.store = store
        self.tables = tables
        self.organization_id = organization_id
        self.business_unit_id = business_unit_id
        self.config = DataverseWebhookConfig.from_env()
        self.startup_config = self.config
        self.session = requests.Session()
        self.session.trust_env = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.sent = 0

    # -- the entity sets ------------------------------------------------------------------------------------

    def handles(self, path: str) -> bool:
        return _PATH.match(path) is not None

    def handle(self, request: ApiRequest) -> ApiResponse:
        match = _PATH.match(request.path)
        assert match is not None
        name, key = match.group("set"), match.group("key")
        record_id = None
        if key is not None:
            record_id = unquote(key).strip().split("=")[-1].strip("'").lower()
            if not _GUID.match(record_id):
                raise _bad(f"The key '{key}' is not a valid key of '{name}'.")
        if request.method == "GET":
            return self._get(request, name, record_id)
        if name in ("sdkmessages", "sdkmessagefilters"):
            raise ApiError(405, BAD_REQUEST, f"'{request.method}' is not allowed on '{name}' (system data).")
        if request.method == "POST" and record_id is None:
            return self._create(request, name)
        if request.method == "PATCH" and record_id is not None:
            return self._update(request, name, record_id)
        if request.method == "DELETE" and record_id is not None:
            return self._delete(name, record_id)
        raise ApiError(405, BAD_REQUEST, f"'{request.method}' is not allowed here.")

    def _rows(self, name: str) -> list[dict[str, Any]]:
        if name == "sdkmessages":
            return [{"sdkmessageid": message_id(m), "name": m} for m in MESSAGES]
        if name == "sdkmessagefilters":
            return [
                {
                    "sdkmessagefilterid": filter_id(m, t),
                    "_sdkmessageid_value": message_id(m),
                    "primaryobjecttypecode": t,
                    "iscustomprocessingstepallowed": True,
                }
                for m in MESSAGES
                for t in self.tables
                if not (m == "Delete" and t == "systemuser")
            ]
        table = "dv_serviceendpoints" if name == "serviceendpoints" else "dv_steps"
        return [json.loads(b) for (b,) in self.store.read().execute(f"SELECT body FROM {table} ORDER BY rowid")]

    def _render(self, name: str, row: dict[str, Any]) -> dict[str, Any]:
        out = dict(row)
        if name == "serviceendpoints":
            out.pop("authvalue_secret", None)
            out["authvalue"] = None  # "cannot be retrieved"
        return out

    def _get(self, request: ApiRequest, name: str, record_id: str | None) -> ApiResponse:
        key = name[:-1] + "id"
        rows = [self._render(name, r) for r in self._rows(name)]
        if record_id is not None:
            found = next((r for r in rows if r[key] == record_id), None)
            if found is None:
                raise ApiError(404, NOT_FOUND, f"{name[:-1]} With Id = {record_id} Does Not Exist")
            return ApiResponse(200, {"@odata.context": f"{request.root}$metadata#{name}/$entity", **found})
        if "$filter" in request.query:
            node = parse_filter(request.query["$filter"])
            rows = [r for r in rows if matches(node, r)]
        if "$select" in request.query:
            wanted = [c.strip() for c in request.query["$select"].split(",") if c.strip()]
            unknown = [c for c in wanted if rows and c not in rows[0]]
            if unknown:
                raise _bad(
                    f"Could not find a property named '{unknown[0]}' on type 'Microsoft.Dynamics.CRM.{name[:-1]}'."
                )
            rows = [{c: r.get(c) for c in dict.fromkeys([key, *wanted])} for r in rows]
        return ApiResponse(200, {"@odata.context": f"{request.root}$metadata#{name}", "value": rows})

    def _check_endpoint(self, body: dict[str, Any]) -> None:
        allowed = {
            "serviceendpointid",
            "name",
            "contract",
            "url",
            "authtype",
            "authvalue",
            "messageformat",
            "description",
            "connectionmode",
            "solutionnamespace",
            "path",
            "userclaim",
        }
        unknown = [k for k in body if k not in allowed and not k.startswith("@")]
        if unknown:
            raise _bad(f"The property '{unknown[0]}' does not exist on type 'Microsoft.Dynamics.CRM.serviceendpoint'.")
        for required in ("name", "contract"):
            if body.get(required) in (None, ""):
                raise _bad(f"Required field '{required}' is missing for 'serviceendpoint'.")
        if body["contract"] != WEBHOOK:
            raise _bad("The sandbox supports service endpoints of contract 8 (Webhook) only.")
        url, authtype, authvalue = body.get("url"), body.get("authtype"), body.get("authvalue")
        if not isinstance(url, str) or not url:
            raise _bad("A Webhook service endpoint requires a url.")
        if authtype not in (WEBHOOK_KEY, HTTP_HEADER, HTTP_QUERY_STRING):
            raise _bad(
                "A Webhook service endpoint requires an authtype of WebhookKey (4), HttpHeader (5) or "
                "HttpQueryString (6)."
            )
        if not isinstance(authvalue, str) or not authvalue:
            raise _bad("A Webhook service endpoint requires an authvalue.")
        if authtype != WEBHOOK_KEY:
            self._settings(authvalue)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise _bad(f"The url '{url}' is not an absolute http or https URL.")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as exc:
            raise _bad(f"The url '{url}' has an invalid port.") from exc
        standard = (parts.scheme, port) in (("http", 80), ("https", 443))
        lenient = self.config.allow_loopback_port and parts.hostname in LOOPBACK_HOSTS
        if not standard and not lenient:
            raise _bad(f"Registered WebHooks support only port 80 for HTTP and port 443 for HTTPS ('{url}').")

    @staticmethod
    def _settings(authvalue: str) -> list[tuple[str, str]]:
        try:
            root = ElementTree.fromstring(authvalue)
        except ElementTree.ParseError as exc:
            raise _bad('The authvalue must be <settings><setting name="..." value="..." /></settings>.') from exc
        pairs = [(s.get("name") or "", s.get("value") or "") for s in root.iter("setting")]
        if root.tag != "settings" or not pairs or not all(n and v for n, v in pairs):
            raise _bad('The authvalue must be <settings><setting name="..." value="..." /></settings>.')
        return pairs

    def _check_step(self, db: sqlite3.Connection, body: dict[str, Any], binds: dict[str, str]) -> None:
        for required in ("name", "mode", "rank", "stage"):
            if body.get(required) in (None, ""):
                raise _bad(f"Required field '{required}' is missing for 'sdkmessageprocessingstep'.")
        if body["mode"] not in (0, 1) or body["stage"] not in (10, 20, 40) or not isinstance(body["rank"], int):
            raise _bad("mode must be 0 or 1, stage 10, 20 or 40 and rank an integer.")
        if body["mode"] == 1 and body["stage"] != 40:
            raise _bad("An asynchronous step must be registered in the PostOperation stage (40).")
        if body.get("asyncautodelete") and body["mode"] != 1:
            raise _bad("asyncautodelete applies to asynchronous steps only.")
        if body.get("supporteddeployment", 0) not in (0, 1, 2):
            raise _bad("supporteddeployment must be 0, 1 or 2.")
        message = binds.get("sdkmessageid")
        if message not in {message_id(m) for m in MESSAGES}:
            raise ApiError(404, NOT_FOUND, f"sdkmessage With Ids = {message} Do Not Exist")
        flt = binds.get("sdkmessagefilterid")
        if flt is not None:
            row = next((f for f in self._rows("sdkmessagefilters") if f["sdkmessagefilterid"] == flt), None)
            if row is None:
                raise ApiError(404, NOT_FOUND, f"sdkmessagefilter With Ids = {flt} Do Not Exist")
            if row["_sdkmessageid_value"] != message:
                raise _bad("The message filter does not belong to the step's message.")
        handler = binds.get("eventhandler")
        if handler is None:
            raise _bad(
                "The sandbox registers steps of service endpoints only: eventhandler_serviceendpoint@odata.bind."
            )
        if db.execute("SELECT 1 FROM dv_serviceendpoints WHERE id = ?", (handler,)).fetchone() is None:
            raise ApiError(404, NOT_FOUND, f"serviceendpoint With Ids = {handler} Do Not Exist")

    _STEP_BINDS = {
        "sdkmessageid@odata.bind": ("sdkmessageid", "sdkmessages"),
        "sdkmessagefilterid@odata.bind": ("sdkmessagefilterid", "sdkmessagefilters"),
        "eventhandler_serviceendpoint@odata.bind": ("eventhandler", "serviceendpoints"),
    }
    _STEP_COLUMNS = {
        "sdkmessageprocessingstepid",
        "name",
        "description",
        "mode",
        "rank",
        "stage",
        "supporteddeployment",
        "asyncautodelete",
        "filteringattributes",
        "statecode",
        "configuration",
    }

    def _step_body(self, payload: dict[str, Any], base: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        body = dict(base)
        binds = {
            k: v
            for k, v in ((a, base.get(f"_{a}_value")) for a in ("sdkmessageid", "sdkmessagefilterid", "eventhandler"))
            if v
        }
        for name, value in payload.items():
            if name in self._STEP_BINDS:
                attribute, target = self._STEP_BINDS[name]
                match = _BIND.match(str(value or ""))
                if match is None or match.group("set") != target:
                    raise _bad(f"The @odata.bind value '{value}' of '{name}' must reference /{target}(<id>).")
                binds[attribute] = match.group("key").strip("'").lower()
            elif name in self._STEP_COLUMNS:
                body[name] = value
            elif not name.startswith("@"):
                raise _bad(
                    f"The property '{name}' does not exist on type 'Microsoft.Dynamics.CRM.sdkmessageprocessingstep'."
                )
        for attribute in ("sdkmessageid", "sdkmessagefilterid", "eventhandler"):
            body[f"_{attribute}_value"] = binds.get(attribute)
        body.setdefault("supporteddeployment", 0)
        body.setdefault("asyncautodelete", False)
        body.setdefault("statecode", 0)
        return body, binds

    def _create(self, request: ApiRequest, name: str) -> ApiResponse:
        payload = json_object(request)
        with self.store.transaction() as db:
            if name == "serviceendpoints":
                self._check_endpoint(payload)
                if db.execute(
                    "SELECT 1 FROM dv_serviceendpoints WHERE json_extract(body, '$.name') = ?", (payload["name"],)
                ).fetchone():
                    raise ApiError(412, "0x80040237", "A record with matching key values already exists.")
                record_id = str(payload.get("serviceendpointid") or uuid.uuid4()).lower()
                body = {
                    "serviceendpointid": record_id,
                    "messageformat": 2,
                    "description": None,
                    **payload,
                    "authvalue_secret": payload["authvalue"],
                }
                body["serviceendpointid"] = record_id
                db.execute("INSERT INTO dv_serviceendpoints (id, body) VALUES (?, ?)", (record_id, json.dumps(body)))
            else:
                body, binds = self._step_body(payload, {})
                self._check_step(db, body, binds)
                record_id = str(body.get("sdkmessageprocessingstepid") or uuid.uuid4()).lower()
                body["sdkmessageprocessingstepid"] = record_id
                db.execute("INSERT INTO dv_steps (id, body) VALUES (?, ?)", (record_id, json.dumps(body)))
        return ApiResponse(204, None, {"OData-EntityId": f"{request.root}{name}({record_id})"})

    def _update(self, request: ApiRequest, name: str, record_id: str) -> ApiResponse:
        payload = json_object(request)
        table = "dv_serviceendpoints" if name == "serviceendpoints" else "dv_steps"
        with self.store.transaction() as db:
            row = db.execute(f"SELECT body FROM {table} WHERE id = ?", (record_id,)).fetchone()
            if row is None:
                if request.headers.get("if-match"):
                    raise ApiError(404, NOT_FOUND, f"{name[:-1]} With Id = {record_id} Does Not Exist")
                raise _bad("The sandbox does not create these rows by upsert; POST them.")
            current = json.loads(row[0])
            if name == "serviceendpoints":
                merged = {**current, **payload}
                merged["authvalue"] = payload.get("authvalue", current["authvalue_secret"])
                self._check_endpoint({k: v for k, v in merged.items() if k != "authvalue_secret"})
                merged["authvalue_secret"] = merged["authvalue"]
                body = merged
            else:
                body, binds = self._step_body(payload, current)
                self._check_step(db, body, binds)
            db.execute(f"UPDATE {table} SET body = ? WHERE id = ?", (json.dumps(body), record_id))
        return ApiResponse(204, None, {"OData-EntityId": f"{request.root}{name}({record_id})"})

    def _delete(self, name: str, record_id: str) -> ApiResponse:
        table = "dv_serviceendpoints" if name == "serviceendpoints" else "dv_steps"
        with self.store.transaction() as db:
            if db.execute(f"SELECT 1 FROM {table} WHERE id = ?", (record_id,)).fetchone() is None:
                raise ApiError(404, NOT_FOUND, f"{name[:-1]} With Id = {record_id} Does Not Exist")
            if (
                name == "serviceendpoints"
                and db.execute(
                    "SELECT 1 FROM dv_steps WHERE json_extract(body, '$._eventhandler_value') = ?", (record_id,)
                ).fetchone()
            ):
                # A step still refers to it (the step's event handler): delete the steps first.
                raise _bad("The serviceendpoint is the event handler of registered steps; delete them first.")
            db.execute(f"DELETE FROM {table} WHERE id = ?", (record_id,))
        return ApiResponse(204)

    # -- events: system jobs ---------------------------------------------------------------------------------

    def enqueue(self, db: sqlite3.Connection, entity: EntitySet, message: str, row: Row, caller: Caller) -> None:
        """After a write (in its transaction): one system job per enabled asynchronous step of the table's
        ``message`` filter."""
        wanted = filter_id(message, entity.type_name)
        steps = [
            json.loads(b)
            for (b,) in db.execute(
                "SELECT body FROM dv_steps WHERE json_extract(body, '$._sdkmessagefilterid_value') = ?", (wanted,)
            )
        ]
        for step in steps:
            if step.get("statecode", 0) != 0 or step.get("mode") != 1:
                continue
            job_id = str(uuid.uuid4())
            context = self._context(entity, message, row, caller, step, job_id)
            db.execute(
                "INSERT INTO dv_jobs (id, step_id, endpoint_id, due, attempts, status, context, autodelete)"
                " VALUES (?, ?, ?, ?, 0, 0, ?, ?)",
                (
                    job_id,
                    step["sdkmessageprocessingstepid"],
                    step["_eventhandler_value"],
                    time.time() + self.config.delay_s,
                    json.dumps(context),
                    1 if step.get("asyncautodelete") else 0,
                ),
            )

    def _context(
        self, entity: EntitySet, message: str, row: Row, caller: Caller, step: dict[str, Any], job_id: str
    ) -> dict[str, Any]:
        """The ``RemoteExecutionContext`` of the operation, in the shape of the documentation's sample."""
        record_id = row.id
        user = caller.systemuserid
        reference = {
            "__type": REFERENCE_CONTRACT,
            "Id": record_id,
            "KeyAttributes": [],
            "LogicalName": entity.type_name,
            "Name": None,
            "RowVersion": None,
        }
        if message == "Delete":
            target: dict[str, Any] = reference
        else:
            attributes = [
                {"key": k, "value": v}
                for k, v in row.body.items()
                if not k.startswith("_") and k not in ("createdon", "modifiedon", "versionnumber")
            ]
            attributes.append({"key": "modifiedby", "value": {**reference, "Id": user, "LogicalName": "systemuser"}})
            target = {
                "__type": ENTITY_CONTRACT,
                "Attributes": attributes,
                "EntityState": None,
                "FormattedValues": [],
                "Id": record_id,
                "KeyAttributes": [],
                "LogicalName": entity.type_name,
                "RelatedEntities": [],
                "RowVersion": str(row.version),
            }
        correlation = str(uuid.uuid4())
        return {
            "BusinessUnitId": self.business_unit_id,
            "CorrelationId": correlation,
            "Depth": 1,
            "InitiatingUserId": user,
            "InputParameters": [{"key": "Target", "value": target}],
            "IsExecutingOffline": False,
            "IsInTransaction": False,
            "IsOfflinePlayback": False,
            "IsolationMode": 1,
            "MessageName": message,
            "Mode": 1,
            "OperationCreatedOn": _ticks(time.time()),
            "OperationId": job_id,
            "OrganizationId": self.organization_id,
            "OrganizationName": ORGANIZATION_NAME,
            "OutputParameters": [{"key": "id", "value": record_id}] if message == "Create" else [],
            "OwningExtension": {
                "Id": step["sdkmessageprocessingstepid"],
                "KeyAttributes": [],
                "LogicalName": "sdkmessageprocessingstep",
                "Name": step.get("name"),
                "RowVersion": None,
            },
            "ParentContext": None,
            "PostEntityImages": [],
            "PreEntityImages": [],
            "PrimaryEntityId": record_id,
            "PrimaryEntityName": entity.type_name,
            "RequestId": None,
            "SecondaryEntityName": "none",
            "SharedVariables": [],
            "Stage": 40,
            "UserId": user,
        }

    def counts(self) -> dict[str, int]:
        """System jobs by status: waiting, succeeded (kept), failed; and POSTs answered 2xx (``sent``)."""
        names = {0: "waiting", 30: "succeeded", 31: "failed"}
        out = {v: 0 for v in names.values()}
        for status, n in self.store.read().execute("SELECT status, COUNT(*) FROM dv_jobs GROUP BY status"):
            out[names[status]] = n
        return {**out, "sent": self.sent}

    def start(self, tick_s: float = 0.2) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, args=(tick_s,), name="dataverse-webhooks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self, tick_s: float) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                LOG.exception("Dataverse webhook round failed")
            self._stop.wait(tick_s)

    def tick(self) -> None:
        """Run every system job that is due, one POST each, oldest first."""
        due = (
            self.store.read()
            .execute(
                "SELECT id, endpoint_id, attempts, context, autodelete FROM dv_jobs WHERE status = 0 AND due <= ?"
                " ORDER BY due",
                (time.time(),),
            )
            .fetchall()
        )
        for job_id, endpoint_id, attempts, context, autodelete in due:
            status, error = self._post(endpoint_id, json.loads(context))
            with self.store.transaction() as db:
                if 200 <= status < 300:
                    if autodelete:
                        db.execute("DELETE FROM dv_jobs WHERE id = ?", (job_id,))
                    else:
                        db.execute("UPDATE dv_jobs SET status = 30, attempts = ? WHERE id = ?", (attempts + 1, job_id))
                elif status in (502, 503, 504) and attempts == 0:
                    db.execute(
                        "UPDATE dv_jobs SET attempts = 1, due = ?, message = ? WHERE id = ?",
                        (time.time() + self.config.retry_s, error, job_id),
                    )
                else:
                    LOG.warning("Dataverse webhook system job %s failed: %s", job_id, error)
                    db.execute(
                        "UPDATE dv_jobs SET status = 31, attempts = ?, message = ? WHERE id = ?",
                        (attempts + 1, error, job_id),
                    )
            if 200 <= status < 300:
                self.sent += 1

    def _post(self, endpoint_id: str, context: dict[str, Any]) -> tuple[int, str]:
        row = self.store.read().execute("SELECT body FROM dv_serviceendpoints WHERE id = ?", (endpoint_id,)).fetchone()
        if row is None:
            return 0, "the service endpoint was deleted"
        endpoint = json.loads(row[0])
        headers = {
            "Content-Type": "application/json",
            "x-request-id": str(uuid.uuid4()),
            "x-ms-dynamics-organization": ORGANIZATION_DOMAIN,
            "x-ms-dynamics-entity-name": context["PrimaryEntityName"],
            "x-ms-dynamics-request-name": context["MessageName"],
            "x-ms-correlation-request-id": context["CorrelationId"],
        }
        url = endpoint["url"]
        query: list[tuple[str, str]] = []
        secret = endpoint["authvalue_secret"]
        if endpoint["authtype"] == WEBHOOK_KEY:
            query.append(("code", secret))
        elif endpoint["authtype"] == HTTP_HEADER:
            headers.update(self._settings(secret))
        else:
            query.extend(self._settings(secret))
        if query:
            url += ("&" if urlsplit(url).query else "?") + urlencode(query)
        payload = json.dumps(context).encode()
        if len(payload) > MAX_PAYLOAD:
            for name in ("ParentContext", "InputParameters", "PreEntityImages", "PostEntityImages"):
                context.pop(name, None)
            payload = json.dumps(context).encode()
            headers["x-ms-dynamics-msg-size-exceeded"] = "true"
        try:
            answer = self.session.post(url, data=payload, headers=headers, timeout=self.config.timeout_s)
        except requests.RequestException as exc:
            return 0, f"no response: {type(exc).__name__}"
        return answer.status_code, f"HTTP {answer.status_code}"


def create_schema(db: sqlite3.Connection) -> None:
    """The webhook tables (called by :class:`sandbox.store.Store`)."""
    db.execute("CREATE TABLE IF NOT EXISTS dv_serviceendpoints (id TEXT PRIMARY KEY, body TEXT NOT NULL)")
    db.execute("CREATE TABLE IF NOT EXISTS dv_steps (id TEXT PRIMARY KEY, body TEXT NOT NULL)")
    db.execute(
        "CREATE TABLE IF NOT EXISTS dv_jobs (id TEXT PRIMARY KEY, step_id TEXT NOT NULL, endpoint_id TEXT NOT NULL,"
        " due REAL NOT NULL, attempts INTEGER NOT NULL, status INTEGER NOT NULL, context TEXT NOT NULL,"
        " autodelete INTEGER NOT NULL, message TEXT)"
    )
