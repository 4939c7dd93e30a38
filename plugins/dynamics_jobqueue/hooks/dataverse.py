"""Hook to the Dataverse Web API v9.2 (Dynamics 365 Sales, the CRM side).

Follows docs/reference/api-contracts.md: ``<org>/api/data/v9.2/``, OData 4.0 headers, upsert by id or alternate key with
``If-Match``/``If-None-Match`` rules, ``@odata.bind`` lookups, multipart ``$batch`` (at most 1,000 requests,
``Prefer: odata.continue-on-error``), change tracking with ``@odata.deltaLink``.

Connection (conn type ``dynamics_dataverse``): ``host`` the organisation URL (``https://contoso.crm.dynamics.com``),
``login``/``password`` client id/secret of the application user, ``extra.tenant_id``, plus the fields of
:class:`~dynamics_jobqueue.hooks.microsoft.MicrosoftApiHook`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar, Literal

from dynamics_jobqueue.hooks.batch import (
    BatchOperation,
    BatchResult,
    ResponsePart,
    batch_boundary,
    decode_multipart,
    encode_multipart,
    failure,
    roll_back,
)
from dynamics_jobqueue.hooks.errors import ApiError, MalformedResponseError, error_for_status
from dynamics_jobqueue.hooks.microsoft import (
    MicrosoftApiHook,
    Page,
    json_or_text,
    key_segment,
    odata_params,
    record_path,
)

API_PATH = "api/data/v9.2/"
#: Dataverse accepts at most 1,000 requests per $batch.
MAX_BATCH = 1_000

UpsertMode = Literal["upsert", "update", "create"]


@dataclass
class ChangePage:
    """One page of a change-tracking read.

    :param records: created or changed rows (dicts as the API returns them).
    :param deleted_ids: ids of rows deleted since the previous delta link.
    :param delta_link: set on the last page only: store it and pass it to the next read.
    """

    records: list[dict[str, Any]] = field(default_factory=list)
    deleted_ids: list[str] = field(default_factory=list)
    delta_link: str | None = None


def upsert_headers(mode: UpsertMode, etag: str | None = None) -> dict[str, str]:
    """Conditional headers for a PATCH: ``upsert`` none, ``update`` ``If-Match`` (``etag`` or ``*``),
    ``create`` ``If-None-Match: *`` (Web API docs, "Upsert a table row")."""
    if mode == "update":
        return {"If-Match": etag or "*"}
    if mode == "create":
        return {"If-None-Match": "*"}
    return {"If-Match": etag} if etag else {}


def upsert_operation(
    op_id: str,
    entity_set: str,
    key: str | Mapping[str, Any],
    body: dict[str, Any],
    *,
    mode: UpsertMode = "upsert",
    id_field: str | None = None,
) -> BatchOperation:
    """A keyed write for :meth:`DataverseHook.batch`: PATCH by id or alternate key with the headers of ``mode``.

    :param id_field: the table's primary key column, to read the id back if the answer lacks it.
    """
    return BatchOperation(op_id, "PATCH", record_path(entity_set, key), body, upsert_headers(mode), id_field)


def bind(navigation_property: str, entity_set: str, record_id: str) -> dict[str, str]:
    """A lookup written with ``<navigation property>@odata.bind: /<entity set>(<id>)`` (Web API docs,
    "Associate table rows on create"). The name is the single-valued navigation property of the table
    written to, as its EntityType reference lists it (e.g. ``parentcustomerid_account`` of contact)."""
    return {f"{navigation_property}@odata.bind": f"/{record_path(entity_set, record_id)}"}


#: The email table's single-valued navigation property of its regarding record, by the record's entity set
#: (Web API EntityType reference "email": ``regardingobjectid_account_email`` -> account, relationship
#: ``Account_Emails``; ``regardingobjectid_contact_email`` -> contact, ``Contact_Emails``).
EMAIL_REGARDING = {"accounts": "regardingobjectid_account_email", "contacts": "regardingobjectid_contact_email"}
#: The activityparty table's navigation properties of the party, by the party's entity set.
ACTIVITY_PARTY = {
    "contacts": "partyid_contact",
    "accounts": "partyid_account",
    "systemusers": "partyid_systemuser",
}
#: The lookup annotation naming the table a lookup value points at (Web API "Lookup property data").
LOOKUP_LOGICAL_NAME = "Microsoft.Dynamics.CRM.lookuplogicalname"
#: The annotation of a column's formatted value (Web API "Formatted values").
FORMATTED_VALUE = "OData.Community.Display.V1.FormattedValue"


#: ``serviceendpoint.contract`` of a webhook; ``authtype`` options of one (ServiceEndpoint table reference,
#: learn.microsoft.com/power-apps/developer/data-platform/reference/entities/serviceendpoint).
WEBHOOK_CONTRACT = 8
AUTH_WEBHOOK_KEY, AUTH_HTTP_HEADER, AUTH_HTTP_QUERY_STRING = 4, 5, 6
#: ``sdkmessageprocessingstep``: stage PostOperation, mode Asynchronous, supporteddeployment Server Only
#: (SdkMessageProcessingStep table reference).
STAGE_POST_OPERATION, MODE_ASYNCHRONOUS, DEPLOYMENT_SERVER = 40, 1, 0


@dataclass(frozen=True)
class ServiceEndpoint:
    """A ``serviceendpoint`` row of contract Webhook. ``authvalue`` is never readable ("Register a WebHook":
    "Details about the authentication values set are in the AuthValue property and cannot be retrieved")."""

    serviceendpoint_id: str
    name: str
    url: str | None
    authtype: int | None


@dataclass(frozen=True)
class ProcessingStep:
    """A ``sdkmessageprocessingstep`` row: its message, message filter (table) and event handler by id."""

    step_id: str
    name: str
    sdkmessage_id: str | None
    sdkmessagefilter_id: str | None
    eventhandler_id: str | None
    stage: int
    mode: int


@dataclass(frozen=True)
class MessageFilter:
    """A ``sdkmessagefilter`` row: which message a table supports (``primaryobjecttypecode`` = logical name)."""

    sdkmessagefilter_id: str
    sdkmessage_id: str
    table: str


def http_header_auth(name: str, value: str) -> str:
    """The ``authvalue`` of HttpHeader authentication: ``<settings><setting name=".." value=".." /></settings>``
    (the format the Plug-in Registration tool writes; "Register a WebHook", Authentication options)."""
    from xml.sax.saxutils import quoteattr

    return f"<settings><setting name={quoteattr(name)} value={quoteattr(value)} /></settings>"


class DataverseHook(MicrosoftApiHook):
    """Reads and writes Dataverse tables over the Web API.

    :param dataverse_conn_id: the Airflow connection id (default ``dataverse_default``).
    """

    default_conn_name = "dataverse_default"
    conn_type = "dynamics_dataverse"
    hook_name = "Dynamics 365 Dataverse"
    max_page_size: ClassVar[int] = 5_000

    def __init__(self, dataverse_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(dataverse_conn_id or self.default_conn_name, **kwargs)

    def default_headers(self) -> dict[str, str]:
        return {
            "Accept": "application/json",
            "Content-Type": "application/json",
            "OData-MaxVersion": "4.0",
            "OData-Version": "4.0",
        }

    @cached_property
    def web_api_root(self) -> str:
        """Absolute URL of ``/api/data/v9.2/``."""
        return self.url(API_PATH)

    def metadata(self) -> bytes:
        """The Web API's CSDL ``$metadata`` document (XML)."""
        return self.request(
            "GET", f"{API_PATH}$metadata", entity_set="$metadata", headers={"Accept": "application/xml"}
        ).content

    def who_am_i(self) -> str:
        """The ``systemuserid`` of the application user this connection signs in as (``WhoAmI``)."""
        body = self.request_json("GET", f"{API_PATH}WhoAmI", entity_set="WhoAmI")
        if not body.get("UserId"):
            raise MalformedResponseError("WhoAmI answer without UserId", entity_set="WhoAmI")
        return str(body["UserId"])

    def probe(self) -> str:
        """``WhoAmI``: proves the application user exists in the organisation (the "Test" button)."""
        return f"signed in to {self.api_root} as application user {self.who_am_i()}"

    def query(
        self,
        entity_set: str,
        *,
        filter: str | None = None,
        select: list[str] | None = None,
        orderby: str | None = None,
        top: int | None = None,
        count: bool = False,
        annotations: list[str] | None = None,
        page_size: int = 5_000,
    ) -> Iterator[Page]:
        """Read ``entity_set`` page by page (``@odata.nextLink`` with its ``$skiptoken`` paging cookie; Dataverse
        has no ``$skip``) (Web API docs, "Page results using OData").

        :param filter: OData ``$filter`` (build it with :func:`~dynamics_jobqueue.hooks.microsoft.in_filter` etc.).
        :param count: ``$count=true``: the first page carries the number of matching rows (up to 5,000).
        :param annotations: ``Prefer: odata.include-annotations`` (e.g. :data:`LOOKUP_LOGICAL_NAME`).
        :param page_size: rows per page (``Prefer: odata.maxpagesize``, max 5,000).
        :raises ApiError: typed, on any error answer after retries.
        """
        params = odata_params(filter=filter, select=select, orderby=orderby, top=top, count=count)
        prefer = [f'odata.include-annotations="{",".join(annotations)}"'] if annotations else []
        yield from self.iter_collection(
            f"{API_PATH}{entity_set}",
            entity_set=entity_set,
            params=params,
            page_size=None if top is not None else page_size,
            prefer=prefer,
        )

    def iter_changes(
        self, entity_set: str, *, delta_link: str | None = None, select: list[str] | None = None
    ) -> Iterator[ChangePage]:
        """Read changes with change tracking (``Prefer: odata.track-changes``).

        Without ``delta_link`` the first read returns every row; with it, the rows created or changed since and
        the ids of deleted rows. The last page carries the new delta link.

        :raises ApiError: typed; an expired delta link answers with an error and needs a full read.
        """
        pages = self.iter_collection(
            delta_link or f"{API_PATH}{entity_set}",
            entity_set=entity_set,
            params=None if delta_link else odata_params(select=select),
            page_size=self.max_page_size,
            prefer=["odata.track-changes"],
        )
        for page in pages:
            change = ChangePage(delta_link=page.delta_link)
            for row in page.records:
                if str(row.get("@odata.context", "")).endswith("$deletedEntity") or row.get("reason") == "deleted":
                    if row.get("id"):
                        change.deleted_ids.append(str(row["id"]))
                else:
                    change.records.append(row)
            yield change

    def get(
        self,
        entity_set: str,
        key: str | Mapping[str, Any],
        *,
        select: list[str] | None = None,
        annotations: list[str] | None = None,
    ) -> dict:
        """Read one row by id or alternate key.

        :param annotations: ``Prefer: odata.include-annotations`` (e.g. :data:`FORMATTED_VALUE`, ``*``).
        :raises NotFoundError: when it does not exist.
        """
        headers = {"Prefer": f'odata.include-annotations="{",".join(annotations)}"'} if annotations else {}
        return self.request_json(
            "GET",
            API_PATH + record_path(entity_set, key),
            entity_set=entity_set,
            record_id=key_segment(key),
            params=odata_params(select=select),
            headers=headers,
        )

    def create(self, entity_set: str, body: dict[str, Any]) -> str:
        """Create a row (POST, 204 + ``OData-EntityId``). :return: the new row's GUID.

        :raises MalformedResponseError: when the answer names no created row.
        """
        response = self.request("POST", f"{API_PATH}{entity_set}", entity_set=entity_set, json=body)
        result = BatchResult("create", response.status_code, json_or_text(response), dict(response.headers))
        if not result.record_id:
            raise MalformedResponseError(
                f"HTTP {response.status_code} to a create without OData-EntityId", entity_set=entity_set
            )
        return result.record_id

    def upsert(
        self,
        entity_set: str,
        key: str | Mapping[str, Any],
        body: dict[str, Any],
        *,
        mode: UpsertMode = "upsert",
        etag: str | None = None,
    ) -> None:
        """Create or update a row by id or alternate key (PATCH); repeating it is harmless, so it is retried.

        :param mode: ``upsert`` (create or update), ``update`` (404 when missing), ``create`` (412 when present).
        :param etag: with ``update``, the row's ETag for optimistic concurrency (412 when stale).
        :raises NotFoundError: ``update`` of a missing row. :raises ConflictError: a stale ETag or an existing row.
        """
        self.request(
            "PATCH",
            API_PATH + record_path(entity_set, key),
            entity_set=entity_set,
            record_id=key_segment(key),
            idempotent=mode != "create",
            json=body,
            headers=upsert_headers(mode, etag),
        )

    # -- choice (option set) columns ---------------------------------------------------------------------------
    def option_set(self, entity: str, attribute: str) -> dict[int, str]:
        """The options of a choice column: ``value -> label`` (the user's language label, else the first).

        ``GET EntityDefinitions(LogicalName=...)/Attributes(LogicalName=...)/
        Microsoft.Dynamics.CRM.PicklistAttributeMetadata?$select=LogicalName&$expand=OptionSet($select=Options)``
        ("Query table definitions using the Web API", learn.microsoft.com/power-apps/developer/data-platform).

        :param entity: the table's logical name (``account``). :param attribute: the column (``paymenttermscode``).
        :raises MalformedResponseError: when the answer holds no ``OptionSet.Options``.
        """
        path = (
            f"{API_PATH}EntityDefinitions(LogicalName='{entity}')/Attributes(LogicalName='{attribute}')/"
            "Microsoft.Dynamics.CRM.PicklistAttributeMetadata"
        )
        body = self.request_json(
            "GET",
            path,
            params={"$select": "LogicalName", "$expand": "OptionSet($select=Options)"},
            entity_set="EntityDefinitions",
            record_id=f"{entity}.{attribute}",
        )
        options = (body.get("OptionSet") or {}).get("Options")
        if not isinstance(options, list):
            raise MalformedResponseError("attribute metadata without OptionSet.Options", entity_set="EntityDefinitions")
        result: dict[int, str] = {}
        for option in options:
            label = option.get("Label") or {}
            chosen: dict[str, Any] = label.get("UserLocalizedLabel") or next(
                iter(label.get("LocalizedLabels") or []), {}
            )
            result[int(option["Value"])] = str(chosen.get("Label") or "")
        return result

    def insert_option_value(self, entity: str, attribute: str, label: str, language: int = 1033) -> int:
        """Add an option to a choice column (``InsertOptionValue`` action); return its value (``NewOptionValue``).

        Not idempotent: a repeat adds a second option with the same label, so callers match labels first.
        """
        body = self.request_json(
            "POST",
            f"{API_PATH}InsertOptionValue",
            json={
                "EntityLogicalName": entity,
                "AttributeLogicalName": attribute,
                "Label": {"LocalizedLabels": [{"Label": label, "LanguageCode": language}]},
            },
            entity_set="InsertOptionValue",
        )
        if "NewOptionValue" not in body:
            raise MalformedResponseError("InsertOptionValue answer without NewOptionValue", entity_set=entity)
        return int(body["NewOptionValue"])

    def update_option_value(self, entity: str, attribute: str, value: int, label: str, language: int = 1033) -> None:
        """Relabel an option of a choice column (``UpdateOptionValue`` action, labels merged)."""
        self.request(
            "POST",
            f"{API_PATH}UpdateOptionValue",
            json={
                "EntityLogicalName": entity,
                "AttributeLogicalName": attribute,
                "Value": value,
                "Label": {"LocalizedLabels": [{"Label": label, "LanguageCode": language}]},
                "MergeLabels": True,
            },
            entity_set="UpdateOptionValue",
            idempotent=True,
        )

    # -- webhook registration ("Register a WebHook", learn.microsoft.com/power-apps/developer/data-platform/
    # register-web-hook; rows of the serviceendpoint and sdkmessageprocessingstep tables) ------------------------
    def webhook_endpoints(self, name: str | None = None) -> list[ServiceEndpoint]:
        """The service endpoints of contract Webhook (``contract eq 8``), optionally of one ``name``."""
        condition = f"contract eq {WEBHOOK_CONTRACT}" + (f" and name eq {_quoted(name)}" if name else "")
        rows = [
            r
            for page in self.query(
                "serviceendpoints", filter=condition, select=["serviceendpointid", "name", "url", "authtype"]
            )
            for r in page.records
        ]
        return [
            ServiceEndpoint(
                str(r["serviceendpointid"]).lower(), str(r.get("name") or ""), r.get("url"), r.get("authtype")
            )
            for r in rows
        ]

    def create_webhook_endpoint(self, name: str, url: str, header: str, secret: str) -> str:
        """Register a webhook (contract 8) posting to ``url`` with the HttpHeader ``header: secret``; its id.

        :raises ApiError: typed, e.g. 400 for a URL the service refuses (webhooks support only ports 80/443).
        """
        return self.create(
            "serviceendpoints",
            {
                "name": name,
                "contract": WEBHOOK_CONTRACT,
                "url": url,
                "authtype": AUTH_HTTP_HEADER,
                "authvalue": http_header_auth(header, secret),
                "messageformat": 2,  # Json (the only format a webhook sends)
            },
        )

    def update_webhook_endpoint(self, endpoint_id: str, url: str, header: str, secret: str) -> None:
        """Point a webhook at ``url`` with a new HttpHeader secret (the old one cannot be read back).

        :raises NotFoundError: when the endpoint was deleted.
        """
        self.upsert(
            "serviceendpoints",
            endpoint_id,
            {"url": url, "authtype": AUTH_HTTP_HEADER, "authvalue": http_header_auth(header, secret)},
            mode="update",
        )

    def webhook_steps(self, endpoint_id: str) -> list[ProcessingStep]:
        """The steps whose event handler is the service endpoint ``endpoint_id``."""
        select = [
            "sdkmessageprocessingstepid",
            "name",
            "stage",
            "mode",
            "_sdkmessageid_value",
            "_sdkmessagefilterid_value",
            "_eventhandler_value",
        ]
        out: list[ProcessingStep] = []
        for page in self.query(
            "sdkmessageprocessingsteps", filter=f"_eventhandler_value eq {endpoint_id}", select=select
        ):
            for r in page.records:
                out.append(
                    ProcessingStep(
                        str(r["sdkmessageprocessingstepid"]).lower(),
                        str(r.get("name") or ""),
                        _lower(r.get("_sdkmessageid_value")),
                        _lower(r.get("_sdkmessagefilterid_value")),
                        _lower(r.get("_eventhandler_value")),
                        int(r.get("stage") or 0),
                        int(r.get("mode") or 0),
                    )
                )
        return out

    def sdk_messages(self, names: Sequence[str]) -> dict[str, str]:
        """``message name -> sdkmessageid`` of the named messages (``Create``, ``Update``, ``Delete``)."""
        condition = " or ".join(f"name eq {_quoted(n)}" for n in names)
        return {
            str(r["name"]): str(r["sdkmessageid"]).lower()
            for page in self.query("sdkmessages", filter=condition, select=["sdkmessageid", "name"])
            for r in page.records
        }

    def message_filters(self, table: str) -> list[MessageFilter]:
        """The message filters of a table (``primaryobjecttypecode eq '<logical name>'``): one per message the
        table supports; a message without a filter cannot have a step on that table."""
        return [
            MessageFilter(str(r["sdkmessagefilterid"]).lower(), str(r["_sdkmessageid_value"]).lower(), table)
            for page in self.query(
                "sdkmessagefilters",
                filter=f"primaryobjecttypecode eq {_quoted(table)}",
                select=["sdkmessagefilterid", "_sdkmessageid_value", "primaryobjecttypecode"],
            )
            for r in page.records
        ]

    def create_webhook_step(
        self, name: str, endpoint_id: str, message_id: str, filter_id: str, *, rank: int = 1
    ) -> str:
        """Register an asynchronous PostOperation step of ``message_id`` on the filter's table, handled by the
        webhook ``endpoint_id``; successful system jobs are deleted (``asyncautodelete``). :return: its id."""
        return self.create(
            "sdkmessageprocessingsteps",
            {
                "name": name,
                "stage": STAGE_POST_OPERATION,
                "mode": MODE_ASYNCHRONOUS,
                "rank": rank,
                "supporteddeployment": DEPLOYMENT_SERVER,
                "asyncautodelete": True,
                "eventhandler_serviceendpoint@odata.bind": f"/serviceendpoints({endpoint_id})",
                "sdkmessageid@odata.bind": f"/sdkmessages({message_id})",
                "sdkmessagefilterid@odata.bind": f"/sdkmessagefilters({filter_id})",
            },
        )

    def table_names(self, entity_sets: Sequence[str]) -> dict[str, str]:
        """``entity set -> table logical name`` (``accounts`` -> ``account``) from the table definitions:
        ``GET EntityDefinitions?$select=LogicalName,EntitySetName&$filter=EntitySetName eq '...' or ...`` ("Query
        table definitions using the Web API"); one small answer rather than the whole ``$metadata``. Entity sets
        that name no table are missing from the result."""
        if not entity_sets:
            return {}
        body = self.request_json(
            "GET",
            f"{API_PATH}EntityDefinitions",
            params={
                "$select": "LogicalName,EntitySetName",
                "$filter": " or ".join(f"EntitySetName eq {_quoted(s)}" for s in entity_sets),
            },
            entity_set="EntityDefinitions",
        )
        rows = body.get("value")
        if not isinstance(rows, list):
            raise MalformedResponseError("EntityDefinitions answer without value", entity_set="EntityDefinitions")
        return {str(r["EntitySetName"]): str(r["LogicalName"]) for r in rows if r.get("EntitySetName")}

    def delete(self, entity_set: str, key: str | Mapping[str, Any]) -> None:
        """Delete a row. :raises NotFoundError: when it does not exist."""
        self.request(
            "DELETE", API_PATH + record_path(entity_set, key), entity_set=entity_set, record_id=key_segment(key)
        )

    def batch(
        self,
        ops: Sequence[BatchOperation],
        *,
        continue_on_error: bool = True,
        atomic: bool = False,
        idempotent: bool = False,
    ) -> list[BatchResult]:
        """Send operations as multipart ``$batch`` requests of at most 1,000.

        Every operation gets a result, in order: the part of the answer that belongs to it (by ``Content-ID``
        in a change set, else by position), 424 for an operation the service did not reach (without
        ``continue_on_error`` the batch stops at the first failure and answers 400), and with ``atomic`` every
        success of a change set that failed is reported as rolled back (424). A successful write answered
        without ``OData-EntityId`` (Microsoft's examples show such parts) gets its id from its path or by
        reading it back through ``id_field``; failing that it fails on its own (502), never the batch.

        :param ops: operations whose ``path`` is relative to the API root (``accounts(<guid>)``).
        :param continue_on_error: ``Prefer: odata.continue-on-error`` so one bad record does not stop the rest.
        :param atomic: one change set per request: all or nothing.
        :param idempotent: every operation is a keyed upsert, so a dropped batch may be sent again.
        :return: one result per operation, in order.
        :raises ApiError: when a whole batch request fails (auth, throttling after retries, a 4xx/5xx JSON
            error for the whole batch), naming ``$batch`` and the operations' entity set.
        """
        results: list[BatchResult] = []
        for start in range(0, len(ops), MAX_BATCH):
            chunk = list(ops[start : start + MAX_BATCH])
            content_type, payload = encode_multipart(chunk, self.web_api_root, atomic=atomic)
            headers = {"Content-Type": content_type, "Accept": "application/json"}
            if continue_on_error and not atomic:
                headers["Prefer"] = "odata.continue-on-error"
            entity_sets = sorted({op.entity_set for op in chunk})
            where = f"$batch of {','.join(entity_sets)}"
            response = self.request(
                "POST",
                f"{API_PATH}$batch",
                entity_set=where,
                headers=headers,
                data=payload,
                idempotent=idempotent,
                expected=(200, 400),
            )
            answer_type = response.headers.get("Content-Type")
            if batch_boundary(answer_type, response.content) is None:
                # The whole batch was refused (a JSON error body rather than multipart parts).
                raise error_for_status(response.status_code, json_or_text(response), entity_set=where)
            try:
                parts = decode_multipart(answer_type, response.content)
            except MalformedResponseError as exc:
                raise MalformedResponseError(exc.message, status=response.status_code, entity_set=where) from exc
            chunk_results = self._match_parts(chunk, parts, atomic=atomic)
            if atomic:
                chunk_results = roll_back(chunk, chunk_results)
            results.extend(self._with_record_ids(chunk, chunk_results))
        return results

    @staticmethod
    def _match_parts(ops: list[BatchOperation], parts: list[ResponsePart], *, atomic: bool) -> list[BatchResult]:
        """Pair each operation with its part: by ``Content-ID`` (change sets), else by position. A failed change
        set is answered with one error part without ``Content-ID``: it goes to the first operation (the others
        are then reported rolled back)."""
        by_content_id = {p.content_id: p for p in parts if p.content_id} if atomic else {}
        results: list[BatchResult] = []
        for index, op in enumerate(ops):
            positional = parts[index] if index < len(parts) else None
            part = by_content_id.get(str(index + 1)) if by_content_id else positional
            if part is None and atomic:
                results.append(failure(op, 424, "rolled back: the change set failed", code="RolledBack"))
            elif part is None:
                results.append(failure(op, 424, "not run: an earlier request in the batch failed", code="NotRun"))
            else:
                results.append(BatchResult(op.id, part.status, part.body, part.headers, op.entity_set))
        return results

    def _with_record_ids(self, ops: list[BatchOperation], results: list[BatchResult]) -> list[BatchResult]:
        """Give each successful write its record id, or fail that record alone."""
        resolved: list[BatchResult] = []
        for op, result in zip(ops, results, strict=True):
            if not result.ok or op.method in ("GET", "DELETE") or result.record_id:
                resolved.append(result)
                continue
            record_id = op.key_guid or self._read_back_id(op)
            if record_id:
                headers = {**result.headers, "OData-EntityId": f"{self.web_api_root}{op.entity_set}({record_id})"}
                resolved.append(BatchResult(op.id, result.status, result.body, headers, op.entity_set))
            else:
                resolved.append(
                    failure(
                        op,
                        502,
                        f"HTTP {result.status} to {op.method} {op.path} named no record (no OData-EntityId) "
                        "and the record could not be read back",
                        code="NoEntityId",
                    )
                )
        return resolved

    def _read_back_id(self, op: BatchOperation) -> str | None:
        if not op.id_field or op.key is None:
            return None
        try:
            row = self.request_json(
                "GET",
                f"{API_PATH}{op.path}",
                entity_set=op.entity_set,
                record_id=op.key,
                params=odata_params(select=[op.id_field]),
            )
        except ApiError:
            return None
        value = row.get(op.id_field)
        return str(value).lower() if value else None


def _quoted(value: str) -> str:
    """An OData string literal (quotes doubled)."""
    return "'" + value.replace("'", "''") + "'"


def _lower(value: Any) -> str | None:
    return str(value).lower() if value else None
