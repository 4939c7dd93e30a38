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

This app has no Airflow login: Business Central cannot sign in; the clientState is the shared secret.
"""

from __future__ import annotations

import hmac
import logging
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from dynamics_jobqueue.hooks.business_central import Notification, parse_notifications
from dynamics_jobqueue.hooks.errors import MalformedResponseError
from dynamics_jobqueue.sync.assets import erp_asset
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
        cur.execute(
            "SELECT subscription_id, resource, change_type, last_modified FROM dynamics.bc_webhook_notifications"
            " WHERE (subscription_id, resource, change_type, last_modified) IN"
            " (SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[]))",
            [list(column) for column in zip(*keys, strict=True)],
        )
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
            cur.executemany(
                "INSERT INTO dynamics.bc_webhook_notifications (subscription_id, resource, change_type, last_modified)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                new,
            )
            cur.execute(
                "DELETE FROM dynamics.bc_webhook_notifications WHERE received_at < now() - make_interval(days => %s)",
                (KEEP_DAYS,),
            )
    LOG.info(
        "webhook: %d notification(s) accepted (%d new, entity sets %s), %d refused",
        len(valid),
        len(new),
        ", ".join(sorted(by_set)) or "-",
        refused,
    )
    return 202, {"accepted": len(valid), "new": len(new), "refused": refused}


def create_webhook_app(
    store: Callable[[], StateStoreHook] | None = None,
    record: Callable[[str, str, dict[str, Any]], None] = record_asset_event,
) -> FastAPI:
    """The receiver app.

    :param store: the state store factory (default: the ``dynamics_state`` connection).
    :param record: records one asset event ``(name, uri, extra)`` (default: Airflow's asset manager).
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

    return app
