"""The receiver of Business Central webhook notifications, mounted in Airflow's api-server by the plugin
(``/dynamics-webhooks/business-central``).

Contract ("Working with webhooks in Dynamics 365 Business Central",
https://learn.microsoft.com/dynamics365/business-central/dev-itpro/api-reference/v2.0/dynamics-subscriptions):

- **Handshake**: on create and renew Business Central sends ``validationToken`` on the query string; the answer is
  ``200`` with the token as the plain-text body.
- **Notifications**: a POST of ``{"value": [...]}``, possibly several subscriptions' notifications at once, each
  with its ``clientState``. A notification counts only when its subscription is one this deployment holds
  (``dynamics.bc_webhook_subscriptions``) and its clientState's SHA-256 matches; others are refused and logged
  (subscription id and reason, never the clientState). A POST with no valid notification is answered ``401``.
- **Effect**: per entity set with new notifications, one Airflow **asset event** on ``business_central/<set>``
  (:mod:`dynamics_jobqueue.sync.assets`), recorded with Airflow's own asset manager - what ``POST
  /api/v2/assets/events`` does - so crm_sync (scheduled on those assets) runs the affected mappings.
- **Idempotent**: accepted notifications are remembered (``dynamics.bc_webhook_notifications``, four days: longer
  than the service's 36 hours of retries); a notification sent again records no second event. The asset event is
  recorded *before* the notification is remembered, so a failure in between makes Business Central send again
  (answer ``503``) instead of losing the change.

The **Dataverse** route (``/dynamics-webhooks/dataverse``) receives what the webhook of
:mod:`dynamics_jobqueue.webhooks.dataverse_steps` sends ("Use webhooks to create external handlers for server
events", https://learn.microsoft.com/power-apps/developer/data-platform/use-webhooks): a POST of one operation's
``RemoteExecutionContext`` (JSON), with the HttpHeader secret.

- **Secret**: the header's SHA-256 is compared in constant time with the stored one; a POST without it or with
  another is answered ``401`` and logged (organisation and table, never the value).
- **Context**: ``MessageName``, ``PrimaryEntityName`` (a table's logical name), ``PrimaryEntityId``,
  ``InitiatingUserId``/``UserId``, ``OperationId`` (the system job; else ``RequestId``), ``OrganizationId``; a body
  that is not such a context is answered ``400``.
- **Own writes**: a change initiated by the integration user (the sync's own write; the user ``WhoAmI`` names)
  records nothing, as the change-tracking trigger ignores rows it modified.
- **Effect**: one asset event on ``dataverse/<entity set>`` (the table's entity set, from the registered steps).
- **Idempotent**: the operation id is remembered four days (``dynamics.dataverse_webhook_deliveries``); a context
  sent again records nothing. If the asset event cannot be recorded the answer is ``503``: for 502/503/504 the
  service makes one more attempt (the docs' Troubleshoot section); after that the system job fails and the
  change-tracking safety poll of the table brings the change.

This app has no Airflow login: the services cannot sign in; the clientState and the header are the shared secrets.
"""

from __future__ import annotations

import functools
import hmac
import json
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from dynamics_jobqueue.hooks.business_central import Notification, parse_notifications
from dynamics_jobqueue.hooks.errors import MalformedResponseError
from dynamics_jobqueue.sync.assets import crm_asset, erp_asset
from dynamics_jobqueue.webhooks import queries
from dynamics_jobqueue.webhooks.dataverse_steps import HEADER, secret_hash, stored_endpoints
from dynamics_jobqueue.webhooks.subscriptions import client_state_hash, stored_subscriptions

if TYPE_CHECKING:
    from collections.abc import Callable

    from dynamics_jobqueue.hooks.state import StateStoreHook

LOG = logging.getLogger(__name__)
MAX_TOKEN = 1024
MAX_BODY = 16 * 1024 * 1024
KEEP_DAYS = 4


class AssetNotFound(RuntimeError):
    """The asset is not known to Airflow (crm_sync not parsed yet)."""


def record_asset_event(name: str, uri: str, extra: dict[str, Any]) -> None:
    """Record an asset event with Airflow's asset manager (as the REST API's ``POST /assets/events`` does).

    :raises AssetNotFound: when Airflow has no such asset.
    """
    from airflow.assets.manager import asset_manager
    from airflow.serialization.definitions.assets import SerializedAssetUniqueKey
    from airflow.utils.session import create_session

    with create_session() as session:
        event = asset_manager.register_asset_change(
            asset=SerializedAssetUniqueKey(name=name, uri=uri), extra=extra, source_is_api=True, session=session
        )
        if event is None:
            raise AssetNotFound(name)


def _key(n: Notification) -> tuple[str, str, str, str]:
    return (n.subscription_id, n.resource, n.change_type, n.last_modified or "")


