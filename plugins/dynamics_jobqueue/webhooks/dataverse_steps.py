"""The Dataverse webhook of this deployment: one service endpoint and its steps, one per table the mappings read
and message.

Rules ("Use webhooks to create external handlers for server events" and "Register a WebHook",
https://learn.microsoft.com/power-apps/developer/data-platform/use-webhooks, .../register-web-hook): a webhook is a
``serviceendpoint`` row of contract 8 (Webhook) with the receiver's ``url`` and an authentication the receiver
checks; a ``sdkmessageprocessingstep`` row whose event handler is that endpoint makes Dataverse POST the
operation's ``RemoteExecutionContext`` to it. The steps here are asynchronous (mode 1) and PostOperation (stage
40): the write is never slowed down or failed by the receiver, and the system job is deleted when it succeeds
(``asyncautodelete``).

Authentication: **HttpHeader** with a random secret (:data:`HEADER`), rather than WebhookKey or HttpQueryString,
because a secret in the query string ends up in access logs (the api-server's, proxies') with the URL, and a
header does not. ``authvalue`` cannot be read back, so the state store keeps only the secret's SHA-256 (as the
Business Central clientState); whenever the stored hash cannot be trusted to match (no stored row, another URL)
the endpoint is updated with a fresh secret.

:func:`ensure_dataverse_webhook` is idempotent: it creates what is missing (the endpoint by its name
:data:`ENDPOINT_NAME`, a step deleted in Dataverse), deletes steps no mapping needs and leaves the rest.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dynamics_jobqueue.hooks.dataverse import MODE_ASYNCHRONOUS, STAGE_POST_OPERATION
from dynamics_jobqueue.hooks.errors import NotFoundError
from dynamics_jobqueue.webhooks import queries

if TYPE_CHECKING:
    from collections.abc import Iterable

    from dynamics_jobqueue.hooks.dataverse import DataverseHook
    from dynamics_jobqueue.hooks.state import StateStoreHook

LOG = logging.getLogger(__name__)
#: The service endpoint's name: how a later run (or an administrator) recognises this deployment's webhook.
ENDPOINT_NAME = "Dynamics job queue: crm_sync"
#: The header that carries the shared secret (HttpHeader authentication).
HEADER = "x-dynamics-jobqueue-key"
MESSAGES = ("Create", "Update", "Delete")


def secret_hash(secret: str) -> str:
    """SHA-256 (hex) of the webhook secret, as stored."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class StoredEndpoint:
    serviceendpoint_id: str
    name: str
    url: str
    header_name: str
    secret_sha256: str


@dataclass(frozen=True)
class StoredStep:
    step_id: str
    serviceendpoint_id: str
    logical_name: str
    entity_set: str
    message: str


@dataclass
class Outcome:
    """What one :func:`ensure_dataverse_webhook` call did. Steps are named ``<Message> <table>``."""

    endpoint: str = ""  # created | updated | kept
    created: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    #: ``<Message> <table>`` pairs without a message filter (the table does not support that message).
    unsupported: list[str] = field(default_factory=list)
    #: The entity sets of the recovered steps (``accounts``): their changes since the loss were not delivered.
    recovered_entity_sets: list[str] = field(default_factory=list)
    #: Whether the run took the steady-state path (one request: the endpoint's steps, as the state store knows
    #: them).
    steady: bool = False


def stored_endpoints(store: StateStoreHook) -> list[StoredEndpoint]:
    with store.transaction() as cur:
        cur.execute(queries.DV_ENDPOINTS)
        return [StoredEndpoint(*row) for row in cur.fetchall()]


def stored_steps(store: StateStoreHook) -> list[StoredStep]:
    with store.transaction() as cur:
        cur.execute(queries.DV_STEPS)
        return [StoredStep(*row) for row in cur.fetchall()]


