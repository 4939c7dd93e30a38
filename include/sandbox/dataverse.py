"""The Dataverse Web API v9.2 emulation (the Dynamics 365 Sales tables the integration uses).

Rules follow the API contract in ``/work/shared/reference/api-contracts.md`` (source:
MicrosoftDocs/powerapps-docs, "Use the Dataverse Web API"): lookups written with ``@odata.bind`` and read
back as ``_<attribute>_value``; create answers 204 + ``OData-EntityId`` (201 + body with
``Prefer: return=representation``); PATCH is an upsert whose ``If-Match``/``If-None-Match`` headers make
it update-only or create-only; ``versionnumber`` is the row version and the ETag; change tracking
returns ``@odata.deltaLink`` and ``$deletedEntity`` entries; ``$batch`` is multipart/mixed with atomic
change sets. Server-maintained columns (``createdon``, ``modifiedon``, ``_createdby_value``,
``_modifiedby_value``, ``versionnumber``, ``fullname``) ignore client values.

Date-times are rendered to the second (``2026-05-01T10:15:00Z``), as Dataverse stores them; several
writes within one second therefore share a ``modifiedon``.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from sandbox.api import (
    ApiError,
    ApiRequest,
    ApiResponse,
    dataverse_etag,
    decode_token,
    encode_token,
    etag_matches,
    link,
    now,
    query_page,
)
from sandbox.dataverse_errors import BAD_REQUEST, json_object
from sandbox.dataverse_errors import bad_request as _bad
from sandbox.dataverse_webhooks import DataverseWebhooks
from sandbox.metadata import csdl, entity_definitions
from sandbox.odata import QueryError, format_datetime, parse_select
from sandbox.optionsets import ATTRIBUTE_PATH, OptionSets
from sandbox.schema import DATAVERSE_OWNED, DATAVERSE_REQUIRED_LOOKUPS, DATAVERSE_SETS, EntitySet
from sandbox.store import DuplicateKey, Row

if TYPE_CHECKING:
    import sqlite3

    from sandbox.api import Caller
    from sandbox.multipart import PartRequest
    from sandbox.store import Store

LOG = logging.getLogger(__name__)
ROOT_PATH = "/dataverse/api/data/v9.2/"
ORGANIZATION_ID = "0c0e5000-0000-4000-8000-00000000d001"
BUSINESS_UNIT_ID = "0c0e5000-0000-4000-8000-00000000b001"
#: Namespace of the stable seed ids: ``uuid5(ID_NAMESPACE, "<entityset>:<key>")``.
ID_NAMESPACE = uuid.UUID("5a0d0e00-0000-4000-8000-000000000000")
MAX_PAGE = 5_000
MAX_BATCH = 1_000
DELTA_TOKEN_DAYS = 7

NOT_FOUND = "0x80040217"
DUPLICATE_ALTERNATE_KEY = "0x80060892"
DUPLICATE_RECORD = "0x80040237"
VERSION_MISMATCH = "0x80060882"
LENGTH_EXCEEDED = "0x80044331"
#: A choice (option set) value that is not one of the column's options.
OUT_OF_RANGE = "0x8004431a"
EXPIRED_VERSION_STAMP = "0x80044352"
#: A statuscode that does not belong to the record's statecode.
INVALID_STATUS = "0x80048408"

#: State (statecode) -> its Status Reasons (statuscode), the first the state's default, per table whose state the
#: sandbox checks. Product: Active 0 (Active 1), Retired 1 (Retired 2), Draft 2 (Draft 0), Under Revision 3
#: (Under Revision 3) (Product table reference; Business Central's "CRM Product" table has the same options).
STATE_STATUSES: dict[str, dict[int, tuple[int, ...]]] = {"products": {0: (1,), 1: (2,), 2: (0,), 3: (3,)}}
_STATE_NAMES = {"products": ("ProductState", {0: "Active", 1: "Retired", 2: "Draft", 3: "UnderRevision"})}

_SET_PATH = re.compile(r"^(?P<set>[A-Za-z_]+)(?:\((?P<key>.*)\))?(?P<count>/\$count)?$")
# The paging cookie Dataverse puts in $skiptoken ("Page results using OData"):
# <cookie pagenumber="2" pagingcookie="..." istracking="False" />; the sandbox keeps its own state in pagingcookie.
_PAGING_COOKIE = re.compile(
    r'^<cookie pagenumber="(?P<page>\d+)" pagingcookie="(?P<state>[^"]*)" istracking="False" />$'
)
_GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_CONTENT_ID_URL = re.compile(r"^\$([A-Za-z0-9_.-]+)")
_CONTENT_ID_VALUE = re.compile(r'"\$([A-Za-z0-9_.-]+)"')
_BIND_RE = re.compile(r"^(?:https?://[^/]+)?(?:/dataverse)?(?:/api/data/v9\.2)?/?(?P<set>[A-Za-z_]+)\((?P<key>.+)\)$")
_FORMATTED = "OData.Community.Display.V1.FormattedValue"
_NAVIGATION = "Microsoft.Dynamics.CRM.associatednavigationproperty"
_LOGICAL_NAME = "Microsoft.Dynamics.CRM.lookuplogicalname"
#: The primary name column of each table: a lookup's formatted value.
_PRIMARY_NAME = {
    "accounts": "name",
    "contacts": "fullname",
    "systemusers": "fullname",
    "transactioncurrencies": "currencyname",
    "uoms": "name",
    "uomschedules": "name",
    "products": "name",
    "emails": "subject",
    "tasks": "subject",
    "appointments": "subject",
}


def _annotation_wanted(preference: str, annotation: str) -> bool:
    """Whether ``odata.include-annotations=<preference>`` asks for ``annotation`` (``*`` and ``prefix.*``)."""
    for pattern in preference.strip('"').split(","):
        pattern = pattern.strip()
        if pattern == "*" or pattern == annotation:
            return True
        if pattern.endswith(".*") and annotation.startswith(pattern[:-1]):
            return True
    return False


def stable_id(entity_set: str, key: str) -> str:
    return str(uuid.uuid5(ID_NAMESPACE, f"{entity_set}:{key}"))


def error_body(code: str, message: str) -> dict[str, Any]:
    """Dataverse's error shape."""
    return {"error": {"code": code, "message": message}}


