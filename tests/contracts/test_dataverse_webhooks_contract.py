"""The Dataverse webhook contract: the documented ``RemoteExecutionContext`` sample ("Use webhooks to create
external handlers for server events", Request Body) parses in the receiver, and what the sandbox POSTs to a
registered webhook has the sample's shape and the documented headers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from dynamics_jobqueue.hooks.dataverse import DataverseHook
from dynamics_jobqueue.hooks.errors import ApiError
from dynamics_jobqueue.webhooks.receiver import parse_execution_context

CONTRACTS = Path(__file__).resolve().parent
SAMPLE = CONTRACTS / "dataverse/webhook_remote_execution_context.json"
#: "Header Data" of the docs, sent with every POST (x-ms-dynamics-msg-size-exceeded only above 256 KB).
HEADERS = (
    "x-request-id",
    "x-ms-dynamics-organization",
    "x-ms-dynamics-entity-name",
    "x-ms-dynamics-request-name",
    "x-ms-correlation-request-id",
)


def test_the_documented_context_parses() -> None:
    context = parse_execution_context(SAMPLE.read_bytes())
    assert (context.message, context.table, context.record_id) == (
        "Update",
        "contact",
        "6d81597f-0f9f-e711-8122-000d3aa2331c",
    )
    assert (context.user_id, context.operation_id, context.organization_id) == (
        "75c2dd85-e89e-e711-8122-000d3aa2331c",
        "4af10637-4ea2-e711-8122-000d3aa2331c",
        "4ef5b371-e89e-e711-8122-000d3aa2331c",
    )
    assert parse_execution_context(b"\xef\xbb\xbf" + SAMPLE.read_bytes()) == context


@pytest.mark.parametrize(
    "body",
    [b"", b"[]", b"{not json", json.dumps({**json.loads(SAMPLE.read_bytes()), "OperationId": "x"}).encode()],
)
def test_what_is_not_a_context_is_refused(body: bytes) -> None:
    with pytest.raises(ValueError):
        parse_execution_context(body)


class _Capture(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.received.append(({k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def capture() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Capture)
    received: list[tuple[dict[str, str], bytes]] = []
    _Capture.received = received
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
    server.server_close()


def _shape(value: Any) -> Any:
    """Member names and value kinds (``None`` is compatible with anything: the sample has nulls)."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return "list"
    return None if value is None else type(value).__name__


def _same_shape(sample: dict[str, Any], sent: dict[str, Any], where: str = "") -> None:
    assert sorted(sent) == sorted(sample), f"{where or 'context'} members differ"
    for name, kind in _shape(sample).items():
        mine = _shape(sent[name])
        if kind is None or mine is None:
            continue
        if isinstance(kind, dict):
            assert isinstance(mine, dict), f"{where}{name} is not an object"
            assert sorted(mine) == sorted(kind), f"{where}{name} members differ"
        else:
            assert mine == kind, f"{where}{name}: {mine} instead of {kind}"


def test_the_sandbox_posts_the_documented_context_and_headers(sandbox, capture) -> None:
    url, received = capture
    sandbox.admin("dataverse-webhooks", {"delay_s": 0, "allow_loopback_port": True})
    hook = DataverseHook()
    endpoint = hook.create_webhook_endpoint("contract", url, "x-test-key", "s3cret")
    messages = hook.sdk_messages(["Update"])
    (account_update,) = [f for f in hook.message_filters("account") if f.sdkmessage_id == messages["Update"]]
    hook.create_webhook_step(
        "contract: Update of account", endpoint, messages["Update"], account_update.sdkmessagefilter_id
    )
    account = next(hook.iter_pages("accounts", page_size=1))[0]
    hook.upsert("accounts", account["accountid"], {"address1_city": "Contract"}, mode="update")
    deadline = time.monotonic() + 10
    while not received and time.monotonic() < deadline:
        time.sleep(0.1)
    (headers, body), *_ = received
    sample = json.loads(SAMPLE.read_bytes())
    sent = json.loads(body)
    _same_shape(sample, sent)
    _same_shape(sample["OwningExtension"], sent["OwningExtension"], "OwningExtension.")
    (target,) = sent["InputParameters"]
    assert target["key"] == "Target"
    _same_shape(sample["InputParameters"][0]["value"], target["value"], "Target.")
    assert target["value"]["__type"] == sample["InputParameters"][0]["value"]["__type"]
    assert (sent["MessageName"], sent["PrimaryEntityName"], sent["PrimaryEntityId"]) == (
        "Update",
        "account",
        account["accountid"],
    )
    assert (sent["Mode"], sent["Stage"], sent["Depth"]) == (1, 40, 1)
    assert sent["InitiatingUserId"] == sent["UserId"] == hook.who_am_i()
    assert all(name in headers for name in HEADERS)
    assert (headers["x-ms-dynamics-entity-name"], headers["x-ms-dynamics-request-name"]) == ("account", "Update")
    assert headers["x-ms-correlation-request-id"] == sent["CorrelationId"]
    assert headers["x-test-key"] == "s3cret"  # HttpHeader authentication
    assert "x-ms-dynamics-msg-size-exceeded" not in headers
    # The authvalue is not readable back ("Register a WebHook": "cannot be retrieved").
    assert hook.get("serviceendpoints", endpoint)["authvalue"] is None


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://receiver.example.com:8443/hook", "port 8443"),
        ("http://receiver.example.com:8080/hook", "port 8080"),
        ("ftp://receiver.example.com/hook", "not http"),
    ],
)
def test_the_sandbox_refuses_webhook_urls_the_service_refuses(sandbox, url: str, why: str) -> None:
    sandbox.admin("dataverse-webhooks", {"allow_loopback_port": True})
    with pytest.raises(ApiError) as refused:
        DataverseHook().create_webhook_endpoint(f"refused {why}", url, "x-test-key", "s3cret")
    assert refused.value.status == 400


