"""The Business Central API v2.0 emulation (plus the ``cronus/integration/v1.0`` custom API page).

URL layout, paging, ETag and error rules follow the API contract in
``/work/shared/reference/api-contracts.md`` (sources: MicrosoftDocs/dynamics365smb-devitpro-pb,
microsoft/ALAppExtensions Apps/W1/APIV2). Business rules that Business Central runs on insert and
modify and that a sync client can observe are emulated too:

- Code fields are upper-cased; text longer than the table field is refused
  (``Application_StringExceededLength``).
- Customer, vendor, item and contact numbers come from a number series when the client sends none.
- Relations are validated (currency, salesperson, unit of measure, item category, vendor, payment
  terms, shipment method, a person contact's company) and the ``...Id``/``...Code`` pairs kept in step.
- Creating a customer or vendor creates its company contact and business relation (marketing setup
  of CRONUS), and changes to name, address, phone and e-mail flow to that contact (CustCont-Update).
- A person contact's ``displayName`` is composed from, or broken down into, first/middle/last name.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from sandbox.api import (
    ApiError,
    ApiRequest,
    ApiResponse,
    bc_etag,
    correlation_id,
    etag_matches,
    project,
    query_page,
    timestamp,
)
from sandbox.metadata import csdl
from sandbox.odata import QueryError, parse_select
from sandbox.schema import BC_CUSTOM_SETS, BC_SETS, EMPTY_GUID, EntitySet
from sandbox.store import DuplicateKey, Row
from sandbox.webhooks import Webhooks

if TYPE_CHECKING:
    import sqlite3

    from sandbox.store import Store

LOG = logging.getLogger(__name__)
COMPANY_ID = "c0c05000-0000-4000-8000-000000000001"
COMPANY_NAME = "CRONUS UK Ltd."
STANDARD_API = "v2.0"
CUSTOM_API = "cronus/integration/v1.0"
#: Namespace of the stable seed ids: ``uuid5(ID_NAMESPACE, "<entitySet>:<business key>")``.
ID_NAMESPACE = uuid.UUID("5a0dbc00-0000-4000-8000-000000000000")
DEFAULT_PAGE = 20_000
MAX_BATCH = 100

#: Payment terms and shipment methods of the CRONUS company (tables the API does not expose).

#: Number series (BC No. Series) per entity set: prefix, step, width of the number part.
SERIES = {"customers": ("C", 10, 5), "vendors": ("V", 10, 5), "items": ("I", 10, 5), "contacts": ("CT", 1, 6)}

#: Customer/vendor fields that BC copies to the company contact (CustCont-Update / VendCont-Update).
MIRRORED = (
    "displayName",
    "addressLine1",
    "addressLine2",
    "city",
    "state",
    "country",
    "postalCode",
    "phoneNumber",
    "email",
    "website",
)

_SUBSCRIPTIONS = re.compile(r"^subscriptions(?:\((?P<key>[^)]*)\))?$")
_ENTITY_PATH = re.compile(r"^companies(?:\((?P<cid>[^)]*)\))?(?:/(?P<set>[A-Za-z]+)(?:\((?P<key>[^)]*)\))?)?$")


def stable_id(entity_set: str, key: str) -> str:
    """The seed id of a record: uuid5 of entity set and business key."""
    return str(uuid.uuid5(ID_NAMESPACE, f"{entity_set}:{key}"))


def error_body(code: str, message: str) -> dict[str, Any]:
    """Business Central's error shape."""
    return {"error": {"code": code, "message": f"{message} CorrelationId: {correlation_id()}."}}


def _bad(message: str, code: str = "BadRequest") -> ApiError:
    return ApiError(400, code, message)


