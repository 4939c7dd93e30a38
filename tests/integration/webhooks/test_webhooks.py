"""Business Central webhooks end to end over real HTTP: the subscriptions the webhook_subscriptions DAG keeps (create,
keep, renew, recover a lost one, delete), and the receiver (handshake, clientState, forged and repeated
notifications, an outage, a burst of 10,000 changes) recording one asset event per entity set and delivery.

The receiver app runs in uvicorn on loopback with a recorder in place of Airflow's asset manager (the bench and
tests/dags run it inside a real api-server)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import unquote

import pytest
import requests
from webhook_receiver import Receiver

from dynamics_jobqueue.hooks.business_central import BusinessCentralHook
from dynamics_jobqueue.sync.loader import load_mappings
from dynamics_jobqueue.webhooks.subscriptions import client_state_hash, ensure_subscriptions, stored_subscriptions

ERP_SETS = list(dict.fromkeys(m.erp.entity_set for m in load_mappings()))
#: Not on the documented list of webhook-enabled APIs: Business Central refuses subscriptions to them.
WITHOUT_WEBHOOKS = ["contacts", "salespeoplePurchasers"]
WITH_WEBHOOKS = [s for s in ERP_SETS if s not in WITHOUT_WEBHOOKS]


@pytest.fixture
def receiver(sandbox: Any, state_store: Any) -> Iterator[Receiver]:
    receiver = Receiver(state_store)
    receiver.start()
    yield receiver
    receiver.stop()


@pytest.fixture
def hook(sandbox: Any) -> BusinessCentralHook:
    sandbox.admin("webhooks", {"delay_s": 1, "retry_s": 1, "max_notifications": 1000, "lifetime_s": 3 * 86400})
    return BusinessCentralHook()


def _live(hook: BusinessCentralHook) -> dict[str, Any]:
    return {s.entity_set: s for route in ("api/v2.0", "api/cronus/integration/v1.0") for s in hook.subscriptions(route)}


def _customer(hook: BusinessCentralHook) -> dict[str, Any]:
    return next(hook.iter_pages("customers", page_size=1))[0]


def test_subscriptions_are_created_kept_renewed_recovered_and_deleted(sandbox, state_store, hook, receiver) -> None:
    first = ensure_subscriptions(hook, state_store, ERP_SETS, receiver.url)
    assert sorted(first.created) == sorted(WITH_WEBHOOKS)
    assert sorted(first.unsupported) == WITHOUT_WEBHOOKS
    assert {"customers", "items", "resources", "currencies", "unitsOfMeasure"} <= set(WITH_WEBHOOKS)
    live = _live(hook)
    stored = stored_subscriptions(state_store)
    assert sorted(s.entity_set for s in stored.values()) == sorted(WITH_WEBHOOKS)
    for row in stored.values():  # the secret is not in the state store, only its hash
        assert row.client_state_sha256 == client_state_hash(live[row.entity_set].client_state)
        assert len(live[row.entity_set].client_state) >= 40
    assert sorted(ensure_subscriptions(hook, state_store, ERP_SETS, receiver.url).kept) == sorted(WITH_WEBHOOKS)
    renewed = ensure_subscriptions(hook, state_store, ERP_SETS, receiver.url, renew_before=timedelta(days=4))
    assert sorted(renewed.renewed) == sorted(WITH_WEBHOOKS)
    assert all(_live(hook)[s].expires >= live[s].expires for s in WITH_WEBHOOKS)
    sandbox.admin("webhooks/expire", {"subscriptionId": live["customers"].subscription_id})
    recovered = ensure_subscriptions(hook, state_store, ERP_SETS, receiver.url)
    assert recovered.recovered == ["customers"] and "customers" not in recovered.created
    assert _live(hook)["customers"].subscription_id != live["customers"].subscription_id
    fewer = ensure_subscriptions(hook, state_store, [s for s in ERP_SETS if s != "items"], receiver.url)
    assert fewer.deleted == ["items"] and "items" not in _live(hook)


def test_a_change_is_recorded_once_through_a_receiver_outage_and_a_replay(sandbox, state_store, hook, receiver) -> None:
    ensure_subscriptions(hook, state_store, ["customers", "items"], receiver.url)
    receiver.stop()  # the api-server is down when Business Central sends
    customer = _customer(hook)
    hook.update("customers", customer["id"], {"city": "Outage"})
    time.sleep(2.5)  # the 1-second delay is over: the first delivery failed, Business Central retries
    assert receiver.events == []
    receiver.fail = 1  # back up, but the first recording fails: 503, sent again
    receiver.start()
    events = receiver.wait(1)
    time.sleep(2.5)
    assert events == [
        ("business_central/customers", {"source": "business_central_webhook", "notifications": 1, "collection": False})
    ]
    # Business Central sending the same notification again (after a lost answer) records nothing new.
    sub = _live(hook)["customers"]
    replay = {
        "value": [
            {
                "subscriptionId": sub.subscription_id,
                "clientState": sub.client_state,
                "expirationDateTime": "2030-01-01T00:00:00Z",
                "resource": f"api/v2.0/companies({hook.company_id})/customers({customer['id']})",
                "changeType": "updated",
                "lastModifiedDateTime": hook.get("customers", customer["id"])["lastModifiedDateTime"],
            }
        ]
    }
    answer = requests.post(receiver.url, json=replay, timeout=10)
    assert answer.status_code == 202 and answer.json()["new"] == 0
    assert len(receiver.events) == 1


def test_forged_notifications_are_refused_and_logged(sandbox, state_store, hook, receiver, caplog) -> None:
    ensure_subscriptions(hook, state_store, ["customers"], receiver.url)
    sub = _live(hook)["customers"]
    handshake = requests.post(receiver.url, params={"validationToken": "abc 123"}, timeout=10)
    assert (handshake.status_code, handshake.text) == (200, "abc 123")
    assert handshake.headers["content-type"].startswith("text/plain")
    item = {
        "subscriptionId": sub.subscription_id,
        "clientState": "guessed",
        "expirationDateTime": "2030-01-01T00:00:00Z",
        "resource": f"api/v2.0/companies({hook.company_id})/customers({_customer(hook)['id']})",
        "changeType": "updated",
        "lastModifiedDateTime": "2030-01-01T00:00:00Z",
    }
    with caplog.at_level(logging.WARNING, logger="dynamics_jobqueue.webhooks.receiver"):
        wrong_state = requests.post(receiver.url, json={"value": [item]}, timeout=10)
        unknown = requests.post(receiver.url, json={"value": [{**item, "subscriptionId": "f" * 32}]}, timeout=10)
        other_set = requests.post(
            receiver.url,
            json={
                "value": [
                    {
                        **item,
                        "clientState": sub.client_state,
                        "resource": item["resource"].replace("customers", "items"),
                    }
                ]
            },
            timeout=10,
        )
        malformed = requests.post(receiver.url, data=b"{not json", timeout=10)
    assert [r.status_code for r in (wrong_state, unknown, other_set, malformed)] == [401, 401, 401, 400]
    assert receiver.events == []
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "wrong clientState" in messages and "unknown subscription" in messages and "guessed" not in messages


def test_a_burst_of_10000_changes_is_one_collection_event_covering_all(sandbox, state_store, hook, receiver) -> None:
    sandbox.admin("webhooks", {"delay_s": 2})
    ensure_subscriptions(hook, state_store, ["customers"], receiver.url)
    sandbox.admin("generate", {"count": 10_000, "prefix": "W"})
    events = receiver.wait(1, timeout=60)
    time.sleep(3)
    assert len(events) == 1  # one POST, one collection notification, one asset event
    name, extra = events[0]
    assert (name, extra["notifications"], extra["collection"]) == ("business_central/customers", 1, True)
    # Nothing lost: the collection's filter, as the notification carries it, selects every generated customer.
    (resource,) = extra["collection_resources"]
    assert resource.startswith(f"/api/v2.0/companies({hook.company_id})/customers?$filter=")
    condition = unquote(resource.split("$filter=", 1)[1])
    selected = {r["number"] for page in hook.iter_pages("customers", filter=condition, select=["number"]) for r in page}
    assert sum(1 for n in selected if n.startswith("W")) == 10_000