def test_a_loopback_port_needs_the_sandbox_leniency(sandbox) -> None:
    hook = DataverseHook()
    sandbox.admin("dataverse-webhooks", {"allow_loopback_port": False})
    with pytest.raises(ApiError) as refused:
        hook.create_webhook_endpoint("loopback", "http://127.0.0.1:8081/hook", "x-test-key", "s3cret")
    assert refused.value.status == 400 and "port 80" in str(refused.value)
    assert hook.create_webhook_endpoint("standard", "https://receiver.example.com/hook", "x-test-key", "s3cret")


def test_the_sandbox_validates_endpoints_and_steps_as_documented(sandbox) -> None:
    hook = DataverseHook()
    sandbox.admin("dataverse-webhooks", {"allow_loopback_port": True})
    without = [
        {
            "name": "no url",
            "contract": 8,
            "authtype": 5,
            "authvalue": "<settings><setting name='a' value='b'/></settings>",
        },
        {"name": "no authtype", "contract": 8, "url": "https://receiver.example.com/hook", "authvalue": "x"},
        {
            "name": "bad authvalue",
            "contract": 8,
            "url": "https://receiver.example.com/hook",
            "authtype": 5,
            "authvalue": "x",
        },
        {"contract": 8, "url": "https://receiver.example.com/hook", "authtype": 4, "authvalue": "x"},
    ]
    for body in without:
        with pytest.raises(ApiError) as refused:
            hook.create("serviceendpoints", body)
        assert refused.value.status == 400, body
    endpoint = hook.create_webhook_endpoint("steps", "https://receiver.example.com/hook", "x-test-key", "s3cret")
    messages = hook.sdk_messages(["Create", "Update", "Delete"])
    assert sorted(messages) == ["Create", "Delete", "Update"]
    filters = {f.sdkmessage_id: f.sdkmessagefilter_id for f in hook.message_filters("account")}
    assert set(filters) == set(messages.values())
    assert messages["Delete"] not in {f.sdkmessage_id for f in hook.message_filters("systemuser")}
    step = {
        "name": "step",
        "mode": 1,
        "rank": 1,
        "stage": 40,
        "eventhandler_serviceendpoint@odata.bind": f"/serviceendpoints({endpoint})",
        "sdkmessageid@odata.bind": f"/sdkmessages({messages['Update']})",
        "sdkmessagefilterid@odata.bind": f"/sdkmessagefilters({filters[messages['Update']]})",
    }
    refused_steps = [
        {**step, "stage": 20},  # asynchronous steps are PostOperation only
        {**step, "mode": 0, "asyncautodelete": True},  # asyncautodelete is for asynchronous steps
        {k: v for k, v in step.items() if k != "rank"},
        {**step, "sdkmessagefilterid@odata.bind": f"/sdkmessagefilters({filters[messages['Create']]})"},
    ]
    for body in refused_steps:
        with pytest.raises(ApiError) as refused:
            hook.create("sdkmessageprocessingsteps", body)
        assert refused.value.status == 400, body
    assert hook.create("sdkmessageprocessingsteps", step)
    with pytest.raises(ApiError) as in_use:  # a step still names it as its event handler
        hook.delete("serviceendpoints", endpoint)
    assert in_use.value.status == 400


def test_table_definitions_name_the_logical_name_of_an_entity_set(sandbox) -> None:
    hook = DataverseHook()
    assert hook.table_names(["accounts", "systemusers", "productpricelevels", "nosuchset"]) == {
        "accounts": "account",
        "systemusers": "systemuser",
        "productpricelevels": "productpricelevel",
    }
    with pytest.raises(ApiError) as refused:  # the sandbox serves $select and $filter only
        hook.request("GET", "api/data/v9.2/EntityDefinitions", params={"$top": "1"})
    assert refused.value.status == 400
