"""The Business Central webhook subscriptions of this deployment: one per entity set the mappings read.

Rules ("Working with webhooks in Dynamics 365 Business Central",
https://learn.microsoft.com/dynamics365/business-central/dev-itpro/api-reference/v2.0/dynamics-subscriptions):
a subscription expires three days after it was created or renewed, so :func:`ensure_subscriptions` renews it
``renew_before`` ahead; one the service dropped (expired, or deleted after the receiver answered an error other
than 408/429/5xx) is missing from ``GET subscriptions`` and is created again; entity sets that the service refuses
(not webhook-enabled, e.g. ``contacts``) are reported and left to the schedule. The ``clientState`` is a fresh
random secret per subscription; the state store keeps only its SHA-256, which the receiver compares.

A refusal is remembered (``dynamics.settings``, ``bc_webhook_refused:<entity set>``) and not asked again for
``retry_refused_after`` (a day), so a steady-state run is one ``GET subscriptions`` per API route and nothing else.
Business Central answers 400 both for an entity set without webhooks and for a failed handshake (the receiver
down), so a refusal is remembered only when the same run shows the handshake works (a subscription created,
renewed or recovered) or it was remembered before; a wrongly remembered one costs latency only, as a mapping
whose entity set holds no live subscription is never skipped by the cron (:mod:`dynamics_jobqueue.sync.job_queue`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from dynamics_jobqueue.hooks.errors import ApiError, NotFoundError
from dynamics_jobqueue.webhooks import queries

if TYPE_CHECKING:
    from collections.abc import Iterable

    from dynamics_jobqueue.hooks.business_central import BusinessCentralHook, Subscription
    from dynamics_jobqueue.hooks.state import StateStoreHook

LOG = logging.getLogger(__name__)


def client_state_hash(client_state: str) -> str:
    """SHA-256 (hex) of a clientState, as stored."""
    return hashlib.sha256(client_state.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class StoredSubscription:
    subscription_id: str
    entity_set: str
    client_state_sha256: str
    expires_at: datetime


@dataclass
class Outcome:
    """What one :func:`ensure_subscriptions` call did, by entity set."""

    created: list[str] = field(default_factory=list)
    renewed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    unsupported: dict[str, str] = field(default_factory=dict)


def stored_subscriptions(store: StateStoreHook) -> dict[str, StoredSubscription]:
    """The subscriptions in the state store, by subscription id."""
    with store.transaction() as cur:
        cur.execute(queries.BC_SUBSCRIPTIONS)
        return {row[0]: StoredSubscription(*row) for row in cur.fetchall()}


def _save(store: StateStoreHook, sub: Subscription, entity_set: str, client_state: str | None) -> None:
    with store.transaction() as cur:
        if client_state is None:
            cur.execute(queries.BC_RENEWED, (sub.expires, sub.etag, sub.subscription_id))
            return
        cur.execute(queries.BC_FORGET_ENTITY_SET, (entity_set,))
        cur.execute(
            queries.BC_INSERT_SUBSCRIPTION,
            (
                sub.subscription_id,
                entity_set,
                sub.resource,
                sub.notification_url,
                client_state_hash(client_state),
                sub.expires,
                sub.etag,
            ),
        )


def _forget_refused(store: StateStoreHook, entity_set: str) -> None:
    with store.transaction() as cur:
        cur.execute(queries.BC_FORGET_REFUSED, (entity_set,))


def _forget(store: StateStoreHook, subscription_id: str) -> None:
    with store.transaction() as cur:
        cur.execute(queries.BC_FORGET_SUBSCRIPTION, (subscription_id,))


def refused_entity_sets(store: StateStoreHook) -> dict[str, tuple[str, datetime]]:
    """The remembered refusals: ``entity set -> (Business Central's message, when)``."""
    with store.transaction() as cur:
        cur.execute(queries.BC_REFUSED)
        return {row[0]: (row[1] or "", row[2]) for row in cur.fetchall()}


def ensure_subscriptions(
    hook: BusinessCentralHook,
    store: StateStoreHook,
    entity_sets: Iterable[str],
    notification_url: str,
    *,
    renew_before: timedelta = timedelta(days=1),
    retry_refused_after: timedelta = timedelta(days=1),
    now: datetime | None = None,
) -> Outcome:
    """Make Business Central hold exactly one live subscription per entity set, to ``notification_url``.

    One ``GET subscriptions`` per API route; then per entity set nothing (valid long enough, or refused less than
    ``retry_refused_after`` ago), a renewal (PATCH), or a creation (POST, when none exists or the one we stored
    was lost). Subscriptions to ``notification_url`` that we do not hold (a crash between create and save, a
    removed mapping) are deleted.

    :raises ApiError: typed, when Business Central cannot be read or refuses for another reason than an
        entity set without webhooks (400 on create).
    """
    now = now or datetime.now(UTC)
    wanted = list(dict.fromkeys(entity_sets))
    outcome = Outcome()
    live: dict[str, Subscription] = {}
    for route in sorted({hook.route(entity_set) for entity_set in wanted} | {"api/v2.0"}):
        live.update((s.subscription_id, s) for s in hook.subscriptions(route))
    stored = stored_subscriptions(store)
    by_set = {s.entity_set: s for s in stored.values()}
    remembered = refused_entity_sets(store)
    refused: dict[str, str] = {}
    for entity_set in wanted:
        mine = by_set.get(entity_set)
        if mine is None and entity_set in remembered and now - remembered[entity_set][1] < retry_refused_after:
            outcome.unsupported[entity_set] = remembered[entity_set][0]
            continue
        current = live.get(mine.subscription_id) if mine else None
        lost = current is None
        if current is not None and current.notification_url == notification_url:
            if current.expires - now > renew_before:
                outcome.kept.append(entity_set)
                continue
            try:
                _save(store, hook.renew_subscription(current), entity_set, None)
                outcome.renewed.append(entity_set)
                continue
            except NotFoundError:
                LOG.warning("subscription to %s expired while renewing it; creating a new one", entity_set)
                lost = True
        elif current is not None:  # the receiver moved: subscribe the new URL, drop the old subscription
            _delete(hook, current)
        if mine is not None:
            _forget(store, mine.subscription_id)
            if lost:
                LOG.warning("subscription to %s was lost (expired or dropped by the service); recreating", entity_set)
                outcome.recovered.append(entity_set)
        client_state = secrets.token_urlsafe(32)
        try:
            created = hook.create_subscription(entity_set, notification_url, client_state)
        except ApiError as exc:
            if exc.status != 400:
                raise
            outcome.unsupported[entity_set] = refused[entity_set] = str(exc)
            LOG.info("no webhook for %s (%s): the schedule syncs it", entity_set, exc)
            continue
        _save(store, created, entity_set, client_state)
        if entity_set in remembered:
            _forget_refused(store, entity_set)
        if entity_set not in outcome.recovered:
            outcome.created.append(entity_set)
    handshake_works = bool(outcome.created or outcome.renewed or outcome.recovered)
    for entity_set, reason in refused.items():
        if handshake_works or entity_set in remembered:
            with store.transaction() as cur:
                cur.execute(queries.BC_REMEMBER_REFUSED, (entity_set, reason))
    for entity_set in remembered.keys() - set(wanted):
        _forget_refused(store, entity_set)
    held = {s.subscription_id for s in stored_subscriptions(store).values()}
    for sub in live.values():
        if sub.notification_url == notification_url and sub.subscription_id not in held:
            _delete(hook, sub)
            outcome.deleted.append(sub.entity_set)
    for sub_id, row in stored.items():
        if row.entity_set not in wanted:
            if sub_id in live:
                _delete(hook, live[sub_id])
            _forget(store, sub_id)
            outcome.deleted.append(row.entity_set)
    return outcome


def _delete(hook: BusinessCentralHook, sub: Subscription) -> None:
    with contextlib.suppress(NotFoundError):  # already gone: what we wanted
        hook.delete_subscription(sub)


def delete_all(hook: BusinessCentralHook, store: StateStoreHook) -> list[str]:
    """Unsubscribe everything this deployment holds (webhooks turned off). :return: the entity sets."""
    routes = {"api/v2.0"}
    stored = stored_subscriptions(store)
    live: dict[str, Subscription] = {}
    for route in routes | {hook.route(s.entity_set) for s in stored.values()}:
        live.update((s.subscription_id, s) for s in hook.subscriptions(route))
    for sub_id in stored:
        if sub_id in live:
            _delete(hook, live[sub_id])
        _forget(store, sub_id)
    for entity_set in refused_entity_sets(store):
        _forget_refused(store, entity_set)
    return sorted(s.entity_set for s in stored.values())
