"""BusinessCentralHook's webhook subscriptions and notification parsing against Microsoft's documented examples
("Working with webhooks in Dynamics 365 Business Central", "Create subscriptions", "Update subscriptions")."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dynamics_jobqueue.hooks.business_central import BusinessCentralHook, parse_notifications
from dynamics_jobqueue.hooks.errors import MalformedResponseError

COMPANY = "c0c05000-0000-4000-8000-000000000001"
CONTRACTS = Path(__file__).resolve().parent


def test_create_subscription_reads_the_documented_answer(contract) -> None:
    contract.answer("POST", "/subscriptions", "business_central/subscription_create.json", json_status="201 Created")
    sub = BusinessCentralHook().create_subscription("customers", "https://contoso.com/myCallbacks", "s")
    assert sub.subscription_id == "c670ea73cacb459bb51dc1740da2f1db"
    assert sub.expires == datetime(2021, 10, 15, 12, 32, 35, tzinfo=UTC)
    assert (sub.entity_set, sub.route, sub.client_state) == ("customers", "api/v1.0", "optionalvalueof2048")
    assert sub.etag == "*"  # the documented answer has no @odata.etag
    (sent,) = contract.requests_to("/subscriptions")
    assert sent.path.endswith("/production/api/v2.0/subscriptions")
    assert json.loads(sent.body) == {
        "notificationUrl": "https://contoso.com/myCallbacks",
        "resource": f"/api/v2.0/companies({COMPANY})/customers",
        "clientState": "s",
    }


def test_renew_and_delete_send_if_match_to_the_subscription_route(contract) -> None:
    contract.answer("POST", "/subscriptions", "business_central/subscription_create.json", json_status="201 Created")
    contract.answer("PATCH", "/subscriptions(", "business_central/subscription_create.json", json_status="200 OK")
    contract.answer_raw("DELETE", "/subscriptions(", b"HTTP/1.1 204 No Content\r\n\r\n")
    hook = BusinessCentralHook()
    sub = hook.create_subscription("customers", "https://contoso.com/myCallbacks", "s")
    renewed = hook.renew_subscription(sub)
    hook.delete_subscription(renewed)
    patch, delete = contract.requests_to("/subscriptions(")
    assert patch.path.endswith("/api/v1.0/subscriptions('c670ea73cacb459bb51dc1740da2f1db')")
    assert patch.headers["if-match"] == "*" and delete.headers["if-match"] == "*"
    assert json.loads(patch.body) == {
        "notificationUrl": "https://contoso.com/myCallbacks",
        "clientState": "optionalvalueof2048",
    }


def test_the_documented_notification_payload_parses() -> None:
    body = (CONTRACTS / "business_central/webhook_notification.json").read_bytes()
    items, created, deleted, collection = parse_notifications(body)
    assert (items.entity_set, items.change_type, items.record_id) == (
        "items",
        "updated",
        "26814998-936a-401c-81c1-0e848a64971d",
    )
    assert (created.subscription_id, created.client_state) == ("webhookCustomersId", "someClientState")
    assert (created.change_type, deleted.change_type) == ("created", "deleted")
    assert (collection.entity_set, collection.change_type, collection.record_id) == (
        "salesInvoices",
        "collection",
        None,
    )
    with_bom = b"\xef\xbb\xbf" + body  # before BC 19 notifications began with a byte order mark
    assert len(parse_notifications(with_bom)) == 4


@pytest.mark.parametrize(
    "body",
    [b"", b"[]", b'{"value": []}', b'{"value": [{"subscriptionId": "x", "resource": "/x", "changeType": "updated"}]}'],
)
def test_other_bodies_are_typed_errors(body: bytes) -> None:
    with pytest.raises(MalformedResponseError):
        parse_notifications(body)
