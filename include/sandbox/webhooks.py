"""Business Central webhook subscriptions (``api/v2.0/subscriptions``) and their notifications.

As documented in "Working with webhooks in Dynamics 365 Business Central" and the subscription resource type
(https://learn.microsoft.com/dynamics365/business-central/dev-itpro/api-reference/v2.0/dynamics-subscriptions,
.../resources/dynamics_subscriptions):

- ``POST subscriptions`` with ``notificationUrl``, ``resource`` and an optional ``clientState`` (at most 2,048
  characters): the service first sends ``POST <notificationUrl>?validationToken=<token>`` and creates the
  subscription (``201 Created``) only when the answer is ``200`` with the token as the body; otherwise ``400``.
- ``PATCH subscriptions('<id>')`` (``If-Match`` required) renews: the same handshake, then ``expirationDateTime``
  moves three days ahead. ``DELETE subscriptions('<id>')`` (``If-Match`` required) answers ``204``.
- A subscription expires three days after its last create/renew; an expired subscription sends nothing and is
  gone (``404``) - a client finds out it lost it and creates a new one.
- Changes are not sent at once: the first change of a subscribed set starts a delay (30 s by default); then every
  record changed in the meantime is sent once (``created``/``updated``/``deleted``, with the record's resource
  path), or, when more than 1,000 records changed, one ``collection`` notification whose resource carries a
  ``lastModifiedDateTime gt <time>`` filter. One POST per notification URL carries the notifications of every
  subscription to that URL (``{"value": [...]}``).
- A notification answered with ``408``, ``429`` or ``5xx`` (or not answered) is retried (the service retries
  over 36 hours); any other non-2xx answer deletes the subscription.
- Only the entity sets of the documented "List of supported entities" and the custom API pages accept
  subscriptions (``contacts`` and ``salespeoplePurchasers`` are not on that list).

The sandbox's simplifications, each configurable for tests (``SANDBOX_WEBHOOK_*`` environment or ``POST
/_sandbox/webhooks``): the delay, the collection threshold, the lifetime, the retry interval and window. The
notification URL may be ``http`` only on a loopback host (the real service needs a public HTTPS endpoint).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

import requests

from sandbox.api import ApiError, ApiRequest, ApiResponse, bc_etag, etag_matches, now, timestamp

if TYPE_CHECKING:
    import sqlite3

    from sandbox.schema import EntitySet
    from sandbox.store import Store

LOG = logging.getLogger(__name__)

#: "List of supported entities" of the webhooks page (v2.0); custom API pages are webhook-enabled too.
SUPPORTED = frozenset(
    {
        "accounts",
        "companyInformation",
        "countriesRegions",
        "currencies",
        "customerPaymentJournals",
        "customers",
        "dimensions",
        "employees",
        "generalLedgerEntries",
        "itemCategories",
        "items",
        "journals",
        "paymentMethods",
        "paymentTerms",
        "purchaseInvoices",
        "salesCreditMemos",
        "salesInvoices",
        "salesOrders",
        "salesQuotes",
        "shipmentMethods",
        "unitsOfMeasure",
        "vendors",
    }
)
MAX_CLIENT_STATE = 2048
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass
class WebhookConfig:
    """Timing of subscriptions and notifications (seconds; Business Central online's values by default).

    :param delay_s: wait after the first change before notifying (BC: 30 s, ``ApiSubscriptionDelayTime``).
    :param max_notifications: more changed records than this within one delay -> one ``collection``
        notification (BC: 1,000, ``ApiSubscriptionMaxNumberOfNotifications``).
    :param lifetime_s: a subscription's life after create/renew (BC: three days, ``ApiSubscriptionExpiration``).
    :param retry_s: wait before resending a notification that got 408/429/5xx or no answer.
    :param retry_window_s: how long failed notifications are retried before the subscription is dropped (36 h).
    :param timeout_s: how long the service waits for the subscriber's answer.
    """

    delay_s: float = 30.0
    max_notifications: int = 1000
    lifetime_s: float = 3 * 24 * 3600.0
    retry_s: float = 60.0
    retry_window_s: float = 36 * 3600.0
    timeout_s: float = 10.0

    @classmethod
    def from_env(cls) -> WebhookConfig:
        """From ``SANDBOX_WEBHOOK_DELAY_S``, ``..._MAX_NOTIFICATIONS``, ``..._LIFETIME_S``, ``..._RETRY_S``,
        ``..._RETRY_WINDOW_S``, ``..._TIMEOUT_S``; missing ones keep the defaults."""
        return cls.from_json(
            {
                name: os.environ[f"SANDBOX_WEBHOOK_{name.upper()}"]
                for name in cls.__dataclass_fields__
                if f"SANDBOX_WEBHOOK_{name.upper()}" in os.environ
            }
        )

    @classmethod
    def from_json(cls, data: dict[str, Any], base: WebhookConfig | None = None) -> WebhookConfig:
        values = asdict(base or cls())
        for name, value in data.items():
            if name not in values:
                raise ValueError(f"unknown webhook setting {name!r}")
            values[name] = int(value) if name == "max_notifications" else float(value)
        return cls(**values)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _bad(message: str, code: str = "BadRequest") -> ApiError:
    return ApiError(400, code, message)


class Webhooks:
    """Subscriptions of one sandbox and the thread that sends their notifications.

    :param store: the sandbox database (subscriptions live in its ``subscriptions`` table, next to the
        records whose ``version``/``seq`` columns tell what changed since the last notification).
    :param sets: resolves ``(api, entity set name)`` to the stored entity set, ``None`` when unknown.
    """

    def __init__(self, store: Store, sets: Any, config: WebhookConfig | None = None) -> None:
        self.store = store
        self.sets = sets
        self.config = config or WebhookConfig.from_env()
        self.startup_config = self.config
        self.session = requests.Session()
        self.session.trust_env = False
        ca = os.environ.get("SANDBOX_WEBHOOK_CA_BUNDLE")
        if ca:
            self.session.verify = ca
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        #: Notifications sent (POSTs answered 2xx), for tests and the benchmark.
        self.sent = 0

    # -- the HTTP API ----------------------------------------------------------------------

    def handle(self, request: ApiRequest, api: str, key: str | None) -> ApiResponse:
        """``subscriptions`` (GET, POST) and ``subscriptions('<id>')`` (GET, PATCH, DELETE) below ``api/<api>/``."""
        if key is None:
            if request.method == "GET":
                rows = [self._render(s) for s in self._all(api)]
                return ApiResponse(200, {"@odata.context": f"{request.root}$metadata#subscriptions", "value": rows})
            if request.method == "POST":
                return self._create(request, api)
            raise ApiError(405, "BadRequest_MethodNotAllowed", f"'{request.method}' is not allowed here.")
        sub_id = unquote(key).strip("'")
        sub = self._get(api, sub_id)
        if request.method == "GET":
            return ApiResponse(200, self._render(sub, request), {"ETag": bc_etag(sub["version"])})
        header = request.headers.get("if-match")
        if not header:
            raise _bad(
                "Could not validate the client concurrency token required by the service. "
                "Please provide a valid token in the client request.",
                "BadRequest_InvalidToken",
            )
        if not etag_matches(header, bc_etag(sub["version"])):
            raise ApiError(409, "Request_EntityChanged", "Another user has already changed the record.")
        if request.method == "DELETE":
            with self.store.transaction() as db:
                db.execute("DELETE FROM subscriptions WHERE id = ?", (sub_id,))
            return ApiResponse(204)
        if request.method == "PATCH":
            return self._renew(request, api, sub)
        raise ApiError(405, "BadRequest_MethodNotAllowed", f"'{request.method}' is not allowed here.")

    def _payload(self, request: ApiRequest) -> dict[str, Any]:
        try:
            payload = request.json_body()
        except ValueError as exc:
            raise _bad(f"Invalid Request Body: {exc}") from exc
        if not isinstance(payload, dict):
            raise _bad("Invalid Request Body: a JSON object is required.")
        allowed = {"subscriptionId", "notificationUrl", "resource", "clientState"}
        for name in payload:
            if name not in allowed and not name.startswith("@"):
                raise _bad(
                    f"The property '{name}' does not exist on type 'Microsoft.NAV.subscriptions'. "
                    "Make sure to only use property names that are defined by the type."
                )
        state = payload.get("clientState")
        if state is not None and (not isinstance(state, str) or len(state) > MAX_CLIENT_STATE):
            raise _bad(f"clientState must be a string of at most {MAX_CLIENT_STATE} characters.")
        return payload

    def _resource(self, api: str, resource: Any) -> tuple[EntitySet, str]:
        """The entity set a ``resource`` (relative or absolute) names, and its canonical relative form."""
        if not isinstance(resource, str) or not resource:
            raise _bad("The resource is required.")
        path = urlsplit(resource).path if "://" in resource else resource
        marker = f"/api/{api}/companies("
        at = ("/" + path.lstrip("/")).find(marker)
        if at < 0:
            raise _bad(f"The resource '{resource}' is not a resource of api/{api}.")
        rest = ("/" + path.lstrip("/"))[at + len(marker) :]
        company, _, set_name = rest.partition(")/")
        from sandbox.business_central import COMPANY_ID, CUSTOM_API

        if company.strip("'").lower() != COMPANY_ID:
            raise ApiError(404, "BadRequest_NotFound", f"The company '{company}' does not exist.")
        entity = self.sets(api, set_name)
        if entity is None:
            raise ApiError(404, "BadRequest_NotFound", f"The segment '{set_name}' is unknown.")
        if api != CUSTOM_API and set_name not in SUPPORTED:
            raise _bad(f"The resource '{resource}' does not support webhooks.", "BadRequest_ResourceNotSupported")
        return entity, f"/api/{api}/companies({COMPANY_ID})/{set_name}"

    def _check_url(self, url: Any) -> str:
        if not isinstance(url, str):
            raise _bad("The notificationUrl is required.")
        parts = urlsplit(url)
        if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS):
            return url
        raise _bad(f"The notificationUrl '{url}' must be an absolute https URL.")

    def _handshake(self, url: str) -> None:
        token = secrets.token_urlsafe(24)
        separator = "&" if urlsplit(url).query else "?"
        try:
            answer = self.session.post(f"{url}{separator}validationToken={quote(token)}", timeout=self.config.timeout_s)
        except requests.RequestException as exc:
            raise _bad(f"The handshake with the notificationUrl failed: {type(exc).__name__}.") from exc
        if answer.status_code != 200 or answer.text != token:
            raise _bad(
                f"The handshake with the notificationUrl failed: it answered {answer.status_code} "
                "without the validationToken."
            )

    def _create(self, request: ApiRequest, api: str) -> ApiResponse:
        payload = self._payload(request)
        url = self._check_url(payload.get("notificationUrl"))
        entity, resource = self._resource(api, payload.get("resource"))
        self._handshake(url)
        stamp = timestamp()
        sub_id = uuid.uuid4().hex
        body = {
            "subscriptionId": sub_id,
            "notificationUrl": url,
            "resource": resource,
            "userId": str(uuid.uuid5(uuid.NAMESPACE_URL, request.caller.client_id)),
            "lastModifiedDateTime": stamp,
            "clientState": payload.get("clientState") or "",
            "expirationDateTime": timestamp(now() + timedelta(seconds=self.config.lifetime_s)),
            "systemCreatedAt": stamp,
            "systemCreatedBy": str(uuid.uuid5(uuid.NAMESPACE_URL, request.caller.client_id)),
            "systemModifiedAt": stamp,
            "systemModifiedBy": str(uuid.uuid5(uuid.NAMESPACE_URL, request.caller.client_id)),
        }
        with self.store.transaction() as db:
            version = self.store.next_version(db)
            cursor_seq = db.execute(f'SELECT COALESCE(MAX(seq), 0) FROM "{entity.table}"').fetchone()[0]
            db.execute(
                "INSERT INTO subscriptions (id, api, entity_set, version, expires, cursor_version, cursor_seq,"
                " pending_since, retry_at, failing_since, body) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, ?)",
                (
                    sub_id,
                    api,
                    entity.name,
                    version,
                    time.time() + self.config.lifetime_s,
                    version,
                    cursor_seq,
                    json.dumps(body),
                ),
            )
        sub = self._get(api, sub_id)
        location = f"{request.root}subscriptions('{sub_id}')"
        return ApiResponse(201, self._render(sub, request), {"ETag": bc_etag(version), "Location": location})

    def _renew(self, request: ApiRequest, api: str, sub: dict[str, Any]) -> ApiResponse:
        payload = self._payload(request)
        body = dict(sub["body"])
        if "subscriptionId" in payload and payload["subscriptionId"] != sub["id"]:
            raise _bad("The subscriptionId cannot be changed.")
        if "resource" in payload:
            _, resource = self._resource(api, payload["resource"])
            if resource != body["resource"]:
                raise _bad("The resource of a subscription cannot be changed.")
        url = self._check_url(payload.get("notificationUrl", body["notificationUrl"]))
        # PATCH requests a handshake, just like POST (Working with webhooks, "Renewing the subscription").
        self._handshake(url)
        stamp = timestamp()
        body.update(
            notificationUrl=url,
            lastModifiedDateTime=stamp,
            systemModifiedAt=stamp,
            expirationDateTime=timestamp(now() + timedelta(seconds=self.config.lifetime_s)),
        )
        if "clientState" in payload:
            body["clientState"] = payload["clientState"] or ""
        with self.store.transaction() as db:
            version = self.store.next_version(db)
            db.execute(
                "UPDATE subscriptions SET version = ?, expires = ?, body = ? WHERE id = ?",
                (version, time.time() + self.config.lifetime_s, json.dumps(body), sub["id"]),
            )
        sub = self._get(api, sub["id"])
        return ApiResponse(200, self._render(sub, request), {"ETag": bc_etag(version)})

    # -- stored subscriptions --------------------------------------------------------------

    _COLUMNS = (
        "id, api, entity_set, version, expires, cursor_version, cursor_seq, pending_since, retry_at,"
        " failing_since, body"
    )

    def _row(self, r: tuple[Any, ...]) -> dict[str, Any]:
        names = [c.strip() for c in self._COLUMNS.split(",")]
        sub = dict(zip(names, r, strict=True))
        sub["body"] = json.loads(sub["body"])
        return sub

    def _drop_expired(self) -> None:
        with self.store.transaction() as db:
            db.execute("DELETE FROM subscriptions WHERE expires <= ?", (time.time(),))

    def _all(self, api: str | None = None) -> list[dict[str, Any]]:
        self._drop_expired()
        sql = f"SELECT {self._COLUMNS} FROM subscriptions" + (" WHERE api = ?" if api else "") + " ORDER BY id"
        return [self._row(r) for r in self.store.read().execute(sql, (api,) if api else ())]

    def _get(self, api: str, sub_id: str) -> dict[str, Any]:
        self._drop_expired()
        r = (
            self.store.read()
            .execute(f"SELECT {self._COLUMNS} FROM subscriptions WHERE id = ? AND api = ?", (sub_id, api))
            .fetchone()
        )
        if r is None:
            raise ApiError(
                404,
                "BadRequest_NotFound",
                f"The Subscription does not exist. Identification fields and values: Subscription Id='{sub_id}'",
            )
        return self._row(r)

    def _render(self, sub: dict[str, Any], request: ApiRequest | None = None) -> dict[str, Any]:
        body = {"@odata.etag": bc_etag(sub["version"]), **sub["body"], "timestamp": sub["version"]}
        if request is not None:
            body = {"@odata.context": f"{request.root}$metadata#subscriptions/$entity", **body}
        return body

    def expire(self, sub_id: str) -> bool:
        """Make a subscription expire now (tests: a lost subscription). True when it existed."""
        with self.store.transaction() as db:
            return db.execute("DELETE FROM subscriptions WHERE id = ?", (sub_id,)).rowcount > 0

    # -- notifications ---------------------------------------------------------------------

    def start(self, tick_s: float = 0.2) -> None:
        """Start the notification thread (idempotent)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, args=(tick_s,), name="webhooks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self, tick_s: float) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                LOG.exception("webhook notification round failed")
            self._wake.wait(tick_s)
            self._wake.clear()

    def _changes(self, db: sqlite3.Connection, sub: dict[str, Any], upto: int) -> list[tuple[str, str, str]]:
        """``(record id, changeType, lastModifiedDateTime)`` of the records of ``sub`` changed since its cursor,
        each record once (its latest change)."""
        entity = self.sets(sub["api"], sub["entity_set"])
        latest: dict[str, tuple[int, str, str]] = {}
        for rid, seq, version, modified in db.execute(
            f'SELECT id, seq, version, modified FROM "{entity.table}" WHERE version > ? AND version <= ?',
            (sub["cursor_version"], upto),
        ):
            kind = "created" if seq > sub["cursor_seq"] else "updated"
            latest[rid] = (version, kind, modified)
        for rid, version in db.execute(
            "SELECT id, version FROM tombstones WHERE entity_set = ? AND version > ? AND version <= ?",
            (entity.table, sub["cursor_version"], upto),
        ):
            if rid not in latest or latest[rid][0] < version:
                latest[rid] = (version, "deleted", timestamp())
        ordered = sorted(latest.items(), key=lambda item: item[1][0])
        return [(rid, kind, modified) for rid, (_, kind, modified) in ordered]

    def tick(self) -> None:
        """One round: start the delay of subscriptions with new changes; send those whose delay is over."""
        self._drop_expired()
        clock = time.time()
        due: dict[str, list[tuple[dict[str, Any], list[dict[str, Any]], int, int]]] = {}
        db = self.store.read()
        upto = self.store.current_version()
        for sub in self._all():
            entity = self.sets(sub["api"], sub["entity_set"])
            if sub["retry_at"] is not None and clock < sub["retry_at"]:
                continue
            if sub["pending_since"] is None:
                changed = (
                    db.execute(
                        f'SELECT 1 FROM "{entity.table}" WHERE version > ? LIMIT 1', (sub["cursor_version"],)
                    ).fetchone()
                    or db.execute(
                        "SELECT 1 FROM tombstones WHERE entity_set = ? AND version > ? LIMIT 1",
                        (entity.table, sub["cursor_version"]),
                    ).fetchone()
                )
                if changed:
                    with self.store.transaction() as w:
                        w.execute("UPDATE subscriptions SET pending_since = ? WHERE id = ?", (clock, sub["id"]))
                continue
            if clock - sub["pending_since"] < self.config.delay_s and sub["retry_at"] is None:
                continue
            changes = self._changes(db, sub, upto)
            max_seq = db.execute(f'SELECT COALESCE(MAX(seq), 0) FROM "{entity.table}"').fetchone()[0]
            due.setdefault(sub["body"]["notificationUrl"], []).append(
                (sub, self._notifications(sub, changes), upto, max_seq)
            )
        for url, batch in due.items():
            self._send(url, batch)

    def _notifications(self, sub: dict[str, Any], changes: list[tuple[str, str, str]]) -> list[dict[str, Any]]:
        body = sub["body"]
        common = {
            "subscriptionId": sub["id"],
            "clientState": body["clientState"],
            "expirationDateTime": body["expirationDateTime"],
        }
        resource = body["resource"].lstrip("/")
        if len(changes) > self.config.max_notifications:
            since = min(modified for _, kind, modified in changes if kind != "deleted") if changes else timestamp()
            # The change before the delay began may share its second: "gt" a moment before the first change.
            return [
                {
                    **common,
                    "resource": f"/{resource}?$filter=lastModifiedDateTime%20gt%20{_before(since)}",
                    "changeType": "collection",
                    "lastModifiedDateTime": max(m for _, _, m in changes),
                }
            ]
        return [
            {**common, "resource": f"{resource}({rid})", "changeType": kind, "lastModifiedDateTime": modified}
            for rid, kind, modified in changes
        ]

    def _send(self, url: str, batch: list[tuple[dict[str, Any], list[dict[str, Any]], int, int]]) -> None:
        value = [n for _, notifications, _, _ in batch for n in notifications]
        try:
            answer = self.session.post(
                url,
                data=json.dumps({"value": value}).encode(),  # no byte order mark (BC 19 and later)
                headers={"Content-Type": "application/json"},
                timeout=self.config.timeout_s,
            )
            status = answer.status_code
        except requests.RequestException:
            status = 0
        clock = time.time()
        with self.store.transaction() as db:
            for sub, _, upto, max_seq in batch:
                if 200 <= status < 300:
                    db.execute(
                        "UPDATE subscriptions SET cursor_version = ?, cursor_seq = ?, pending_since = NULL,"
                        " retry_at = NULL, failing_since = NULL WHERE id = ?",
                        (upto, max(max_seq, sub["cursor_seq"]), sub["id"]),
                    )
                elif status in (0, 408, 429) or 500 <= status < 600:
                    failing = sub["failing_since"] or clock
                    if clock - failing > self.config.retry_window_s:
                        LOG.warning("subscription %s: notifications failed for too long, deleted", sub["id"])
                        db.execute("DELETE FROM subscriptions WHERE id = ?", (sub["id"],))
                    else:
                        db.execute(
                            "UPDATE subscriptions SET retry_at = ?, failing_since = ? WHERE id = ?",
                            (clock + self.config.retry_s, failing, sub["id"]),
                        )
                else:
                    # Any other answer: no retries, and the subscription is deleted (Working with webhooks, Note).
                    LOG.warning("subscription %s: notification answered %s, deleted", sub["id"], status)
                    db.execute("DELETE FROM subscriptions WHERE id = ?", (sub["id"],))
        if 200 <= status < 300:
            self.sent += 1


def _before(stamp: str) -> str:
    """The second before a canonical timestamp (``2026-01-01T00:00:05.123456Z`` -> ``2026-01-01T00:00:04Z``)."""
    from sandbox.odata import parse_datetime

    return (parse_datetime(stamp) - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")


def create_schema(db: sqlite3.Connection) -> None:
    """The ``subscriptions`` table (called by :class:`sandbox.store.Store`)."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS subscriptions (id TEXT PRIMARY KEY, api TEXT NOT NULL, entity_set TEXT NOT NULL,"
        " version INTEGER NOT NULL, expires REAL NOT NULL, cursor_version INTEGER NOT NULL,"
        " cursor_seq INTEGER NOT NULL, pending_since REAL, retry_at REAL, failing_since REAL, body TEXT NOT NULL)"
    )
