"""Hook to the Business Central API v2.0 (the ERP side).

URLs follow docs/reference/api-contracts.md:
``<host>/v2.0/<tenant>/<environment>/api/v2.0/companies(<companyId>)/<entitySet>``. Entities that the standard API lacks
(resources, return orders) come from a custom API page; their route is configured per entity set in the connection's
``extra.endpoints``, e.g. ``{"resources": "api/cronus/integration/v1.0"}``.

Connection (conn type ``dynamics_business_central``): ``host`` the API host
(``https://api.businesscentral.dynamics.com``), ``login``/``password`` client id/secret, and in ``extra``:
``tenant_id``, ``environment`` (default ``production``), ``company_id`` (GUID; else the company named
``company_name``, else the only company; a looked-up id can be kept between processes, see
:class:`CompanyIdCache`), ``endpoints``, plus the fields of
:class:`~dynamics_jobqueue.hooks.microsoft.MicrosoftApiHook`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any, ClassVar, Protocol

import requests

from dynamics_jobqueue.hooks.batch import BatchOperation, BatchResult, failure, roll_back
from dynamics_jobqueue.hooks.errors import ApiError, MalformedResponseError, MissingEndpointError, NotFoundError
from dynamics_jobqueue.hooks.microsoft import (
    MicrosoftApiHook,
    Page,
    decode_name,
    eq_filter,
    json_object,
    odata_params,
    record_path,
)

log = logging.getLogger(__name__)

STANDARD_ROUTE = "api/v2.0"
#: Business Central accepts at most 100 operations per $batch.
MAX_BATCH = 100
# An enum value as the API writes it: an XML-encoded name without spaces holding at least one _xHHHH_ escape.
_ENCODED_ENUM = re.compile(r"^[\w.]*_x[0-9A-Fa-f]{4}_[\w.]*$")


def decode_record(record: dict[str, Any]) -> dict[str, Any]:
    """The record with its enum values decoded (``"status": "In_x0020_Review"`` -> ``"In Review"``).

    Business Central's API writes enum values as XML-encoded names (API v2.0 reference, e.g. "Get
    opportunities": ``"status": "In_x0020_Progress"``); every read of this hook decodes them, so callers compare
    with the option captions as AL names them.
    """
    for name, value in record.items():
        if isinstance(value, str) and _ENCODED_ENUM.match(value):
            record[name] = decode_name(value)
    return record


class CompanyIdCache(Protocol):
    """Where :class:`BusinessCentralHook` keeps a looked-up company id between processes, by
    :attr:`BusinessCentralHook.company_key`; the hook owns the protocol, the keeper only stores strings."""

    def get(self, key: str) -> str | None: ...

    def put(self, key: str, company_id: str) -> None: ...

    def drop(self, key: str) -> None: ...


@dataclass(frozen=True)
class Subscription:
    """A webhook subscription (API v2.0 ``subscriptions`` resource type).

    :param subscription_id: the service's key (32 hex digits in Microsoft's examples).
    :param resource: the subscribed collection, ``/api/<route>/companies(<id>)/<entitySet>``.
    :param expires: ``expirationDateTime`` (UTC): three days after the last create/renew.
    :param etag: ``@odata.etag``, the ``If-Match`` of renew and delete.
    """

    subscription_id: str
    resource: str
    notification_url: str
    client_state: str
    expires: datetime
    etag: str

    @property
    def entity_set(self) -> str:
        return self.resource.rstrip("/").rsplit("/", 1)[-1]

    @property
    def route(self) -> str:
        """``api/<publisher>/<group>/<version>`` or ``api/v2.0``: where the subscription is managed."""
        return self.resource.lstrip("/").split("/companies(", 1)[0]


@dataclass(frozen=True)
class Notification:
    """One webhook notification ("Working with webhooks in Dynamics 365 Business Central", sample payload).

    :param change_type: ``created``, ``updated``, ``deleted`` or ``collection`` (many records changed: ``resource``
        is the collection with a ``$filter``, ``record_id`` is ``None``).
    :param entity_set: the entity set named by ``resource``.
    """

    subscription_id: str
    client_state: str
    resource: str
    change_type: str
    entity_set: str
    record_id: str | None
    last_modified: str | None


_NOTIFIED_RESOURCE = re.compile(
    r"^/?api/(?:[^?]*/)?companies\([^)]*\)/(?P<set>[A-Za-z]+)(?:\((?P<id>[0-9A-Fa-f-]{36})\))?(?:\?.*)?$"
)
CHANGE_TYPES = ("created", "updated", "deleted", "collection")


def parse_notifications(body: bytes) -> list[Notification]:
    """The notifications of a webhook POST body (``{"value": [...]}``, UTF-8, no byte order mark since BC 19).

    :raises MalformedResponseError: when the body is not that shape or an item lacks a field or has an unknown
        ``changeType`` - the caller refuses the whole POST.
    """
    try:
        payload = json.loads(body.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedResponseError(f"notification body is not JSON: {exc}", entity_set="subscriptions") from exc
    items = payload.get("value") if isinstance(payload, dict) else None
    if not isinstance(items, list) or not items:
        raise MalformedResponseError("notification body without a 'value' list", entity_set="subscriptions")
    notifications = []
    for item in items:
        if not isinstance(item, dict):
            raise MalformedResponseError("notification that is not an object", entity_set="subscriptions")
        resource, kind = item.get("resource"), item.get("changeType")
        match = _NOTIFIED_RESOURCE.match(resource) if isinstance(resource, str) else None
        if match is None or kind not in CHANGE_TYPES or not isinstance(item.get("subscriptionId"), str):
            raise MalformedResponseError(
                f"notification with resource {resource!r} and changeType {kind!r}", entity_set="subscriptions"
            )
        notifications.append(
            Notification(
                subscription_id=item["subscriptionId"],
                client_state=str(item.get("clientState") or ""),
                resource=resource,  # type: ignore[arg-type]
                change_type=str(kind),
                entity_set=match.group("set"),
                record_id=(match.group("id") or "").lower() or None,
                last_modified=item.get("lastModifiedDateTime"),
            )
        )
    return notifications


def _subscription(body: dict[str, Any]) -> Subscription:
    try:
        return Subscription(
            subscription_id=str(body["subscriptionId"]),
            resource=str(body["resource"]),
            notification_url=str(body["notificationUrl"]),
            client_state=str(body.get("clientState") or ""),
            expires=datetime.fromisoformat(str(body["expirationDateTime"]).replace("Z", "+00:00")),
            etag=str(body.get("@odata.etag") or "*"),
        )
    except (KeyError, ValueError) as exc:
        raise MalformedResponseError(f"subscription without {exc}", entity_set="subscriptions") from exc


def create_operation(op_id: str, entity_set: str, body: dict[str, Any]) -> BatchOperation:
    """A POST of a new record for :meth:`BusinessCentralHook.batch` (201 with the record)."""
    return BatchOperation(op_id, "POST", entity_set, body)


def update_operation(
    op_id: str, entity_set: str, record_id: str, body: dict[str, Any], *, etag: str = "*"
) -> BatchOperation:
    """A PATCH of a record for :meth:`BusinessCentralHook.batch` (``If-Match``; 404 when it was deleted)."""
    return BatchOperation(op_id, "PATCH", record_path(entity_set, record_id), body, {"If-Match": etag})


class BusinessCentralHook(MicrosoftApiHook):
    """Reads and writes Business Central entities over API v2.0.

    :param business_central_conn_id: the Airflow connection id (default ``business_central_default``).
    :param company_ids: where a company id looked up (no ``extra.company_id``) is kept between processes
        (:class:`CompanyIdCache`); without it every process looks the company up once (``GET companies``).
    """

    default_conn_name = "business_central_default"
    conn_type = "dynamics_business_central"
    hook_name = "Dynamics 365 Business Central"
    max_page_size: ClassVar[int] = 20_000

    def __init__(
        self, business_central_conn_id: str | None = None, *, company_ids: CompanyIdCache | None = None, **kwargs: Any
    ) -> None:
        super().__init__(business_central_conn_id or self.default_conn_name, **kwargs)
        self.company_ids = company_ids
        self._company_id: str | None = None
        self._company_id_cached = False  # the id came from company_ids, not from this process's lookup

    def default_headers(self) -> dict[str, str]:
        return {"Accept": "application/json", "Content-Type": "application/json"}

    @cached_property
    def environment_root(self) -> str:
        """``v2.0/<tenant>/<environment>/`` relative to the host."""
        tenant = self.settings.tenant_id or ""
        environment = self.extra.get("environment", "production")
        return f"v2.0/{tenant}/{environment}/"

    def route(self, entity_set: str) -> str:
        """The API route of ``entity_set``: ``extra.endpoints[entity_set]`` or ``api/v2.0``."""
        endpoints: dict[str, str] = self.extra.get("endpoints") or {}
        return endpoints.get(entity_set, STANDARD_ROUTE).strip("/")

    def has_endpoint(self, entity_set: str) -> bool:
        """Whether ``extra.endpoints`` routes ``entity_set`` to a custom API page."""
        return bool((self.extra.get("endpoints") or {}).get(entity_set))

    def require_endpoint(self, entity_set: str, needed_for: str) -> None:
        """:raises MissingEndpointError: when ``extra.endpoints`` does not route ``entity_set``; the message names
        it, what needs it (``needed_for``) and how to set it."""
        if not self.has_endpoint(entity_set):
            raise MissingEndpointError(
                f"{needed_for} needs the custom API page '{entity_set}', which the standard API v2.0 lacks: publish "
                f'it in Business Central (README, "Posting with Business Central\'s options") and set its route in '
                f'the connection {self.conn_id!r}: extra.endpoints = {{"{entity_set}": '
                f'"api/<publisher>/<group>/v1.0"}}.'
            )

    @property
    def company_id(self) -> str:
        """The company GUID: ``extra.company_id``, else the id kept in ``company_ids``, else looked up by
        ``extra.company_name`` or the only company (and kept in ``company_ids``).

        :raises ApiError: when the company cannot be determined.
        """
        if self.extra.get("company_id"):
            return str(self.extra["company_id"])
        if self._company_id is None:
            cached = self.company_ids.get(self.company_key) if self.company_ids else None
            self._company_id, self._company_id_cached = (cached, True) if cached else (self.find_company_id(), False)
            if not cached and self.company_ids:
                self.company_ids.put(self.company_key, self._company_id)
        return self._company_id

    @property
    def company_key(self) -> str:
        """What a looked-up company id is kept under: the environment's URL and ``extra.company_name``."""
        return f"{self.url(self.environment_root)} {self.extra.get('company_name') or ''}".rstrip()

    def find_company_id(self) -> str:
        """Look the company up (``GET companies``): the one named ``extra.company_name``, else the only one.

        :raises ApiError: when no company or several match.
        """
        companies = [
            c
            for page in self.iter_collection(
                f"{self.environment_root}{STANDARD_ROUTE}/companies", entity_set="companies"
            )
            for c in page.records
        ]
        wanted = self.extra.get("company_name")
        matches = [c for c in companies if wanted is None or c.get("name") == wanted]
        if len(matches) != 1 or not matches[0].get("id"):
            names = ", ".join(str(c.get("name", "?")) for c in companies)
            raise ApiError(
                f"set extra.company_id or extra.company_name; companies found: {names}", entity_set="companies"
            )
        return str(matches[0]["id"])

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """:meth:`MicrosoftApiHook.request`; a 404 on the path of a company id kept from an earlier process is
        checked: when that company no longer exists (``GET companies(<id>)`` answers 404) the kept id is dropped,
        the company looked up again and the call repeated once with the new id (nothing was written by a call
        that answered 404). A kept id is keyed by ``extra.company_name``, so renaming the wanted company in the
        connection never reuses the id of another company; an id of a company that still exists is never
        dropped. The same holds for ``@odata.nextLink`` URLs that name the company.

        :raises NotFoundError: when the record is missing (the company exists), as before.
        """
        try:
            return super().request(method, path, **kwargs)
        except NotFoundError:
            stale = self._company_id
            if not self._company_id_cached or stale is None or f"companies({stale})" not in path:
                raise
            if self._company_exists(stale):
                raise
        log.warning("company %s of %s no longer exists; looking the company up again", stale, self.company_key)
        if self.company_ids:
            self.company_ids.drop(self.company_key)
        self._company_id, self._company_id_cached = None, False
        return super().request(method, path.replace(f"companies({stale})", f"companies({self.company_id})"), **kwargs)

    def _company_exists(self, company_id: str) -> bool:
        path = f"{self.environment_root}{STANDARD_ROUTE}/companies({company_id})"
        try:
            super().request("GET", path, entity_set="companies", record_id=company_id)
        except NotFoundError:
            return False
        return True

    def probe(self) -> str:
        """Resolve and read the company: proves tenant, environment and company (the "Test" button)."""
        path = f"{self.environment_root}{STANDARD_ROUTE}/companies({self.company_id})"
        name = self.request_json("GET", path, entity_set="companies", record_id=self.company_id).get("name")
        return f"signed in to {self.api_root}; company {name!r} ({self.company_id}) found"

    def entity_path(self, entity_set: str) -> str:
        """Path of ``entity_set`` relative to the host, with the company and the entity set's route."""
        return f"{self.environment_root}{self.route(entity_set)}/companies({self.company_id})/{entity_set}"

    def query(
        self,
        entity_set: str,
        *,
        filter: str | None = None,
        select: list[str] | None = None,
        orderby: str | None = None,
        count: bool = False,
        page_size: int = 20_000,
    ) -> Iterator[Page]:
        """Read ``entity_set`` page by page (``@odata.nextLink``), never the whole set at once; enum values
        decoded (:func:`decode_record`).

        :param filter: OData ``$filter`` (build it with :func:`~dynamics_jobqueue.hooks.microsoft.eq_filter`
            and friends), e.g. ``lastModifiedDateTime gt 2026-01-01T00:00:00Z``.
        :param select: fields to return (``$select``).
        :param count: ``$count=true``: the first page carries the number of matching records.
        :param page_size: records per page asked with ``Prefer: odata.maxpagesize`` (max 20,000).
        :raises ApiError: typed, on any error answer after retries.
        """
        params = odata_params(filter=filter, select=select, orderby=orderby, count=count)
        for page in self.iter_collection(
            self.entity_path(entity_set), entity_set=entity_set, params=params, page_size=page_size
        ):
            page.records = [decode_record(r) for r in page.records]
            yield page

    def find_by(
        self, entity_set: str, field: str, value: Any, *, select: list[str] | None = None
    ) -> list[dict[str, Any]]:
        """The records whose ``field`` equals ``value`` (quoted as an OData literal)."""
        return [r for page in self.iter_pages(entity_set, filter=eq_filter(field, value), select=select) for r in page]

    def get(self, entity_set: str, record_id: str, *, timeout: float | None = None) -> dict[str, Any]:
        """Read one record by its ``id``. :param timeout: seconds for this call.

        :raises NotFoundError: when it does not exist.
        """
        body = self.request_json(
            "GET",
            f"{self.entity_path(entity_set)}({record_id})",
            entity_set=entity_set,
            record_id=record_id,
            timeout=timeout,
        )
        return decode_record(body)

    def create(self, entity_set: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create a record (POST, 201). :return: the created record with ``id`` and ``@odata.etag``."""
        return decode_record(self.request_json("POST", self.entity_path(entity_set), entity_set=entity_set, json=body))

    def update(
        self,
        entity_set: str,
        record_id: str,
        body: dict[str, Any],
        *,
        etag: str = "*",
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Update a record (PATCH with ``If-Match``). :param timeout: seconds for this call.

        :raises ConflictError: when ``etag`` is stale (409/412).
        """
        answer = self.request_json(
            "PATCH",
            f"{self.entity_path(entity_set)}({record_id})",
            entity_set=entity_set,
            record_id=record_id,
            json=body,
            headers={"If-Match": etag},
            timeout=timeout,
        )
        return decode_record(answer)

    def delete(self, entity_set: str, record_id: str, *, etag: str = "*") -> None:
        """Delete a record (DELETE with ``If-Match``). :raises NotFoundError: when it does not exist."""
        self.request(
            "DELETE",
            f"{self.entity_path(entity_set)}({record_id})",
            entity_set=entity_set,
            record_id=record_id,
            headers={"If-Match": etag},
        )

    def post_action(self, entity_set: str, record_id: str, action: str, *, timeout: float | None = None) -> None:
        """Call a bound action such as ``Microsoft.NAV.post`` (POST, empty body, 204).

        :param timeout: seconds for this call (capped by the connection's ``extra.timeout``).
        :raises ApiError: the API's refusal (e.g. the document cannot be posted), typed.
        """
        self.request(
            "POST",
            f"{self.entity_path(entity_set)}({record_id})/{action}",
            entity_set=entity_set,
            record_id=record_id,
            timeout=timeout,
        )

    def metadata(self, entity_set: str) -> bytes:
        """The CSDL ``$metadata`` document (XML) of the API route that serves ``entity_set``."""
        path = f"{self.environment_root}{self.route(entity_set)}/$metadata"
        return self.request("GET", path, entity_set="$metadata", headers={"Accept": "application/xml"}).content

    def get_bytes(self, path: str) -> bytes:
        """Read binary content (e.g. ``salesInvoices(<id>)/pdfDocument/pdfDocumentContent``) below the company.

        :param path: relative to the company root of the standard API, or absolute.
        """
        if not path.startswith(("https://", "http://")):
            path = f"{self.environment_root}{STANDARD_ROUTE}/companies({self.company_id})/{path}"
        return self.request("GET", path, headers={"Accept": "*/*"}).content

    # -- webhook subscriptions ("Working with webhooks in Dynamics 365 Business Central") ----------------------

    def subscription_resource(self, entity_set: str) -> str:
        """The ``resource`` of a subscription to ``entity_set``: ``/api/<route>/companies(<id>)/<entitySet>``
        (the route of a custom API page for entity sets in ``extra.endpoints``, as the webhooks page requires)."""
        return f"/{self.route(entity_set)}/companies({self.company_id})/{entity_set}"

    def subscriptions(self, route: str = STANDARD_ROUTE) -> list[Subscription]:
        """The subscriptions managed at ``<route>/subscriptions`` (the service drops expired ones)."""
        path = f"{self.environment_root}{route.strip('/')}/subscriptions"
        return [
            _subscription(r) for page in self.iter_collection(path, entity_set="subscriptions") for r in page.records
        ]

    def create_subscription(self, entity_set: str, notification_url: str, client_state: str) -> Subscription:
        """Subscribe ``notification_url`` to changes of ``entity_set`` (POST ``subscriptions``, 201).

        Business Central first sends ``validationToken`` to ``notification_url`` and creates the subscription only
        when it is echoed with 200; ``client_state`` (at most 2,048 characters) comes back in every notification.

        :raises ApiError: typed: 400 when the handshake failed or the entity set does not support webhooks.
        """
        body = {"notificationUrl": notification_url, "resource": self.subscription_resource(entity_set)}
        if client_state:
            body["clientState"] = client_state
        path = f"{self.environment_root}{self.route(entity_set)}/subscriptions"
        return _subscription(self.request_json("POST", path, entity_set="subscriptions", json=body))

    def renew_subscription(self, subscription: Subscription, client_state: str | None = None) -> Subscription:
        """Renew (PATCH with ``If-Match``, a new handshake): the subscription lives three more days.

        :raises NotFoundError: when it expired or was deleted (create a new one).
        :raises ConflictError: when ``subscription.etag`` is stale.
        """
        state = subscription.client_state if client_state is None else client_state
        answer = self.request_json(
            "PATCH",
            self._subscription_path(subscription),
            entity_set="subscriptions",
            record_id=subscription.subscription_id,
            json={"notificationUrl": subscription.notification_url, "clientState": state},
            headers={"If-Match": subscription.etag},
        )
        return _subscription(answer)

    def delete_subscription(self, subscription: Subscription) -> None:
        """Unsubscribe (DELETE with ``If-Match``, 204). :raises NotFoundError: when it is already gone."""
        self.request(
            "DELETE",
            self._subscription_path(subscription),
            entity_set="subscriptions",
            record_id=subscription.subscription_id,
            headers={"If-Match": subscription.etag},
        )

    def _subscription_path(self, subscription: Subscription) -> str:
        return f"{self.environment_root}{subscription.route}/subscriptions('{subscription.subscription_id}')"

    def batch(self, ops: Sequence[BatchOperation], *, atomic: bool = False) -> list[BatchResult]:
        """Send operations as JSON ``$batch`` requests of at most 100, grouped by API route.

        Answers are matched to operations by ``id``, and by position when the service answers ``"id": null``
        (as Microsoft's example in "Using OData transactional $batch requests" shows). With ``atomic``
        (``Isolation: snapshot``) a batch in which anything failed is rolled back as a whole, so its successes
        are reported as failures (424, rolled back).

        :param ops: operations whose ``path`` is relative to the company (``customers(<id>)``).
        :param atomic: send ``Isolation: snapshot`` so each batch of 100 is all-or-nothing.
        :return: one result per operation, in the order given; an operation the answer does not mention fails
            alone (500).
        :raises ApiError: when a whole batch request fails (auth, throttling after retries, an answer that is
            not a JSON batch answer), naming ``$batch`` and the entity sets.
        """
        results: dict[int, BatchResult] = {}
        by_route: dict[str, list[tuple[int, BatchOperation]]] = {}
        for index, op in enumerate(ops):
            by_route.setdefault(self.route(op.entity_set), []).append((index, op))
        for route, route_ops in by_route.items():
            for start in range(0, len(route_ops), MAX_BATCH):
                chunk = route_ops[start : start + MAX_BATCH]
                chunk_results = self._send_batch(route, [op for _, op in chunk], atomic=atomic)
                results.update((index, result) for (index, _), result in zip(chunk, chunk_results, strict=True))
        return [results[index] for index in range(len(ops))]

    def _send_batch(self, route: str, ops: list[BatchOperation], *, atomic: bool) -> list[BatchResult]:
        where = f"$batch of {','.join(sorted({op.entity_set for op in ops}))}"
        payload = {
            "requests": [
                {
                    "id": op.id,
                    "method": op.method,
                    "url": f"companies({self.company_id})/{op.path}",
                    "headers": {"Content-Type": "application/json", **op.headers},
                    **({"body": op.body} if op.body is not None else {}),
                }
                for op in ops
            ]
        }
        headers = {"Isolation": "snapshot"} if atomic else {}
        response = self.request(
            "POST", f"{self.environment_root}{route}/$batch", entity_set=where, json=payload, headers=headers
        )
        answer = json_object(response, entity_set=where)
        items = answer.get("responses")
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise MalformedResponseError("batch answer without a 'responses' list", entity_set=where)
        by_id = {str(item["id"]): item for item in items if item.get("id") is not None}
        positional = len(by_id) < len(items) and len(items) == len(ops)
        results: list[BatchResult] = []
        for index, op in enumerate(ops):
            item = items[index] if positional else by_id.get(op.id)
            status = item.get("status") if item else None
            if item is None or not isinstance(status, int):
                results.append(failure(op, 500, "no answer in the batch", code="NoAnswer"))
                continue
            body = item.get("body")
            results.append(
                BatchResult(
                    op.id,
                    status,
                    decode_record(body) if isinstance(body, dict) else body,
                    dict(item.get("headers") or {}),
                    op.entity_set,
                )
            )
        return roll_back(ops, results) if atomic else results
