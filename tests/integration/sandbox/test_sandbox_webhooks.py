"""Business Central webhook subscriptions as the sandbox serves them ("Working with webhooks in Dynamics 365
Business Central"): the validationToken handshake on create and renew, clientState in every notification,
notifications delayed and merged per record, one ``collection`` notification above the threshold, expiry,
renewal with ``If-Match``, deletion, and what a subscriber's error answers do to the subscription."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

COMPANY_ID = "c0c05000-0000-4000-8000-000000000001"


class Receiver:
    """A subscriber on loopback http: answers the handshake and records notification bodies.

    ``handshake`` (``"echo"``, ``"wrong"``) and ``status`` (the answer to notifications) can be changed by tests.
    """

    def __init__(self) -> None:
        self.handshake = "echo"
        self.status = 202
        self.bodies: list[dict[str, Any]] = []
        self.validations = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                if "validationToken" in query:
                    receiver.validations += 1
                    token = query["validationToken"][0] if receiver.handshake == "echo" else "nope"
                    self._answer(200, token.encode(), "text/plain")
                    return
                receiver.bodies.append(json.loads(raw))
                self._answer(receiver.status, b"", "text/plain")

            def _answer(self, status: int, body: bytes, kind: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/notify"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def notifications(self) -> list[dict[str, Any]]:
        return [n for body in self.bodies for n in body["value"]]

    def wait(self, count: int, timeout: float = 15) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.notifications()) < count and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.notifications()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.server.shutdown()


@pytest.fixture
def subs(sandbox, bc_api):
    """A client rooted at ``api/v2.0/`` (subscriptions live beside ``companies``) with a 1-second delay."""
    sandbox.admin("webhooks", {"delay_s": 1, "max_notifications": 1000, "lifetime_s": 3 * 24 * 3600, "retry_s": 1})
    api = bc_api()
    api.root = api.root.split("companies(")[0]
    return api


def _subscribe(subs, receiver: Receiver, resource: str = "customers", state: str = "s3cret") -> dict[str, Any]:
    answer = subs.post(
        "subscriptions",
        json={
            "notificationUrl": receiver.url,
            "resource": f"/api/v2.0/companies({COMPANY_ID})/{resource}",
            "clientState": state,
        },
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_create_needs_the_handshake_and_echoes_client_state(subs, receiver):
    receiver.handshake = "wrong"
    refused = subs.post(
        "subscriptions",
        json={"notificationUrl": receiver.url, "resource": f"/api/v2.0/companies({COMPANY_ID})/customers"},
    )
    assert refused.status_code == 400 and "validationToken" in refused.json()["error"]["message"]
    assert subs.get("subscriptions").json()["value"] == []
    receiver.handshake = "echo"
    created = _subscribe(subs, receiver)
    assert receiver.validations == 2
    assert len(created["subscriptionId"]) == 32 and created["clientState"] == "s3cret"
    assert created["resource"] == f"/api/v2.0/companies({COMPANY_ID})/customers"
    assert {"expirationDateTime", "lastModifiedDateTime", "userId", "@odata.etag"} <= created.keys()
    unsupported = subs.post(
        "subscriptions",
        json={"notificationUrl": receiver.url, "resource": f"/api/v2.0/companies({COMPANY_ID})/contacts"},
    )
    assert unsupported.status_code == 400
    public = subs.post(
        "subscriptions",
        json={"notificationUrl": "http://example.com/x", "resource": f"/api/v2.0/companies({COMPANY_ID})/customers"},
    )
    assert public.status_code == 400


def test_changes_are_delayed_merged_per_record_and_typed(subs, bc, receiver):
    sub = _subscribe(subs, receiver)
    created = bc.post("customers", json={"displayName": "Webhook Ltd."})
    assert created.status_code == 201
    customer = created.json()
    changed = bc.patch(
        f"customers({customer['id']})", json={"city": "Leeds"}, headers={"If-Match": customer["@odata.etag"]}
    )
    assert changed.status_code == 200
    seeded = bc.get("customers", params={"$top": "1"}).json()["value"][0]
    assert bc.patch(f"customers({seeded['id']})", json={"city": "York"}, headers={"If-Match": "*"}).ok
    assert bc.patch("currencies", json={}).status_code == 405  # other sets' activity is not notified
    time.sleep(0.5)
    assert receiver.notifications() == []  # the 1-second delay is not over yet
    notifications = receiver.wait(2)
    assert len(receiver.bodies) == 1  # one POST for the whole delay
    by_resource = {n["resource"]: n for n in notifications}
    assert by_resource[f"api/v2.0/companies({COMPANY_ID})/customers({customer['id']})"]["changeType"] == "created"
    assert by_resource[f"api/v2.0/companies({COMPANY_ID})/customers({seeded['id']})"]["changeType"] == "updated"
    assert all(n["subscriptionId"] == sub["subscriptionId"] and n["clientState"] == "s3cret" for n in notifications)
    assert all(n["expirationDateTime"] == sub["expirationDateTime"] for n in notifications)
    gone = bc.get(f"customers({customer['id']})").json()
    assert bc.delete(f"customers({customer['id']})", headers={"If-Match": gone["@odata.etag"]}).status_code == 204
    notifications = receiver.wait(3)
    assert notifications[-1]["changeType"] == "deleted" and len(notifications) == 3


def test_many_changes_become_one_collection_notification(sandbox, subs, bc, receiver):
    sandbox.admin("webhooks", {"max_notifications": 3, "delay_s": 3})
    _subscribe(subs, receiver)
    rows = bc.get("customers").json()["value"]
    assert len(rows) == 5
    for row in rows:
        assert bc.patch(f"customers({row['id']})", json={"city": "Bath"}, headers={"If-Match": "*"}).ok
    (notification,) = receiver.wait(1)
    time.sleep(1.5)
    assert len(receiver.notifications()) == 1
    assert notification["changeType"] == "collection"
    path, _, query = notification["resource"].partition("?")
    assert path == f"/api/v2.0/companies({COMPANY_ID})/customers"
    assert query.startswith("$filter=lastModifiedDateTime%20gt%20")
    listed = bc.get("customers?" + query.replace("%20", " ")).json()["value"]
    assert {r["id"] for r in rows} <= {r["id"] for r in listed}


def test_renew_needs_if_match_and_a_handshake_delete_removes(subs, receiver):
    sub = _subscribe(subs, receiver)
    url = f"subscriptions('{sub['subscriptionId']}')"
    assert subs.patch(url, json={"clientState": "new"}).status_code == 400  # If-Match required
    assert subs.patch(url, json={}, headers={"If-Match": 'W/"stale"'}).status_code == 409
    receiver.handshake = "wrong"
    assert subs.patch(url, json={}, headers={"If-Match": sub["@odata.etag"]}).status_code == 400
    receiver.handshake = "echo"
    time.sleep(1.1)
    renewed = subs.patch(url, json={"clientState": "new"}, headers={"If-Match": sub["@odata.etag"]})
    assert renewed.status_code == 200, renewed.text
    assert renewed.json()["expirationDateTime"] > sub["expirationDateTime"]
    assert renewed.json()["clientState"] == "new"
    assert subs.delete(url, headers={"If-Match": sub["@odata.etag"]}).status_code == 409
    assert subs.delete(url, headers={"If-Match": renewed.json()["@odata.etag"]}).status_code == 204
    assert subs.get(url).status_code == 404


def test_an_expired_subscription_is_gone_and_sends_nothing(sandbox, subs, bc, receiver):
    sandbox.admin("webhooks", {"lifetime_s": 1})
    sub = _subscribe(subs, receiver)
    time.sleep(1.2)
    assert subs.get(f"subscriptions('{sub['subscriptionId']}')").status_code == 404
    row = bc.get("customers", params={"$top": "1"}).json()["value"][0]
    assert bc.patch(f"customers({row['id']})", json={"city": "Hull"}, headers={"If-Match": "*"}).ok
    time.sleep(2)
    assert receiver.notifications() == []


def test_a_5xx_answer_is_retried_any_other_error_deletes(subs, bc, receiver):
    sub = _subscribe(subs, receiver)
    receiver.status = 503
    row = bc.get("customers", params={"$top": "1"}).json()["value"][0]
    assert bc.patch(f"customers({row['id']})", json={"city": "Ely"}, headers={"If-Match": "*"}).ok
    receiver.wait(1)
    receiver.status = 202
    receiver.wait(2)  # the same change again after retry_s
    assert [n["resource"] for n in receiver.notifications()][:2] == [receiver.notifications()[0]["resource"]] * 2
    receiver.status = 400
    assert bc.patch(f"customers({row['id']})", json={"city": "Ripon"}, headers={"If-Match": "*"}).ok
    receiver.wait(3)
    time.sleep(0.5)
    assert subs.get(f"subscriptions('{sub['subscriptionId']}')").status_code == 404