def _steady(hook: DataverseHook, store: StateStoreHook, wanted_sets: list[str], url: str, outcome: Outcome) -> bool:
    """The steady-state check: whether Dataverse still holds exactly the steps the state store knows, read in one
    request (the steps whose event handler is the stored endpoint), for the same entity sets and URL. Fills
    ``outcome`` (everything kept; the messages without a stored step of a table are its unsupported ones, as the
    full run that stored them found) and returns True; False when the full path must run.

    Not seen here (until something else differs): an administrator editing the endpoint's URL or a step's message
    in place; deleting the endpoint deletes its steps, which is seen."""
    endpoints = [e for e in stored_endpoints(store) if e.name == ENDPOINT_NAME]
    if len(endpoints) != 1 or endpoints[0].url != url or endpoints[0].header_name != HEADER:
        return False
    endpoint_id = endpoints[0].serviceendpoint_id
    steps = [s for s in stored_steps(store) if s.serviceendpoint_id == endpoint_id]
    if {s.entity_set for s in steps} != set(wanted_sets):
        return False
    live = hook.webhook_steps(endpoint_id)
    if sorted((s.step_id, s.mode, s.stage) for s in live) != sorted(
        (s.step_id, MODE_ASYNCHRONOUS, STAGE_POST_OPERATION) for s in steps
    ):
        return False
    outcome.endpoint = "kept"
    outcome.steady = True
    for entity_set in wanted_sets:
        held = {s.message: s.logical_name for s in steps if s.entity_set == entity_set}
        table = next(iter(held.values()))
        for message in MESSAGES:
            (outcome.kept if message in held else outcome.unsupported).append(f"{message} {table}")
    LOG.info("Dataverse webhook %s: all %d steps in place (steady state)", endpoint_id, len(steps))
    return True


def _ensure_endpoint(hook: DataverseHook, store: StateStoreHook, url: str, outcome: Outcome) -> str:
    live = hook.webhook_endpoints(ENDPOINT_NAME)
    stored = {e.serviceendpoint_id: e for e in stored_endpoints(store)}
    for endpoint in live:
        mine = stored.get(endpoint.serviceendpoint_id)
        if mine is not None and endpoint.url == url and mine.url == url and mine.header_name == HEADER:
            outcome.endpoint = "kept"
            chosen = endpoint.serviceendpoint_id
            break
    else:
        secret = secrets.token_urlsafe(32)
        if live:  # ours by name, but the stored secret cannot be trusted: rotate it (and move the URL)
            chosen = live[0].serviceendpoint_id
            hook.update_webhook_endpoint(chosen, url, HEADER, secret)
            outcome.endpoint = "updated"
        else:
            chosen = hook.create_webhook_endpoint(ENDPOINT_NAME, url, HEADER, secret).lower()
            outcome.endpoint = "created"
        with store.transaction() as cur:
            cur.execute(queries.DV_FORGET_ENDPOINT_NAMED, (ENDPOINT_NAME,))
            cur.execute(queries.DV_SAVE_ENDPOINT, (chosen, ENDPOINT_NAME, url, HEADER, secret_hash(secret)))
    for extra in live:  # two endpoints of our name (a crash between create and save): keep one
        if extra.serviceendpoint_id != chosen:
            _delete_endpoint(hook, extra.serviceendpoint_id)
    return chosen


def _delete_endpoint(hook: DataverseHook, endpoint_id: str) -> None:
    for step in hook.webhook_steps(endpoint_id):
        with contextlib.suppress(NotFoundError):
            hook.delete("sdkmessageprocessingsteps", step.step_id)
    with contextlib.suppress(NotFoundError):
        hook.delete("serviceendpoints", endpoint_id)