def accept(
    body: bytes,
    store: StateStoreHook,
    record: Callable[[str, str, dict[str, Any]], None] = record_asset_event,
) -> tuple[int, dict[str, Any]]:
    """Check and record one notification POST. :return: ``(status, JSON answer)``."""
    try:
        notifications = parse_notifications(body)
    except MalformedResponseError as exc:
        LOG.warning("refused a webhook POST: %s", exc)
        return 400, {"error": "not a Business Central notification"}
    held = stored_subscriptions(store)
    valid: list[Notification] = []
    refused = 0
    for n in notifications:
        mine = held.get(n.subscription_id)
        if mine is None:
            reason = "unknown subscription"
        elif not hmac.compare_digest(client_state_hash(n.client_state), mine.client_state_sha256):
            reason = "wrong clientState"
        elif n.entity_set != mine.entity_set:
            reason = f"resource outside the subscription ({n.entity_set})"
        else:
            valid.append(n)
            continue
        refused += 1
        LOG.warning("refused a webhook notification of subscription %r: %s", n.subscription_id[:64], reason)
    if not valid:
        return 401, {"error": "no notification of a subscription held here", "refused": refused}
    keys = list(dict.fromkeys(_key(n) for n in valid))
    with store.transaction() as cur:
        cur.execute(queries.BC_SEEN_NOTIFICATIONS, [list(column) for column in zip(*keys, strict=True)])
        seen = {tuple(row) for row in cur.fetchall()}
    new = [k for k in keys if k not in seen]
    by_set: dict[str, dict[str, Any]] = {}
    for n in valid:
        if _key(n) in new:
            entry = by_set.setdefault(n.entity_set, {"notifications": 0, "collection": False})
            entry["notifications"] += 1
            if n.change_type == "collection":  # many records changed: the resource's $filter selects them
                entry["collection"] = True
                entry.setdefault("collection_resources", []).append(n.resource)
    for entity_set, summary in by_set.items():
        asset = erp_asset(entity_set)
        try:
            record(asset.name, asset.uri, {"source": "business_central_webhook", **summary})
        except Exception:
            LOG.exception("could not record the asset event of %s; Business Central will send again", entity_set)
            return 503, {"error": "asset event not recorded"}
    if new:
        with store.transaction() as cur:
            cur.executemany(queries.BC_REMEMBER_NOTIFICATION, new)
            cur.execute(queries.BC_FORGET_OLD_NOTIFICATIONS, (KEEP_DAYS,))
    LOG.info(
        "webhook: %d notification(s) accepted (%d new, entity sets %s), %d refused",
        len(valid),
        len(new),
        ", ".join(sorted(by_set)) or "-",
        refused,
    )
    return 202, {"accepted": len(valid), "new": len(new), "refused": refused}


_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


@dataclass(frozen=True)
class DataverseContext:
    """The parts of a ``RemoteExecutionContext`` the receiver uses (names as in the context)."""

    message: str  # MessageName: Create, Update, Delete
    table: str  # PrimaryEntityName: the table's logical name
    record_id: str  # PrimaryEntityId
    user_id: str  # InitiatingUserId (else UserId): who made the change
    operation_id: str  # OperationId (the system job), else RequestId
    organization_id: str  # OrganizationId


def parse_execution_context(body: bytes) -> DataverseContext:
    """Parse a webhook body. :raises ValueError: when it is not a ``RemoteExecutionContext`` with those fields."""
    data = json.loads(body.decode("utf-8-sig"))
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")

    def text(*names: str) -> str:
        for name in names:
            value = data.get(name)
            if isinstance(value, str) and value:
                return value
        raise ValueError(f"no {'/'.join(names)}")

    context = DataverseContext(
        message=text("MessageName"),
        table=text("PrimaryEntityName"),
        record_id=text("PrimaryEntityId"),
        user_id=text("InitiatingUserId", "UserId").lower(),
        operation_id=text("OperationId", "RequestId").lower(),
        organization_id=text("OrganizationId"),
    )
    for name in ("record_id", "user_id", "operation_id"):
        if not _GUID.match(getattr(context, name)):
            raise ValueError(f"{name} is not a GUID")
    return context