class BusinessCentral:
    """Business Central's API for the one CRONUS company.

    :param store: the sandbox database.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.seeding = False
        self.webhooks = Webhooks(store, self._subscribable)

    def _subscribable(self, api: str, set_name: str) -> EntitySet | None:
        try:
            return self._sets(api).get(set_name)
        except ApiError:
            return None

    # -- HTTP entry points ------------------------------------------------------------------

    def handle(self, request: ApiRequest, api: str) -> ApiResponse:
        """Answer one request below ``api/<api>/`` (``v2.0`` or the custom API page).

        Errors come back as responses in BC's shape, never as exceptions.
        """
        try:
            if request.path == "$batch":
                return self.batch(request, api)
            match = _SUBSCRIPTIONS.match(request.path)
            if match:
                self._sets(api)
                return self.webhooks.handle(request, api, match.group("key"))
            if request.path == "$metadata":
                document = csdl(self._sets(api), "Microsoft.NAV", "NAV")
                return ApiResponse(200, document, {"Content-Type": "application/xml"})
            return self._dispatch(request, api)
        except ApiError as err:
            return ApiResponse(err.status, error_body(err.code, err.message), err.headers)
        except QueryError as err:
            return ApiResponse(400, error_body("BadRequest", str(err)))
        except Exception:
            # A sandbox bug: answer like the service would (500 in its error shape) and keep the traceback.
            LOG.exception("unexpected error answering %s %s", request.method, request.path)
            return ApiResponse(500, error_body("Internal_ServerError", "An unexpected error occurred."))

    def _sets(self, api: str) -> dict[str, EntitySet]:
        if api == STANDARD_API:
            return BC_SETS
        if api == CUSTOM_API:
            return BC_CUSTOM_SETS
        raise ApiError(404, "BadRequest_NotFound", f"No API is published at 'api/{api}'.")

    def _dispatch(self, request: ApiRequest, api: str) -> ApiResponse:
        sets = self._sets(api)
        match = _ENTITY_PATH.match(request.path)
        if match is None:
            raise ApiError(404, "BadRequest_NotFound", f"The request URI '{request.path}' is not valid.")
        cid, set_name, key = match.group("cid"), match.group("set"), match.group("key")
        if set_name is None:
            if request.method != "GET":
                raise ApiError(405, "BadRequest_MethodNotAllowed", f"'{request.method}' is not allowed here.")
            return self._companies(request, cid)
        if cid is None or cid.strip("'").lower() != COMPANY_ID:
            raise ApiError(404, "BadRequest_NotFound", f"The company '{cid}' does not exist.")
        entity = sets.get(set_name)
        if entity is None:
            raise ApiError(
                404, "BadRequest_NotFound", f"The request URI is not valid. The segment '{set_name}' is unknown."
            )
        if key is None:
            if request.method == "GET":
                return self._list(request, entity)
            if request.method == "POST":
                return self._post(request, entity)
            raise ApiError(
                405,
                "BadRequest_MethodNotAllowed",
                f"'{request.method}' requests for '{set_name}' of EdmType 'Collection' are not allowed.",
            )
        record_id = unquote(key).strip("'").lower()
        if not _is_guid(record_id):
            raise _bad(f"The key '{key}' is not a valid GUID.", "BadRequest_InvalidToken")
        if request.method == "GET":
            row = self._get_or_404(entity, record_id)
            select = parse_select(request.query.get("$select"), entity)
            body = {"@odata.context": self._context(request, entity) + "/$entity", **self.render(entity, row, select)}
            return ApiResponse(200, body, {"ETag": bc_etag(row.version)})
        if request.method == "PATCH":
            return self._patch(request, entity, record_id)
        if request.method == "DELETE":
            return self._delete(request, entity, record_id)
        raise ApiError(405, "BadRequest_MethodNotAllowed", f"'{request.method}' is not allowed on '{set_name}'.")

    def _companies(self, request: ApiRequest, cid: str | None) -> ApiResponse:
        company = {
            "id": COMPANY_ID,
            "systemVersion": "27.0.38460.40474",
            "timestamp": 1,
            "name": COMPANY_NAME,
            "displayName": COMPANY_NAME,
            "businessProfileId": "",
            "systemCreatedAt": "2026-01-01T00:00:00.000000Z",
            "systemCreatedBy": EMPTY_GUID,
            "systemModifiedAt": "2026-01-01T00:00:00.000000Z",
            "systemModifiedBy": EMPTY_GUID,
        }
        if cid is not None:
            if cid.strip("'").lower() != COMPANY_ID:
                raise ApiError(404, "BadRequest_NotFound", f"The company '{cid}' does not exist.")
            return ApiResponse(200, {"@odata.context": f"{request.root}$metadata#companies/$entity", **company})
        return ApiResponse(200, {"@odata.context": f"{request.root}$metadata#companies", "value": [company]})

    def _context(self, request: ApiRequest, entity: EntitySet) -> str:
        return f"{request.root}$metadata#companies({COMPANY_ID})/{entity.name}"

    def _list(self, request: ApiRequest, entity: EntitySet) -> ApiResponse:
        select = parse_select(request.query.get("$select"), entity)
        page = query_page(
            self.store, entity, request, default_page=DEFAULT_PAGE, max_page=DEFAULT_PAGE, allow_skip=True
        )
        body: dict[str, Any] = {"@odata.context": self._context(request, entity)}
        if page.count is not None:
            body["@odata.count"] = page.count
        body["value"] = [self.render(entity, row, select) for row in page.rows]
        if page.next_link:
            body["@odata.nextLink"] = page.next_link
        headers = {}
        if request.prefer.maxpagesize:
            headers["Preference-Applied"] = f"odata.maxpagesize={min(request.prefer.maxpagesize, DEFAULT_PAGE)}"
        return ApiResponse(200, body, headers)

    def render(self, entity: EntitySet, row: Row, select: list[str] | None = None) -> dict[str, Any]:
        """A record as the API returns it: ``@odata.etag`` then the (selected) properties, enum values with
        spaces XML-encoded as the API writes them (API v2.0 reference, "Get opportunities":
        ``"status": "In_x0020_Progress"``)."""
        body = project(row.body, select or entity.property_names())
        for name, value in body.items():
            if isinstance(value, str) and " " in value.strip() and entity.field_type(name) == "enum":
                body[name] = value.replace(" ", "_x0020_")
        return {"@odata.etag": bc_etag(row.version), **body}

    def _get_or_404(self, entity: EntitySet, record_id: str) -> Row:
        row = self.store.get(entity, record_id)
        if row is None:
            raise ApiError(
                404,
                "BadRequest_NotFound",
                f"The {entity.display} does not exist. Identification fields and values: SystemId='{record_id}'",
            )
        return row

    def _payload(self, request: ApiRequest) -> dict[str, Any]:
        try:
            payload = request.json_body()
        except ValueError as exc:
            raise _bad(f"Invalid Request Body: {exc}") from exc
        if not isinstance(payload, dict):
            raise _bad("Invalid Request Body: a JSON object is required.")
        return payload

    def _writable(self, entity: EntitySet) -> None:
        if entity.read_only:
            raise ApiError(405, "BadRequest_MethodNotAllowed", f"'{entity.name}' is read-only.")

    def _post(self, request: ApiRequest, entity: EntitySet) -> ApiResponse:
        self._writable(entity)
        payload = self._payload(request)
        with self.store.transaction() as db:
            row = self.create(db, entity, payload)
        url = f"{request.root}companies({COMPANY_ID})/{entity.name}({row.id})"
        body = {"@odata.context": self._context(request, entity) + "/$entity", **self.render(entity, row)}
        return ApiResponse(201, body, {"ETag": bc_etag(row.version), "Location": url})

    def _check_if_match(self, request: ApiRequest, row: Row) -> None:
        header = request.headers.get("if-match")
        if not header:
            raise _bad(
                "Could not validate the client concurrency token required by the service. "
                "Please provide a valid token in the client request.",
                "BadRequest_InvalidToken",
            )
        if not etag_matches(header, bc_etag(row.version)):
            raise ApiError(409, "Request_EntityChanged", "Another user has already changed the record.")

    def _patch(self, request: ApiRequest, entity: EntitySet, record_id: str) -> ApiResponse:
        self._writable(entity)
        payload = self._payload(request)
        with self.store.transaction() as db:
            row = self._get_or_404(entity, record_id)
            self._check_if_match(request, row)
            row = self.modify(db, entity, row, payload)
        body = {"@odata.context": self._context(request, entity) + "/$entity", **self.render(entity, row)}
        return ApiResponse(200, body, {"ETag": bc_etag(row.version)})

    def _delete(self, request: ApiRequest, entity: EntitySet, record_id: str) -> ApiResponse:
        self._writable(entity)
        with self.store.transaction() as db:
            row = self._get_or_404(entity, record_id)
            self._check_if_match(request, row)
            self.remove(db, entity, row)
        return ApiResponse(204)

    # -- $batch -----------------------------------------------------------------------------

    def batch(self, request: ApiRequest, api: str) -> ApiResponse:
        """The JSON ``$batch`` endpoint (OData JSON batch format, BC ``Isolation: snapshot``).

        Operations run in order. Without isolation each one commits on its own; with
        ``Isolation: snapshot`` all of them run in one transaction, and if any fails every change
        is rolled back and every operation is reported failed (the failing ones with their own
        error, the others with 424 Failed Dependency). ``dependsOn`` is honoured the same way.
        """
        if request.method != "POST":
            raise ApiError(405, "BadRequest_MethodNotAllowed", "$batch accepts only POST.")
        payload = self._payload(request)
        operations = payload.get("requests")
        if not isinstance(operations, list):
            raise _bad("Invalid batch request body: 'requests' must be an array.")
        if len(operations) > MAX_BATCH:
            raise _bad(
                f"The batch contains {len(operations)} operations; the maximum is {MAX_BATCH}.",
                "BadRequest_BatchTooLarge",
            )
        snapshot = request.headers.get("isolation", "").strip().lower() == "snapshot"
        responses: list[dict[str, Any]] = []
        status_by_id: dict[str, int] = {}

        def run(op: dict[str, Any]) -> dict[str, Any]:
            # An operation without "id" is answered with "id": null (Microsoft's example in "Using OData
            # transactional $batch requests"), so clients must match answers by position then.
            op_id = None if op.get("id") is None else str(op["id"])
            failed_dependency = [d for d in op.get("dependsOn") or [] if status_by_id.get(str(d), 200) >= 400]
            if failed_dependency:
                result = ApiResponse(
                    424, error_body("BadRequest_FailedDependency", f"Request {failed_dependency[0]} failed.")
                )
            else:
                result = self._run_operation(request, api, op)
            if op_id is not None:
                status_by_id[op_id] = result.status
            return _batch_response(op_id, result)

        if not snapshot:
            responses = [run(op) for op in operations]
            return ApiResponse(200, {"responses": responses})

        class _RollBack(Exception):
            pass

        # With Isolation: snapshot a failure reverts every change of the batch, yet the answer still reports each
        # operation's own status (200/204 for the ones that ran before the failure), as Microsoft's example shows.
        try:
            with self.store.transaction():
                responses = [run(op) for op in operations]
                if any(r["status"] >= 400 for r in responses):
                    raise _RollBack
        except _RollBack:
            pass
        return ApiResponse(200, {"responses": responses})

    def _run_operation(self, batch: ApiRequest, api: str, op: dict[str, Any]) -> ApiResponse:
        method = str(op.get("method", "GET")).upper()
        url = str(op.get("url", ""))
        parts = urlsplit(url)
        path = parts.path
        marker = f"/api/{api}/"
        if marker in path:
            path = path.split(marker, 1)[1]
        path = path.lstrip("/")
        query: dict[str, str] = {}
        if parts.query:
            for pair in parts.query.split("&"):
                name, _, value = pair.partition("=")
                query[unquote(name)] = unquote(value.replace("+", " "))
        headers = {str(k).lower(): str(v) for k, v in (op.get("headers") or {}).items()}
        body = op.get("body")
        inner = ApiRequest(
            method=method,
            path=path,
            query=query,
            headers=headers,
            body=b"" if body is None else json.dumps(body).encode(),
            caller=batch.caller,
            root=batch.root,
        )
        if inner.path == "$batch":
            return ApiResponse(400, error_body("BadRequest", "A batch cannot contain another batch."))
        # Through handle(), so that extensions wrapping it (documents.install) serve batched requests too.
        return self.handle(inner, api)

    # -- record writes (shared by HTTP, $batch and seeding) ---------------------------------

    def _validated(self, entity: EntitySet, payload: dict[str, Any]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, value in payload.items():
            if name.startswith("@"):
                continue
            spec = entity.fields.get(name)
            if spec is None:
                raise _bad(
                    f"The property '{name}' does not exist on type 'Microsoft.NAV.{entity.type_name}'. "
                    "Make sure to only use property names that are defined by the type."
                )
            if spec.read_only:
                continue
            values[name] = coerce(entity, name, value)
        return values

    def create(self, db: sqlite3.Connection, entity: EntitySet, payload: dict[str, Any]) -> Row:
        """Insert a record after BC's insert rules; returns it as stored.

        :raises ApiError: 400 on validation errors and duplicate business keys.
        """
        values = self._validated(entity, payload)
        body: dict[str, Any] = {name: spec.default for name, spec in entity.fields.items()}
        body.update(values)
        self._assign_number(db, entity, body)
        if not body.get("id"):
            key = body.get(entity.business_key or "")
            body["id"] = stable_id(entity.name, key) if self.seeding and key else str(uuid.uuid4())
        self._apply_rules(db, entity, body, set(values))
        row = self._write(db, entity, body, existing=None)
        self._after_write(db, entity, row, None, set(values))
        return row

    def modify(self, db: sqlite3.Connection, entity: EntitySet, row: Row, payload: dict[str, Any]) -> Row:
        """Apply a PATCH to a stored record after BC's modify rules.

        :raises ApiError: 400 on validation errors, duplicate keys or an attempt to change the id.
        """
        values = self._validated(entity, payload)
        if values.get("id", row.id) != row.id:
            raise _bad("The id of a record cannot be changed.")
        body = dict(row.body)
        body.update(values)
        self._apply_rules(db, entity, body, set(values))
        new = self._write(db, entity, body, existing=row)
        self._after_write(db, entity, new, row, set(values))
        return new

    def remove(self, db: sqlite3.Connection, entity: EntitySet, row: Row) -> None:
        """Delete a record (and the business relations that point at it)."""
        self.store.delete(db, entity, row.id, self.store.next_version(db))
        if entity.name in ("customers", "vendors"):
            self._drop_relations(db, "relatedId", row.id)
        elif entity.name == "contacts":
            self._drop_relations(db, "contactId", row.id)

    def _drop_relations(self, db: sqlite3.Connection, field: str, value: str) -> None:
        relations = BC_SETS["contactsInformation"]
        while (relation := self.store.find(relations, field, value)) is not None:
            self.store.delete(db, relations, relation.id, self.store.next_version(db))

    def _write(self, db: sqlite3.Connection, entity: EntitySet, body: dict[str, Any], existing: Row | None) -> Row:
        version = self.store.next_version(db)
        modified = timestamp()
        body["lastModifiedDateTime"] = modified
        bkey = body.get(entity.business_key) if entity.business_key else None
        try:
            if existing is None:
                self.store.insert(db, entity, body["id"], bkey, version, modified, body)
            else:
                self.store.update(db, entity, existing.id, bkey, version, modified, body)
        except DuplicateKey as exc:
            if exc.column == "id":
                raise _bad(
                    f"The record already exists. Identification fields and values: SystemId='{body['id']}'",
                    "Internal_EntityWithSameKeyExists",
                ) from exc
            label = {"code": "Code", "number": "No."}.get(entity.business_key or "", "Key")
            raise _bad(
                f"The record in table {entity.display} already exists. "
                f"Identification fields and values: {label}='{bkey}'",
                "Internal_EntityWithSameKeyExists",
            ) from exc
        seq = existing.seq if existing else 0
        return Row(seq, body["id"], bkey, version, modified, body)

    def _assign_number(self, db: sqlite3.Connection, entity: EntitySet, body: dict[str, Any]) -> None:
        key = entity.business_key
        if key is None or body.get(key):
            return
        series = SERIES.get(entity.name)
        if series is None:
            raise _bad(f"The field {key} of table {entity.display} must have a value.", "Application_DialogException")
        prefix, step, width = series
        body[key] = f"{prefix}{self.store.next_number(db, entity.name) * step:0{width}d}"

    def _lookup(self, set_name: str, code: str) -> Row | None:
        return self.store.get_by_key(BC_SETS[set_name], code)

    def _relation_error(self, entity: EntitySet, field_caption: str, value: str, table: str) -> ApiError:
        return _bad(
            f"The field {field_caption} of table {entity.display} contains a value ({value}) that cannot "
            f"be found in the related table ({table}).",
            "Application_DialogException",
        )

    def _pair(
        self,
        entity: EntitySet,
        body: dict[str, Any],
        changed: set[str],
        code_field: str,
        id_field: str,
        target: str,
        caption: str,
    ) -> None:
        """Keep an ``...Id``/``...Code`` pair consistent; the one the client sent wins."""
        target_set = BC_SETS[target]
        if id_field in changed:
            if body[id_field] == EMPTY_GUID:
                body[code_field] = ""
                return
            row = self.store.get(target_set, body[id_field])
            if row is None:
                raise self._relation_error(entity, caption, body[id_field], target_set.display)
            body[code_field] = row.bkey
        elif code_field in changed or (self.seeding and body.get(code_field)):
            if not body[code_field]:
                body[id_field] = EMPTY_GUID
                return
            row = self._lookup(target, body[code_field])
            if row is None:
                raise self._relation_error(entity, caption, body[code_field], target_set.display)
            body[id_field] = row.id

    def _apply_rules(self, db: sqlite3.Connection, entity: EntitySet, body: dict[str, Any], changed: set[str]) -> None:
        name = entity.name
        if name in ("customers", "vendors"):
            self._pair(entity, body, changed, "currencyCode", "currencyId", "currencies", "Currency Code")
            self._pair(
                entity, body, changed, "paymentTermsCode", "paymentTermsId", "paymentTerms", "Payment Terms Code"
            )
        if name == "customers":
            self._pair(
                entity,
                body,
                changed,
                "shipmentMethodCode",
                "shipmentMethodId",
                "shipmentMethods",
                "Shipment Method Code",
            )
            code = body.get("salespersonCode")
            if code and self._lookup("salespeoplePurchasers", code) is None:
                raise self._relation_error(entity, "Salesperson Code", code, "Salesperson/Purchaser")
        if name == "items":
            self._pair(
                entity,
                body,
                changed,
                "baseUnitOfMeasureCode",
                "baseUnitOfMeasureId",
                "unitsOfMeasure",
                "Base Unit of Measure",
            )
            self._pair(
                entity, body, changed, "itemCategoryCode", "itemCategoryId", "itemCategories", "Item Category Code"
            )
            vendor = body.get("vendorNumber")
            if vendor and self._lookup("vendors", vendor) is None:
                raise self._relation_error(entity, "Vendor No.", vendor, "Vendor")
        if name == "resources":
            uom = body.get("baseUnitOfMeasureCode")
            if uom and self._lookup("unitsOfMeasure", uom) is None:
                raise self._relation_error(entity, "Base Unit of Measure", uom, "Unit of Measure")
        if name == "contacts":
            self._contact_rules(entity, body, changed)

    def _contact_rules(self, entity: EntitySet, body: dict[str, Any], changed: set[str]) -> None:
        parts = ("firstName", "middleName", "lastName")
        if body["type"] == "Person":
            if changed & set(parts) and "displayName" not in changed:
                body["displayName"] = " ".join(body[p] for p in parts if body.get(p))
            elif "displayName" in changed and not changed & set(parts):
                words = body["displayName"].split()
                body["firstName"] = words[0] if words else ""
                body["lastName"] = words[-1] if len(words) > 1 else ""
                body["middleName"] = " ".join(words[1:-1])
            company_number = body.get("companyNumber") or ""
            if company_number:
                company = self._lookup("contacts", company_number)
                if company is None or company.body.get("type") != "Company":
                    raise self._relation_error(entity, "Company No.", company_number, "Contact")
                body["companyName"] = company.body["displayName"]
            else:
                body["companyName"] = ""
        else:
            body["companyNumber"] = body["number"]
            body["companyName"] = body["displayName"]
        body["searchName"] = body["displayName"].upper()[:100]

    def _after_write(
        self, db: sqlite3.Connection, entity: EntitySet, row: Row, old: Row | None, changed: set[str]
    ) -> None:
        if entity.name in ("customers", "vendors"):
            related_type = "Customer" if entity.name == "customers" else "Vendor"
            if old is None:
                self._create_company_contact(db, row, related_type)
            elif changed & set(MIRRORED):
                relation = self.store.find(BC_SETS["contactsInformation"], "relatedId", row.id)
                contact = self.store.get(BC_SETS["contacts"], relation.body["contactId"]) if relation else None
                if contact is not None:
                    update = {f: row.body[f] for f in MIRRORED if row.body[f] != contact.body.get(f)}
                    if update:
                        self.modify(db, BC_SETS["contacts"], contact, update)
        if entity.name == "contacts" and old is not None and row.body["type"] == "Company":
            renamed = old.body["displayName"] != row.body["displayName"]
            if renamed:
                self._rename_company(db, row)

    def _create_company_contact(self, db: sqlite3.Connection, source: Row, related_type: str) -> None:
        contacts = BC_SETS["contacts"]
        payload = {f: source.body[f] for f in MIRRORED}
        payload["type"] = "Company"
        contact = self.create(db, contacts, payload)
        relations = BC_SETS["contactsInformation"]
        relation = {
            "id": stable_id("contactsInformation", f"{contact.id}:{source.id}"),
            "contactId": contact.id,
            "contactNumber": contact.body["number"],
            "contactName": contact.body["displayName"],
            "contactType": "Company",
            "relatedId": source.id,
            "relatedType": related_type,
        }
        self._write(db, relations, {**{n: s.default for n, s in relations.fields.items()}, **relation}, None)

    def _rename_company(self, db: sqlite3.Connection, company: Row) -> None:
        contacts = BC_SETS["contacts"]
        where = "json_extract(body, '$.companyNumber') = ? AND json_extract(body, '$.type') = 'Person'"
        after: list[Any] | None = None
        while rows := self.store.page(contacts, where, [company.bkey], [], after, 500):
            for person in rows:
                body = {**person.body, "companyName": company.body["displayName"]}
                self._write(db, contacts, body, person)
            after = [rows[-1].seq]
        relations = BC_SETS["contactsInformation"]
        relation = self.store.find(relations, "contactId", company.id)
        if relation is not None:
            self._write(db, relations, {**relation.body, "contactName": company.body["displayName"]}, relation)


def _batch_response(op_id: str | None, result: ApiResponse) -> dict[str, Any]:
    headers = dict(result.headers)
    if result.body is not None:
        headers.setdefault("content-type", "application/json; odata.metadata=minimal")
    answer: dict[str, Any] = {"id": op_id, "status": result.status, "headers": headers}
    if result.body is not None:
        answer["body"] = result.body
    return answer


_GUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _is_guid(value: str) -> bool:
    return bool(_GUID_RE.match(value))


def coerce(entity: EntitySet, name: str, value: Any) -> Any:
    """Check a written value against the property type (BC rules) and normalise it.

    :raises ApiError: 400 when the value does not fit (type, enum member, GUID, text length).
    """
    spec = entity.fields[name]
    kind = spec.type
    edm = {
        "string": "Edm.String",
        "code": "Edm.String",
        "int": "Edm.Int32",
        "decimal": "Edm.Decimal",
        "bool": "Edm.Boolean",
        "guid": "Edm.Guid",
        "date": "Edm.Date",
        "datetime": "Edm.DateTimeOffset",
        "enum": f"Microsoft.NAV.{name}",
    }[kind]
    wrong = _bad(f"Cannot convert the literal '{value}' to the expected type '{edm}'.")
    if kind in ("string", "code"):
        if not isinstance(value, str):
            raise wrong
        if spec.maxlen is not None and len(value) > spec.maxlen:
            raise _bad(
                f"The length of the string is {len(value)}, but it must be less than or equal to "
                f"{spec.maxlen} characters. Value: {value}",
                "Application_StringExceededLength",
            )
        return value.upper() if kind == "code" else value
    if kind in ("int", "decimal"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise wrong
        return int(value) if kind == "int" else value
    if kind == "bool":
        if not isinstance(value, bool):
            raise wrong
        return value
    if kind == "guid":
        if not isinstance(value, str) or not _is_guid(value.lower()):
            raise wrong
        return value.lower()
    if kind == "enum":
        if isinstance(value, str):
            value = value.replace("_x0020_", " ")  # the encoded name the API itself answers with
        if value not in (spec.enum or ()):
            raise wrong
        return value
    if kind == "date":
        if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise wrong
        return value
    return value