def ensure_dataverse_webhook(
    hook: DataverseHook, store: StateStoreHook, entity_sets: Iterable[str], url: str
) -> Outcome:
    """Make Dataverse hold this deployment's webhook to ``url`` and exactly one asynchronous PostOperation step
    per table of ``entity_sets`` and message (Create, Update, Delete), and the state store know them.

    Steady state (the state store holds the endpoint to ``url`` and steps of exactly ``entity_sets``): one request,
    the endpoint's steps, compared with the stored ones; when they match the run ends there. Otherwise (a step
    missing or extra, the endpoint gone, the mappings' tables changed) the full path: the endpoint by name; the
    table definitions (entity set -> table); the three messages; per table its message filters; the endpoint's
    steps; then one create per missing step and one delete per unneeded one.

    :param entity_sets: the Dataverse entity sets the table mappings read (``accounts``).
    :raises ApiError: typed, when Dataverse cannot be read or refuses a registration (e.g. a URL on a port
        other than 80/443).
    """
    outcome = Outcome()
    wanted_sets = list(dict.fromkeys(entity_sets))
    if _steady(hook, store, wanted_sets, url, outcome):
        return outcome
    # Read before the endpoint is (re)created: a new endpoint forgets the stored steps of the old one, and steps
    # that existed before are recovered, not created (their changes since the loss were not delivered).
    before = {(s.logical_name, s.message): s.step_id for s in stored_steps(store)}
    endpoint_id = _ensure_endpoint(hook, store, url, outcome)
    tables = hook.table_names(wanted_sets)
    messages = hook.sdk_messages(MESSAGES)
    message_names = {v: k for k, v in messages.items()}
    wanted: dict[tuple[str, str], tuple[str, str]] = {}  # (table, message) -> (filter id, entity set)
    for entity_set in wanted_sets:
        table = tables.get(entity_set)
        if table is None:
            raise NotFoundError(f"no table with the entity set {entity_set!r}", entity_set=entity_set)
        filters = {f.sdkmessage_id: f for f in hook.message_filters(table)}
        for message in MESSAGES:
            found = filters.get(messages.get(message, ""))
            if found is None:
                outcome.unsupported.append(f"{message} {table}")
                continue
            wanted[(table, message)] = (found.sdkmessagefilter_id, entity_set)
    by_filter = {filter_id: key for key, (filter_id, _) in wanted.items()}
    held: dict[tuple[str, str], str] = {}
    for step in hook.webhook_steps(endpoint_id):
        key = by_filter.get(step.sdkmessagefilter_id or "")
        usable = (
            key is not None
            and key not in held
            and message_names.get(step.sdkmessage_id or "") == key[1]
            and step.mode == MODE_ASYNCHRONOUS
            and step.stage == STAGE_POST_OPERATION
        )
        if usable and key is not None:
            held[key] = step.step_id
            outcome.kept.append(f"{key[1]} {key[0]}")
            continue
        with contextlib.suppress(NotFoundError):
            hook.delete("sdkmessageprocessingsteps", step.step_id)
        outcome.deleted.append(step.name)
    for (table, message), (filter_id, entity_set) in wanted.items():
        if (table, message) in held:
            continue
        name = f"{ENDPOINT_NAME}: {message} of {table}"
        held[(table, message)] = hook.create_webhook_step(name, endpoint_id, messages[message], filter_id).lower()
        if (table, message) in before:
            outcome.recovered.append(f"{message} {table}")
            if entity_set not in outcome.recovered_entity_sets:
                outcome.recovered_entity_sets.append(entity_set)
        else:
            outcome.created.append(f"{message} {table}")
    with store.transaction() as cur:
        cur.execute(queries.DV_FORGET_STEPS, (endpoint_id,))
        for (table, message), step_id in held.items():
            cur.execute(queries.DV_SAVE_STEP, (step_id, endpoint_id, table, wanted[(table, message)][1], message))
    LOG.info(
        "Dataverse webhook %s (%s): steps created %s, kept %d, recovered %s, deleted %s, unsupported %s",
        endpoint_id,
        outcome.endpoint,
        outcome.created,
        len(outcome.kept),
        outcome.recovered,
        outcome.deleted,
        outcome.unsupported,
    )
    return outcome


def delete_dataverse_webhook(hook: DataverseHook, store: StateStoreHook) -> int:
    """Remove this deployment's webhook and its steps (webhooks turned off). :return: endpoints deleted."""
    live = hook.webhook_endpoints(ENDPOINT_NAME)
    for endpoint in live:
        _delete_endpoint(hook, endpoint.serviceendpoint_id)
    with store.transaction() as cur:
        cur.execute(queries.DV_FORGET_ENDPOINTS)
    return len(live)