def accept_dataverse(
    body: bytes,
    key: str | None,
    store: StateStoreHook,
    integration_user: Callable[[], str],
    record: Callable[[str, str, dict[str, Any]], None] = record_asset_event,
    organization: str = "",
) -> tuple[int, dict[str, Any]]:
    """Check and record one Dataverse webhook POST. :return: ``(status, JSON answer)``."""
    endpoints = stored_endpoints(store)
    given = secret_hash(key or "")
    valid = any(hmac.compare_digest(given, e.secret_sha256) for e in endpoints) and bool(key)
    if not valid:
        LOG.warning(
            "refused a Dataverse webhook POST from %r: %s %s",
            organization[:128],
            "missing" if not key else "wrong",
            HEADER,
        )
        return 401, {"error": "not this deployment's webhook"}
    try:
        context = parse_execution_context(body)
    except (ValueError, UnicodeDecodeError) as exc:
        LOG.warning("refused a Dataverse webhook POST: not a RemoteExecutionContext (%s)", exc)
        return 400, {"error": "not a RemoteExecutionContext"}
    try:
        me = integration_user().lower()
    except Exception:
        LOG.exception("could not ask Dataverse who the integration user is; answering 503")
        return 503, {"error": "integration user unknown"}
    if context.user_id == me:  # the sync's own write: recording it would wake crm_sync for nothing
        return 200, {"ignored": "a change of the integration user"}
    with store.transaction() as cur:
        cur.execute(queries.DV_ENTITY_SET_OF, (context.table,))
        row = cur.fetchone()
        entity_set = row[0] if row else None
        cur.execute(queries.DV_SEEN_DELIVERY, (context.operation_id,))
        seen = cur.fetchone() is not None
    if entity_set is None:
        LOG.info("Dataverse webhook for %s, which no mapping reads: ignored", context.table)
        return 200, {"ignored": f"no mapping reads {context.table}"}
    if seen:
        return 200, {"new": 0}
    asset = crm_asset(entity_set)
    extra = {"source": "dataverse_webhook", "message": context.message, "table": context.table, "records": 1}
    try:
        record(asset.name, asset.uri, extra)
    except Exception:
        LOG.exception("could not record the asset event of %s; answering 503 (Dataverse tries once more)", entity_set)
        return 503, {"error": "asset event not recorded"}
    with store.transaction() as cur:
        cur.execute(queries.DV_REMEMBER_DELIVERY, (context.operation_id, context.table, context.message))
        cur.execute(queries.DV_FORGET_OLD_DELIVERIES, (KEEP_DAYS,))
    LOG.info(
        "Dataverse webhook: %s of %s %s recorded on %s", context.message, context.table, context.record_id, asset.name
    )
    return 202, {"new": 1, "asset": asset.name}


@functools.cache
def _who_am_i(conn_id: str) -> str:
    from dynamics_jobqueue.hooks.dataverse import DataverseHook

    return DataverseHook(conn_id).who_am_i()


def create_webhook_app(
    store: Callable[[], StateStoreHook] | None = None,
    record: Callable[[str, str, dict[str, Any]], None] = record_asset_event,
    integration_user: Callable[[], str] | None = None,
) -> FastAPI:
    """The receiver app.

    :param store: the state store factory (default: the ``dynamics_state`` connection).
    :param record: records one asset event ``(name, uri, extra)`` (default: Airflow's asset manager).
    :param integration_user: the integration user's ``systemuserid`` (default: ``WhoAmI`` of the
        ``dataverse_default`` connection, asked once per process).
    """
    app = FastAPI(title="Dynamics webhooks", docs_url=None, redoc_url=None, openapi_url=None)

    def state() -> StateStoreHook:
        if store is not None:
            return store()
        from dynamics_jobqueue.console.app import get_store

        return get_store()

    @app.api_route("/business-central", methods=["GET", "POST"])
    async def business_central(request: Request) -> Response:
        token = request.query_params.get("validationToken")
        if token is not None:
            if not token or len(token) > MAX_TOKEN:
                return PlainTextResponse("bad validationToken", status_code=400)
            return PlainTextResponse(token, status_code=200)
        if request.method != "POST":
            return PlainTextResponse("POST notifications here", status_code=405)
        body = await request.body()
        if len(body) > MAX_BODY:
            return PlainTextResponse("too large", status_code=413)
        status, answer = await run_in_threadpool(accept, body, state(), record)
        return JSONResponse(answer, status_code=status)

    def me() -> str:
        return integration_user() if integration_user is not None else _who_am_i("dataverse_default")

    @app.post("/dataverse")
    async def dataverse(request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_BODY:
            return PlainTextResponse("too large", status_code=413)
        try:
            status, answer = await run_in_threadpool(
                accept_dataverse,
                body,
                request.headers.get(HEADER),
                state(),
                me,
                record,
                request.headers.get("x-ms-dynamics-organization", ""),
            )
        except Exception:
            # The state store is unreachable: 503 is one of the answers Dataverse tries once more after (a 500
            # would fail the system job at once).
            LOG.exception("could not check a Dataverse webhook POST; answering 503")
            return JSONResponse({"error": "state store unavailable"}, status_code=503)
        return JSONResponse(answer, status_code=status)

    return app