def seconds(value: datetime) -> tuple[str, str]:
    """A write time as Dataverse renders it (to the second) and as the store orders it."""
    truncated = value.replace(microsecond=0)
    return truncated.strftime("%Y-%m-%dT%H:%M:%SZ"), format_datetime(truncated)


class Dataverse:
    """The Dataverse organisation of the sandbox.

    :param store: the sandbox database.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.seeding = False
        self.option_sets = OptionSets(store)
        self.webhooks = DataverseWebhooks(
            store, list(dict.fromkeys(e.type_name for e in DATAVERSE_SETS.values())), ORGANIZATION_ID, BUSINESS_UNIT_ID
        )

    # -- HTTP entry points ------------------------------------------------------------------

    def handle(self, request: ApiRequest) -> ApiResponse:
        """Answer one request below ``/dataverse/api/data/v9.2/``; errors come back as responses."""
        try:
            if request.path == "$batch":
                return self.batch(request)
            if request.path == "$metadata":
                document = csdl(DATAVERSE_SETS, "Microsoft.Dynamics.CRM", "System")
                return ApiResponse(200, document, {"Content-Type": "application/xml"})
            return self._dispatch(request)
        except ApiError as err:
            return ApiResponse(err.status, error_body(err.code, err.message), err.headers)
        except QueryError as err:
            return ApiResponse(400, error_body(BAD_REQUEST, str(err)))
        except Exception:
            # A sandbox bug: answer like the service would (500 in its error shape) and keep the traceback.
            LOG.exception("unexpected error answering %s %s", request.method, request.path)
            return ApiResponse(500, error_body("0x80040216", "An unexpected error occurred."))

    def _dispatch(self, request: ApiRequest) -> ApiResponse:
        if request.caller.systemuserid is None:
            raise ApiError(403, "0x80072560", "The user is not a member of the organization.")
        if request.path in ("WhoAmI", "WhoAmI()"):
            if request.method != "GET":
                raise ApiError(405, BAD_REQUEST, "WhoAmI is a function; use GET.")
            return ApiResponse(
                200,
                {
                    "@odata.context": f"{request.root}$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",
                    "BusinessUnitId": BUSINESS_UNIT_ID,
                    "UserId": request.caller.systemuserid,
                    "OrganizationId": ORGANIZATION_ID,
                },
            )
        if self.webhooks.handles(request.path):
            return self.webhooks.handle(request)
        if request.path == "EntityDefinitions":
            if request.method != "GET":
                raise ApiError(405, BAD_REQUEST, f"'{request.method}' is not allowed on EntityDefinitions.")
            return ApiResponse(200, entity_definitions(request.root, request.query, DATAVERSE_SETS))
        option_answer = self._option_sets(request)
        if option_answer is not None:
            return option_answer
        match = _SET_PATH.match(request.path)
        entity = DATAVERSE_SETS.get(match.group("set")) if match else None
        if match is None or entity is None:
            segment = request.path.split("(")[0].split("/")[0]
            raise ApiError(404, BAD_REQUEST, f"Resource not found for the segment '{segment}'.")
        for option in ("$expand", "$apply", "fetchXml", "$search"):
            if option in request.query:
                raise _bad(f"The query option {option} is not supported by the sandbox.")
        key = match.group("key")
        if match.group("count"):
            if key is not None or request.method != "GET":
                raise _bad("$count is a GET of a collection.")
            # "Count rows using OData": /<set>/$count answers the bare number as text/plain.
            query = {k: v for k, v in request.query.items() if k == "$filter"}
            counted = query_page(
                self.store,
                entity,
                replace(request, query={**query, "$count": "true"}),
                default_page=1,
                max_page=1,
                allow_skip=False,
            )
            return ApiResponse(200, str(counted.count).encode(), {"Content-Type": "text/plain"})
        if key is None:
            if request.method == "GET":
                return self._list(request, entity)
            if request.method == "POST":
                return self._post(request, entity)
            raise ApiError(405, BAD_REQUEST, f"'{request.method}' is not allowed on a collection.")
        if request.method == "GET":
            row = self._resolve(entity, key)
            if row is None:
                raise self._not_found(entity, key)
            etag = dataverse_etag(row.version)
            if request.headers.get("if-none-match", "").strip() == etag:
                # "Perform conditional operations using the Web API": unchanged since that ETag -> 304, no body.
                return ApiResponse(304, None, {"ETag": etag})
            select = parse_select(request.query.get("$select"), entity)
            body = {
                "@odata.context": f"{request.root}$metadata#{entity.name}/$entity",
                **self.render(entity, row, select, request.prefer.include_annotations),
            }
            return ApiResponse(200, body, {"ETag": etag})
        if request.method == "PATCH":
            return self._upsert(request, entity, key)
        if request.method == "DELETE":
            return self._delete(request, entity, key)
        raise ApiError(405, BAD_REQUEST, f"'{request.method}' is not allowed on '{entity.name}'.")

    def _option_sets(self, request: ApiRequest) -> ApiResponse | None:
        """Choice column metadata and the InsertOptionValue / UpdateOptionValue actions (:mod:`sandbox.optionsets`)."""
        attribute = ATTRIBUTE_PATH.match(request.path)
        if attribute is not None:
            if request.method != "GET":
                raise ApiError(405, BAD_REQUEST, f"'{request.method}' is not allowed on attribute metadata.")
            body = self.option_sets.attribute(request.root, attribute.group("entity"), attribute.group("attribute"))
            return ApiResponse(200, body)
        if request.path not in ("InsertOptionValue", "UpdateOptionValue"):
            return None
        if request.method != "POST":
            raise ApiError(405, BAD_REQUEST, f"{request.path} is an action; use POST.")
        payload = json_object(request)
        if request.path == "UpdateOptionValue":
            self.option_sets.update(payload)
            return ApiResponse(204, None)
        value = self.option_sets.insert(payload)
        return ApiResponse(
            200,
            {
                "@odata.context": f"{request.root}$metadata#Microsoft.Dynamics.CRM.InsertOptionValueResponse",
                "NewOptionValue": value,
            },
        )

    # -- keys -------------------------------------------------------------------------------

    def _parse_key(self, entity: EntitySet, key: str) -> tuple[str, str]:
        """``("id", guid)`` or ``("alt", value)`` from a key predicate such as ``accountnumber='10000'``.

        :raises ApiError: 400 for a malformed key or a property that is not the alternate key.
        """
        text = unquote(key).strip()
        if _GUID_RE.match(text):
            return "id", text.lower()
        name, sep, value = text.partition("=")
        name = name.strip()
        value = value.strip()
        if sep and name == entity.key and _GUID_RE.match(value):
            return "id", value.lower()
        if sep and name == entity.business_key and len(value) >= 2 and value[0] == value[-1] == "'":
            return "alt", value[1:-1].replace("''", "'")
        raise _bad(f"The key '{text}' is not a valid key of '{entity.type_name}'.")

    def _resolve(self, entity: EntitySet, key: str) -> Row | None:
        kind, value = self._parse_key(entity, key)
        return self.store.get(entity, value) if kind == "id" else self.store.get_by_key(entity, value)

    def _not_found(self, entity: EntitySet, key: str) -> ApiError:
        return ApiError(404, NOT_FOUND, f"{entity.type_name} With Id = {unquote(key)} Does Not Exist")

    # -- reads ------------------------------------------------------------------------------

    def render(
        self, entity: EntitySet, row: Row, select: list[str] | None = None, annotations: str | None = None
    ) -> dict[str, Any]:
        """A row as the Web API returns it: ``@odata.etag``, the (selected) columns, always the key.

        With ``Prefer: odata.include-annotations``, a lookup value comes with the annotations Microsoft's
        examples show before it ("Web API Basic Operations Sample"): ``@OData.Community.Display.V1.FormattedValue``
        (the target's primary name), ``@Microsoft.Dynamics.CRM.associatednavigationproperty`` and
        ``@Microsoft.Dynamics.CRM.lookuplogicalname``.
        """
        names = entity.property_names() if select is None else [entity.key, *(n for n in select if n != entity.key)]
        out: dict[str, Any] = {"@odata.etag": dataverse_etag(row.version)}
        lookup_types: dict[str, str] = row.body.get("__lookup_types", {})
        for name in names:
            value = row.body.get(name)
            if annotations and value and name.startswith("_") and name.endswith("_value"):
                out.update(self._lookup_annotations(entity, name[1:-6], str(value), lookup_types, annotations))
            out[name] = value
        return out

    def _lookup_annotations(
        self, entity: EntitySet, attribute: str, value: str, lookup_types: dict[str, str], wanted: str
    ) -> dict[str, Any]:
        logical = lookup_types.get(attribute)
        lookup = entity.lookups.get(attribute)
        if not logical or lookup is None:
            return {}
        field = f"_{attribute}_value"
        nav = next(
            (n for n, s in lookup.targets.items() if s in DATAVERSE_SETS and DATAVERSE_SETS[s].type_name == logical),
            None,
        )
        out: dict[str, Any] = {}
        if _annotation_wanted(wanted, _FORMATTED) and nav is not None:
            target = DATAVERSE_SETS[lookup.targets[nav]]
            row = self.store.get(target, value)
            name_column = _PRIMARY_NAME.get(target.name)
            if row is not None and name_column:
                out[f"{field}@{_FORMATTED}"] = row.body.get(name_column)
        if _annotation_wanted(wanted, _NAVIGATION) and nav is not None:
            out[f"{field}@{_NAVIGATION}"] = nav
        if _annotation_wanted(wanted, _LOGICAL_NAME):
            out[f"{field}@{_LOGICAL_NAME}"] = logical
        return out

    def _list(self, request: ApiRequest, entity: EntitySet) -> ApiResponse:
        prefs = request.prefer
        select = parse_select(request.query.get("$select"), entity)
        tracking = prefs.track_changes or "$deltatoken" in request.query
        if tracking:
            for option in ("$filter", "$orderby", "$top", "$skip"):
                if option in request.query:
                    raise _bad(f"The query option {option} is not supported with change tracking.")
        page_number = 1
        cookie = _PAGING_COOKIE.match(request.query.get("$skiptoken", ""))
        if cookie:
            page_number = int(cookie.group("page"))
            request = replace(request, query={**request.query, "$skiptoken": cookie.group("state")})
        skiptoken = request.query.get("$skiptoken")
        state = decode_token(skiptoken) if skiptoken else {}
        if "$deltatoken" in request.query:
            body = self._delta(request, entity, select, state)
        elif tracking or "u" in state:
            body = self._tracked_initial(request, entity, select, state)
        else:
            page = query_page(self.store, entity, request, default_page=MAX_PAGE, max_page=MAX_PAGE, allow_skip=False)
            body = {"@odata.context": self._context(request, entity, select)}
            if page.count is not None:
                body["@odata.count"] = page.count
            body["value"] = [self.render(entity, row, select, prefs.include_annotations) for row in page.rows]
            if page.next_link:
                token = parse_qs(urlsplit(page.next_link).query)["$skiptoken"][0]
                paging_cookie = f'<cookie pagenumber="{page_number + 1}" pagingcookie="{token}" istracking="False" />'
                # encoded as Microsoft's example shows it: $skiptoken=%3Ccookie%20pagenumber=%222%22%20pagingcookie=...
                base = link(request.root, entity.name, request.query)
                separator = "&" if "?" in base else "?"
                body["@odata.nextLink"] = f"{base}{separator}$skiptoken={quote(paging_cookie, safe='=/')}"
        applied = []
        if prefs.maxpagesize:
            applied.append(f"odata.maxpagesize={min(prefs.maxpagesize, MAX_PAGE)}")
        if prefs.track_changes:
            applied.append("odata.track-changes")
        if prefs.include_annotations:
            applied.append(f'odata.include-annotations="{prefs.include_annotations}"')
        return ApiResponse(200, body, {"Preference-Applied": ",".join(applied)} if applied else {})

    def _context(self, request: ApiRequest, entity: EntitySet, select: list[str] | None) -> str:
        columns = f"({','.join(select)})" if select else ""
        return f"{request.root}$metadata#{entity.name}{columns}"

    def _page_size(self, request: ApiRequest) -> int:
        return min(request.prefer.maxpagesize or MAX_PAGE, MAX_PAGE) or MAX_PAGE

    def _delta_link(self, request: ApiRequest, entity: EntitySet, version: int) -> str:
        stamp = now().strftime("%m/%d/%Y %H:%M:%S")
        query = {k: v for k, v in request.query.items() if k == "$select"}
        return link(request.root, entity.name, query, **{"$deltatoken": f"{version}!{stamp}"})

    def _tracked_initial(
        self, request: ApiRequest, entity: EntitySet, select: list[str] | None, state: dict[str, Any]
    ) -> dict[str, Any]:
        """The first answer of change tracking: every row, paged, then a delta link.

        The delta link's version is taken when the first page is read, so rows changed while the
        client pages are reported again by the next delta rather than lost.
        """
        upto = int(state.get("u", self.store.current_version()))
        size = self._page_size(request)
        rows = self.store.page(entity, "", [], [], state.get("a"), size + 1)
        body: dict[str, Any] = {"@odata.context": self._context(request, entity, select)}
        body["value"] = [self.render(entity, r, select, request.prefer.include_annotations) for r in rows[:size]]
        if len(rows) > size:
            token = encode_token({"a": [rows[size - 1].seq], "u": upto})
            query = {k: v for k, v in request.query.items() if k == "$select"}
            body["@odata.nextLink"] = link(request.root, entity.name, query, **{"$skiptoken": token})
        else:
            body["@odata.deltaLink"] = self._delta_link(request, entity, upto)
        return body

    def _delta(
        self, request: ApiRequest, entity: EntitySet, select: list[str] | None, state: dict[str, Any]
    ) -> dict[str, Any]:
        token = request.query["$deltatoken"]
        version_text, _, stamp = token.partition("!")
        expired = _expired(token)
        if not version_text.isdigit():
            raise expired
        try:
            issued = datetime.strptime(stamp, "%m/%d/%Y %H:%M:%S").replace(tzinfo=now().tzinfo)
        except ValueError as exc:
            raise expired from exc
        if (now() - issued).days >= DELTA_TOKEN_DAYS:
            raise expired
        since = int(version_text)
        upto = int(state.get("u", self.store.current_version()))
        size = self._page_size(request)
        items = self.store.delta(entity, since, upto, int(state.get("v", since)), size + 1)
        value: list[dict[str, Any]] = []
        for item in items[:size]:
            if item.row is None:
                value.append(
                    {
                        "@odata.context": f"{request.root}$metadata#{entity.name}/$deletedEntity",
                        "id": item.id,
                        "reason": "deleted",
                    }
                )
            else:
                value.append(self.render(entity, item.row, select, request.prefer.include_annotations))
        body: dict[str, Any] = {"@odata.context": self._context(request, entity, select), "value": value}
        if len(items) > size:
            skip = encode_token({"v": items[size - 1].version, "u": upto})
            query = {k: v for k, v in request.query.items() if k == "$select"}
            body["@odata.nextLink"] = link(
                request.root, entity.name, query, **{"$deltatoken": token, "$skiptoken": skip}
            )
        else:
            body["@odata.deltaLink"] = self._delta_link(request, entity, upto)
        return body

    # -- writes over HTTP -------------------------------------------------------------------

    def _write_answer(self, request: ApiRequest, entity: EntitySet, row: Row, created: bool) -> ApiResponse:
        entity_url = f"{request.root}{entity.name}({row.id})"
        headers = {"OData-EntityId": entity_url, "ETag": dataverse_etag(row.version)}
        if request.prefer.return_representation:
            headers["Preference-Applied"] = "return=representation"
            select = parse_select(request.query.get("$select"), entity)
            body = {
                "@odata.context": f"{request.root}$metadata#{entity.name}/$entity",
                **self.render(entity, row, select, request.prefer.include_annotations),
            }
            return ApiResponse(201 if created else 200, body, headers)
        return ApiResponse(204, None, headers)

    def _post(self, request: ApiRequest, entity: EntitySet) -> ApiResponse:
        payload = json_object(request)
        with self.store.transaction() as db:
            row = self.create(db, entity, payload, request.caller)
        return self._write_answer(request, entity, row, created=True)

    def _upsert(self, request: ApiRequest, entity: EntitySet, key: str) -> ApiResponse:
        payload = json_object(request)
        if_match = request.headers.get("if-match")
        if_none_match = request.headers.get("if-none-match")
        kind, value = self._parse_key(entity, key)
        with self.store.transaction() as db:
            row = self.store.get(entity, value) if kind == "id" else self.store.get_by_key(entity, value)
            if row is None:
                if if_match:
                    raise self._not_found(entity, key)
                created = self.create(
                    db,
                    entity,
                    payload,
                    request.caller,
                    record_id=value if kind == "id" else None,
                    alternate_key=value if kind == "alt" else None,
                )
                return self._write_answer(request, entity, created, created=True)
            if if_none_match and if_none_match.strip() == "*":
                raise ApiError(412, DUPLICATE_RECORD, "A record with matching key values already exists.")
            if if_match and not etag_matches(if_match, dataverse_etag(row.version)):
                raise ApiError(
                    412,
                    VERSION_MISMATCH,
                    "The version of the existing record doesn't match the RowVersion property provided.",
                )
            updated = self.modify(db, entity, row, payload, request.caller)
        return self._write_answer(request, entity, updated, created=False)

    def _delete(self, request: ApiRequest, entity: EntitySet, key: str) -> ApiResponse:
        with self.store.transaction() as db:
            row = self._resolve(entity, key)
            if row is None:
                raise self._not_found(entity, key)
            if_match = request.headers.get("if-match")
            if if_match and not etag_matches(if_match, dataverse_etag(row.version)):
                raise ApiError(
                    412,
                    VERSION_MISMATCH,
                    "The version of the existing record doesn't match the RowVersion property provided.",
                )
            self.remove(db, entity, row, request.caller)
        return ApiResponse(204)

    # -- record writes (shared by HTTP, $batch and seeding) ---------------------------------

    def _validated(
        self, entity: EntitySet, payload: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, tuple[str, str | None]]]:
        """Split a payload into column values and lookups ``{attribute: (nav, bind value)}``."""
        values: dict[str, Any] = {}
        binds: dict[str, tuple[str, str | None]] = {}
        for name, value in payload.items():
            if name.endswith("@odata.bind"):
                nav = name[: -len("@odata.bind")]
                lookup = next((lk for lk in entity.lookups.values() if nav in lk.targets), None)
                if lookup is None:
                    raise _bad(
                        f"An undeclared property '{nav}' which only has property annotations in the payload "
                        "but no property value was found in the payload."
                    )
                if value is not None and not isinstance(value, str):
                    raise _bad(f"The value of '{name}' must be a URL such as '/accounts(<guid>)'.")
                binds[lookup.attribute] = (nav, value)
                continue
            if name.startswith("@") or "@" in name:
                continue
            spec = entity.fields.get(name)
            if spec is None:
                if entity.field_type(name) is not None:
                    raise _bad(
                        "CRM do not support direct update of Entity Reference properties, "
                        "Use Navigation properties instead."
                    )
                raise _bad(
                    f"The property '{name}' does not exist on type 'Microsoft.Dynamics.CRM.{entity.type_name}'. "
                    "Make sure to only use property names that are defined by the type."
                )
            if spec.read_only:
                continue
            values[name] = self._coerce(entity, spec.name, spec.type, spec.maxlen, value)
            self.option_sets.check(entity.type_name, name, values[name])
            if spec.options is not None and values[name] is not None and values[name] not in spec.options:
                # Dataverse's message, e.g. "A validation error occurred. The value 5 of 'msdyn_paymentterms' on
                # record of type 'msdyn_projectcontractsplitbillingrule' is outside the valid range. Accepted
                # Values: 1,2,3,192350001" (Project Operations docs, payment terms option set).
                raise _bad(
                    f"A validation error occurred. The value {values[name]} of '{name}' on record of type "
                    f"'{entity.type_name}' is outside the valid range. Accepted Values: "
                    f"{','.join(str(o) for o in spec.options)}",
                    OUT_OF_RANGE,
                )
        return values, binds

    @staticmethod
    def _check_required(entity: EntitySet, body: dict[str, Any]) -> None:
        """Refuse a row without a value for a SystemRequired column (``Field.required``)."""
        for spec in entity.fields.values():
            if spec.required and body.get(spec.name) in (None, ""):
                raise _bad(f"Required field '{spec.name}' is missing for '{entity.type_name}'.", "0x80040203")

    def _coerce(self, entity: EntitySet, name: str, kind: str, maxlen: int | None, value: Any) -> Any:
        if value is None:
            return None
        edm = {"string": "Edm.String", "int": "Edm.Int32", "decimal": "Edm.Decimal", "bool": "Edm.Boolean"}
        wrong = _bad(
            f"Error identified in Payload provided by the user for Entity :'{entity.type_name}' ----> "
            f"Cannot convert the literal '{value}' to the expected type '{edm.get(kind, 'Edm.Guid')}'."
        )
        if kind == "string":
            if not isinstance(value, str):
                raise wrong
            if maxlen is not None and len(value) > maxlen:
                raise _bad(
                    f"A validation error occurred. The length of the '{name}' attribute of the "
                    f"'{entity.type_name}' entity exceeded the maximum allowed length of '{maxlen}'.",
                    LENGTH_EXCEEDED,
                )
            return value
        if kind in ("int", "decimal"):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise wrong
            return int(value) if kind == "int" else value
        if kind == "bool":
            if not isinstance(value, bool):
                raise wrong
            return value
        if kind == "guid":
            if not isinstance(value, str) or not _GUID_RE.match(value):
                raise wrong
            return value.lower()
        return value

    def _bind(self, entity: EntitySet, body: dict[str, Any], binds: dict[str, tuple[str, str | None]]) -> None:
        types: dict[str, str] = dict(body.get("__lookup_types") or {})
        for attribute, (nav, value) in binds.items():
            lookup = entity.lookups[attribute]
            if value is None:
                body[lookup.value_field] = None
                types.pop(attribute, None)
                continue
            match = _BIND_RE.match(value.strip())
            target_name = lookup.targets[nav]
            target = DATAVERSE_SETS.get(target_name)
            if match is None or match.group("set") != target_name or target is None:
                raise _bad(f"The @odata.bind value '{value}' of '{nav}' must reference /{target_name}(<id>).")
            row = self._resolve(target, match.group("key"))
            if row is None:
                raise ApiError(404, NOT_FOUND, f"{target.type_name} With Ids = {match.group('key')} Do Not Exist")
            body[lookup.value_field] = row.id
            types[attribute] = target.type_name
        body["__lookup_types"] = types

    def create(
        self,
        db: sqlite3.Connection,
        entity: EntitySet,
        payload: dict[str, Any],
        caller: Caller,
        record_id: str | None = None,
        alternate_key: str | None = None,
    ) -> Row:
        """Insert a row; the caller becomes creator, modifier and (for user-owned tables) owner.

        :raises ApiError: 400 on payload errors, 404 for a lookup to a missing row, 412 when the id
            or the alternate key already exists.
        """
        values, binds = self._validated(entity, payload)
        if entity.name in STATE_STATUSES:
            # statecode is not valid for create (IsValidForCreate false): Dataverse sets the table's initial
            # state and ignores a client's value; a state change is an update after the create.
            values.pop("statecode", None)
        body: dict[str, Any] = {name: spec.default for name, spec in entity.fields.items()}
        for lookup in entity.lookups.values():
            body[lookup.value_field] = None
        body.update(values)
        if alternate_key is not None and entity.business_key:
            body[entity.business_key] = alternate_key
        if record_id is None:
            record_id = values.get(entity.key)
        if record_id is None:
            key = body.get(entity.business_key or "") or body.get("name") or body.get("emailaddress1")
            record_id = stable_id(entity.name, str(key)) if self.seeding and key else str(uuid.uuid4())
        body[entity.key] = record_id
        if entity.name in STATE_STATUSES:
            body["statecode"] = self._initial_state(entity)
            body["statuscode"] = values.get("statuscode")
            self._check_status(entity, body)
        if entity.name in DATAVERSE_OWNED and "ownerid" not in binds:
            binds["ownerid"] = ("ownerid", f"/systemusers({caller.systemuserid})")
        if (
            "transactioncurrencyid" in entity.lookups
            and "transactioncurrencyid" not in binds
            and entity.name != "contacts"
        ):
            base = self.store.get_by_key(DATAVERSE_SETS["transactioncurrencies"], "GBP")
            if base is not None:
                binds["transactioncurrencyid"] = ("transactioncurrencyid", f"/transactioncurrencies({base.id})")
        self._bind(entity, body, binds)
        self._check_required(entity, body)
        for attribute in DATAVERSE_REQUIRED_LOOKUPS.get(entity.name, ()):
            if not body.get(f"_{attribute}_value"):
                raise _bad(f"Required field '{attribute}' is missing for '{entity.type_name}'.", "0x80040203")
        if entity.name == "uomschedules" and not body.get("baseuomname"):
            raise _bad("Required field 'baseuomname' is missing for 'uomschedule'.", "0x80040203")
        if entity.name == "uoms" and not body.get("_uomscheduleid_value"):
            raise _bad("Required field 'uomscheduleid' is missing for 'uom'.", "0x80040203")
        self._computed(entity, body)
        stamp, _ = seconds(now())
        body["createdon"] = stamp
        body["_createdby_value"] = caller.systemuserid
        body["__lookup_types"]["createdby"] = "systemuser"
        row = self._write(db, entity, body, None, caller)
        if entity.name == "uomschedules":
            self._create_base_uom(db, row, caller)
        if not self.seeding:
            self.webhooks.enqueue(db, entity, "Create", row, caller)
        return row

    def modify(
        self, db: sqlite3.Connection, entity: EntitySet, row: Row, payload: dict[str, Any], caller: Caller
    ) -> Row:
        """Update a row's columns and lookups; the caller becomes the modifier.

        :raises ApiError: 400 on payload errors, 404 for a lookup to a missing row, 412 when the new
            alternate key belongs to another row.
        """
        values, binds = self._validated(entity, payload)
        values.pop(entity.key, None)
        body = dict(row.body)
        body.update(values)
        if entity.name in STATE_STATUSES:
            if "statecode" in values and "statuscode" not in values:
                # "When you update StateCode without specifying a StatusCode, the default status value will be set
                # by the system" ("Behavior of specialized update operations", Microsoft Learn).
                body["statuscode"] = None
            self._check_status(entity, body)
        self._check_required(entity, body)
        self._bind(entity, body, binds)
        self._computed(entity, body)
        new = self._write(db, entity, body, row, caller)
        if entity.name == "uomschedules" and row.body.get("baseuomname") != body.get("baseuomname"):
            base = self._base_uom(row.id)
            if base is not None:
                self._write(db, DATAVERSE_SETS["uoms"], {**base.body, "name": body["baseuomname"]}, base, caller)
        if not self.seeding:
            self.webhooks.enqueue(db, entity, "Update", new, caller)
        return new

    def remove(self, db: sqlite3.Connection, entity: EntitySet, row: Row, caller: Caller | None = None) -> None:
        """Delete a row; a unit group takes its units with it (cascade, as in Dataverse)."""
        self.store.delete(db, entity, row.id, self.store.next_version(db))
        if caller is not None and not self.seeding:
            self.webhooks.enqueue(db, entity, "Delete", row, caller)
        if entity.name == "uomschedules":
            uoms = DATAVERSE_SETS["uoms"]
            while (unit := self.store.find(uoms, "_uomscheduleid_value", row.id)) is not None:
                self.store.delete(db, uoms, unit.id, self.store.next_version(db))

    def _initial_state(self, entity: EntitySet) -> int:
        """The statecode a new row gets. A product is Draft unless the organization's "Create products in active
        state" (``createproductswithoutparentinactivestate``, false on a fresh installation) is set: then Active
        ("Publish, revise, revert, retire, and activate products (product lifecycle)", Microsoft Learn; the
        sandbox has no product families, so every product is one without a parent)."""
        if entity.name == "products":
            organization = self.store.get(DATAVERSE_SETS["organizations"], ORGANIZATION_ID)
            active = organization is not None and bool(
                organization.body.get("createproductswithoutparentinactivestate")
            )
            return 0 if active else 2
        return int(entity.fields["statecode"].default)

    @staticmethod
    def _check_status(entity: EntitySet, body: dict[str, Any]) -> None:
        """Give a blank statuscode the state's default and refuse one of another state, with Dataverse's error
        (0x80048408 "2 is not a valid status code for state code AccountState.Active on account with Id ...")."""
        statuses = STATE_STATUSES[entity.name]
        state = body.get("statecode")
        valid = statuses.get(state, ()) if isinstance(state, int) else ()
        if body.get("statuscode") is None and valid:
            body["statuscode"] = valid[0]
        if body.get("statuscode") not in valid:
            type_name, names = _STATE_NAMES[entity.name]
            raise _bad(
                f"{body.get('statuscode')} is not a valid status code for state code {type_name}."
                f"{names.get(state, state)} on {entity.type_name} with Id {body.get(entity.key)}.",
                INVALID_STATUS,
            )

    def _computed(self, entity: EntitySet, body: dict[str, Any]) -> None:
        if entity.name in ("contacts", "systemusers"):
            body["fullname"] = " ".join(p for p in (body.get("firstname"), body.get("lastname")) if p) or None

    def _write(
        self, db: sqlite3.Connection, entity: EntitySet, body: dict[str, Any], existing: Row | None, caller: Caller
    ) -> Row:
        version = self.store.next_version(db)
        stamp, modified = seconds(now())
        body["modifiedon"] = stamp
        body["versionnumber"] = version
        body["_modifiedby_value"] = caller.systemuserid
        body.setdefault("__lookup_types", {})["modifiedby"] = "systemuser"
        bkey = body.get(entity.business_key) if entity.business_key else None
        try:
            if existing is None:
                self.store.insert(db, entity, body[entity.key], bkey, version, modified, body)
            else:
                self.store.update(db, entity, existing.id, bkey, version, modified, body)
        except DuplicateKey as exc:
            if exc.column == "id":
                raise ApiError(412, DUPLICATE_RECORD, "A record with matching key values already exists.") from exc
            raise ApiError(
                412,
                DUPLICATE_ALTERNATE_KEY,
                f"A record that has the attribute values {bkey} already exists. The entity key "
                f"{entity.business_key} requires that this set of attributes contains unique values.",
            ) from exc
        return Row(existing.seq if existing else 0, body[entity.key], bkey, version, modified, body)

    def _base_uom(self, schedule_id: str) -> Row | None:
        uoms = DATAVERSE_SETS["uoms"]
        where = "json_extract(body, '$._uomscheduleid_value') = ? AND json_extract(body, '$.isschedulebaseuom') = 1"
        rows = self.store.page(uoms, where, [schedule_id], [], None, 1)
        return rows[0] if rows else None

    def _create_base_uom(self, db: sqlite3.Connection, schedule: Row, caller: Caller) -> None:
        uoms = DATAVERSE_SETS["uoms"]
        body: dict[str, Any] = {name: spec.default for name, spec in uoms.fields.items()}
        for lookup in uoms.lookups.values():
            body[lookup.value_field] = None
        uom_id = stable_id("uoms", schedule.id) if self.seeding else str(uuid.uuid4())
        stamp, _ = seconds(now())
        body.update(
            {
                "uomid": uom_id,
                "name": schedule.body["baseuomname"],
                "quantity": 1.0,
                "isschedulebaseuom": True,
                "_uomscheduleid_value": schedule.id,
                "_baseuom_value": uom_id,
                "createdon": stamp,
                "_createdby_value": caller.systemuserid,
                "__lookup_types": {"uomscheduleid": "uomschedule", "baseuom": "uom", "createdby": "systemuser"},
            }
        )
        self._write(db, uoms, body, None, caller)

    # -- $batch -----------------------------------------------------------------------------

    def batch(self, request: ApiRequest) -> ApiResponse:
        """The multipart ``$batch`` endpoint (OData v4 multipart batch, as Dataverse implements it).

        Requests outside change sets run one by one; a change set runs in one transaction and is
        rolled back as a whole when any of its requests fails. By default processing stops at the
        first failed request (the answer holds the parts up to and including the failure);
        ``Prefer: odata.continue-on-error`` runs every part.
        """
        from sandbox.multipart import BatchItem, parse_batch, render_batch

        if request.method != "POST":
            raise ApiError(405, BAD_REQUEST, "$batch accepts only POST.")
        items = parse_batch(request.headers.get("content-type", ""), request.body)
        total = sum(len(item.requests) for item in items)
        if total > MAX_BATCH:
            raise _bad(f"The number of requests in the batch ({total}) exceeds the limit of {MAX_BATCH}.")
        continue_on_error = request.prefer.continue_on_error
        answered: list[BatchItem] = []

        class _RollBack(Exception):
            pass

        failed = False
        for item in items:
            if not item.changeset:
                result = self._run_part(request, item.requests[0], {})
                answered.append(BatchItem(False, item.requests, [result]))
                failed = result.status >= 400
            else:
                results: list[ApiResponse] = []
                ids: dict[str, str] = {}
                try:
                    with self.store.transaction():
                        for part in item.requests:
                            result = self._run_part(request, part, ids)
                            results.append(result)
                            if result.status >= 400:
                                raise _RollBack
                            if part.content_id and "OData-EntityId" in result.headers:
                                ids[part.content_id] = result.headers["OData-EntityId"]
                    answered.append(BatchItem(True, item.requests, results))
                    failed = False
                except _RollBack:
                    answered.append(BatchItem(False, [item.requests[len(results) - 1]], [results[-1]]))
                    failed = True
            if failed and not continue_on_error:
                break
        content_type, payload = render_batch(answered)
        headers = {"Content-Type": content_type}
        if continue_on_error:
            headers["Preference-Applied"] = "odata.continue-on-error"
        # Stopped at a failure, the batch as a whole answers 400 ("Handling errors": "HTTP/1.1 400 BadRequest").
        stopped = failed and not continue_on_error
        return ApiResponse(400 if stopped else 200, payload, headers)

    def _run_part(self, batch: ApiRequest, part: PartRequest, ids: dict[str, str]) -> ApiResponse:
        url = part.url
        reference = _CONTENT_ID_URL.match(url)
        if reference and reference.group(1) in ids:
            url = ids[reference.group(1)] + url[reference.end() :]
        parts = urlsplit(url)
        path = parts.path
        for prefix in (ROOT_PATH, "/api/data/v9.2/"):
            if prefix in path:
                path = path.split(prefix, 1)[1]
                break
        path = path.lstrip("/")
        query: dict[str, str] = {}
        if parts.query:
            for pair in parts.query.split("&"):
                name, _, value = pair.partition("=")
                query[unquote(name)] = unquote(value.replace("+", " "))
        body = part.body
        if ids and b'"$' in body:
            # A change set may refer to an earlier request's entity by "$<Content-ID>" (OData batch).
            body = _CONTENT_ID_VALUE.sub(
                lambda m: json.dumps(ids.get(m.group(1), m.group(0).strip('"'))), body.decode()
            ).encode()
        inner = ApiRequest(
            method=part.method,
            path=path,
            query=query,
            headers=part.headers,
            body=body,
            caller=batch.caller,
            root=batch.root,
        )
        try:
            response = self._dispatch(inner)
        except ApiError as err:
            return ApiResponse(err.status, error_body(err.code, err.message), err.headers)
        except QueryError as err:
            return ApiResponse(400, error_body(BAD_REQUEST, str(err)))
        if part.method == "POST" and response.status == 204 and "OData-EntityId" in response.headers:
            # A create inside a batch is answered with Location as well as OData-EntityId ("Batch responses").
            response.headers = {"Location": response.headers["OData-EntityId"], **response.headers}
        return response


def _expired(token: str) -> ApiError:
    return _bad(
        f"Version stamp associated with the client has expired (token '{token}'). Please perform a full sync.",
        EXPIRED_VERSION_STAMP,
    )
