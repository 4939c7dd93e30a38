"""The sandbox answers Microsoft's documented requests as the documentation shows.

The sandbox is the counterpart of every other test; here it is held to the same documented examples the hooks
are tested against, so a misreading of the contract cannot hide in both.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from dynamics_jobqueue.hooks.batch import ResponsePart, decode_multipart
from dynamics_jobqueue.hooks.business_central import BusinessCentralHook
from dynamics_jobqueue.hooks.dataverse import FORMATTED_VALUE, LOOKUP_LOGICAL_NAME, DataverseHook, bind
from dynamics_jobqueue.hooks.graph import GraphHook

CONTRACTS = Path(__file__).resolve().parent
DOC_ACCOUNT = "00000000-0000-0000-0000-000000000001"


def _documented(name: str) -> tuple[dict[str, str], bytes]:
    """The headers and body of a documented request or response file."""
    lines = (CONTRACTS / name).read_text().split("\n")
    blank = next(i for i, line in enumerate(lines) if not line.strip())
    head, body = lines[:blank], "\n".join(lines[blank + 1 :])
    headers = {}
    for line in head[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return headers, body.encode()


def _status_line(name: str) -> int:
    return int((CONTRACTS / name).read_text().split(" ", 2)[1])


def _send_documented_batch(dv: DataverseHook, *, prefer: str | None) -> tuple[int, list[ResponsePart]]:
    headers, body = _documented("dataverse/batch_stop_on_error.request.http")
    account = next(dv.iter_pages("accounts", select=["accountid"], page_size=1))[0]["accountid"]
    send = {"Content-Type": headers["content-type"]}
    if prefer:
        send["Prefer"] = prefer
    response = dv.request(
        "POST",
        "api/data/v9.2/$batch",
        data=body.replace(DOC_ACCOUNT.encode(), account.encode()),
        headers=send,
        expected=(200, 400),
    )
    return response.status_code, decode_multipart(response.headers.get("Content-Type"), response.content)


def _same_shape(documented: list[ResponsePart], answered: list[ResponsePart]) -> None:
    assert [p.status for p in answered] == [p.status for p in documented]
    for doc, ours in zip(documented, answered, strict=True):
        if isinstance(doc.body, dict) and "error" in doc.body:
            assert ours.body["error"]["code"] == doc.body["error"]["code"]
        wanted = {name.lower() for name in doc.headers} & {"location", "odata-entityid", "content-type"}
        assert wanted <= {name.lower() for name in ours.headers}, (doc.headers, ours.headers)


def test_batch_stopped_at_the_first_error_answers_as_documented(sandbox) -> None:
    status, parts = _send_documented_batch(DataverseHook(), prefer=None)
    headers, body = _documented("dataverse/batch_stop_on_error.http")
    assert status == _status_line("dataverse/batch_stop_on_error.http") == 400
    _same_shape(decode_multipart(headers.get("content-type"), body), parts)


def test_batch_with_continue_on_error_answers_as_documented(sandbox) -> None:
    status, parts = _send_documented_batch(DataverseHook(), prefer="odata.continue-on-error")
    headers, body = _documented("dataverse/batch_continue_on_error.http")
    assert status == _status_line("dataverse/batch_continue_on_error.http") == 200
    _same_shape(decode_multipart(headers.get("content-type"), body), parts)


def test_paging_cookie_is_a_skiptoken_as_documented(sandbox) -> None:
    dv = DataverseHook()
    _, documented = _documented("dataverse/page_1.http")
    documented_token = re.search(rb"\$skiptoken=(%3Ccookie%20pagenumber=%222%22%20pagingcookie=%22)", documented)
    assert documented_token is not None
    first = dv.request_json(
        "GET", "api/data/v9.2/contacts", params={"$select": "fullname"}, headers={"Prefer": "odata.maxpagesize=1"}
    )
    assert len(first["value"]) == 1
    assert documented_token.group(1).decode() in first["@odata.nextLink"]
    second = dv.request_json("GET", first["@odata.nextLink"], headers={"Prefer": "odata.maxpagesize=1"})
    assert "pagenumber=%223%22" in second["@odata.nextLink"]
    assert {r["contactid"] for r in first["value"]}.isdisjoint(r["contactid"] for r in second["value"])
    everyone = [r for page in dv.iter_pages("contacts", select=["fullname"], page_size=1) for r in page]
    assert len(everyone) == len({r["contactid"] for r in everyone}) > 2


def test_count_segment_answers_text_plain_as_documented(sandbox) -> None:
    dv = DataverseHook()
    headers, body = _documented("dataverse/count.http")
    response = dv.request("GET", "api/data/v9.2/accounts/$count")
    assert response.headers["Content-Type"].split(";")[0] == headers["content-type"] == "text/plain"
    counted = next(dv.query("accounts", select=["accountid"], count=True))
    assert int(response.text.strip()) == counted.count
    assert body.strip().isdigit()


def test_unchanged_record_with_if_none_match_answers_304(sandbox) -> None:
    dv = DataverseHook()
    account = next(dv.iter_pages("accounts", select=["accountid"], page_size=1))[0]
    path = f"api/data/v9.2/accounts({account['accountid']})"
    unchanged = dv.request("GET", path, headers={"If-None-Match": account["@odata.etag"]}, expected=(304,))
    assert unchanged.status_code == 304 and not unchanged.content
    dv.upsert("accounts", account["accountid"], {"description": "changed"}, mode="update")
    assert dv.request("GET", path, headers={"If-None-Match": account["@odata.etag"]}).status_code == 200


@pytest.mark.parametrize("atomic", [False, True])
def test_json_batch_without_ids_answers_id_null_and_snapshot_rolls_back(sandbox, atomic: bool) -> None:
    """The documented request sends no ids; the documented answer has ``"id": null`` and reports each inner
    request's own status even though ``Isolation: snapshot`` reverts them."""
    bc = BusinessCentralHook()
    item = next(bc.iter_pages("items", select=["id", "displayName"], page_size=1))[0]
    url = f"companies({bc.company_id})/items({item['id']})"
    requests = [
        {"method": "PATCH", "url": url, "headers": {"Content-Type": "application/json", "If-Match": "*"}, "body": body}
        for body in ({"displayName": "Touring Bicycle v2"}, {"type": "Invalid Type"})
    ]
    answer = bc.request_json(
        "POST",
        f"{bc.environment_root}api/v2.0/$batch",
        json={"requests": requests},
        headers={"Isolation": "snapshot"} if atomic else {},
    )
    assert [(r["id"], r["status"]) for r in answer["responses"]] == [(None, 200), (None, 400)]
    expected_name = item["displayName"] if atomic else "Touring Bicycle v2"
    assert bc.get("items", item["id"])["displayName"] == expected_name


def test_enum_values_with_spaces_are_encoded_as_documented(sandbox) -> None:
    """``"status": "In_x0020_Progress"`` in the reference: the sandbox writes enum values the same way, and the
    hook decodes them."""
    bc = BusinessCentralHook()
    invoice = next(bc.iter_pages("salesInvoices", select=["id", "status"], page_size=1))[0]
    bc.update("salesInvoices", invoice["id"], {"status": "In_x0020_Review"})
    raw = bc.request_json("GET", f"{bc.entity_path('salesInvoices')}({invoice['id']})")
    assert raw["status"] == "In_x0020_Review"
    assert bc.get("salesInvoices", invoice["id"])["status"] == "In Review"


def test_lookup_annotations_come_as_documented(sandbox) -> None:
    """The basic-operations sample's contact: the currency lookup with its formatted value, navigation
    property and logical name, in that order, before the value."""
    _, body = _documented("dataverse/retrieve_with_annotations.http")
    documented = [k for k in json.loads(body) if k.startswith("_transactioncurrencyid_value")]
    dv = DataverseHook()
    currency = next(dv.iter_pages("transactioncurrencies", select=["currencyname"], page_size=1))[0]
    contact = dv.create(
        "contacts",
        {
            "lastname": "Shillo",
            **bind("transactioncurrencyid", "transactioncurrencies", currency["transactioncurrencyid"]),
        },
    )
    row = dv.get("contacts", contact, select=["fullname", "_transactioncurrencyid_value"], annotations=["*"])
    ours = [k for k in row if k.startswith("_transactioncurrencyid_value")]
    assert ours == documented
    assert row[f"_transactioncurrencyid_value@{FORMATTED_VALUE}"] == currency["currencyname"]
    assert row["_transactioncurrencyid_value@Microsoft.Dynamics.CRM.associatednavigationproperty"] == (
        "transactioncurrencyid"
    )
    only_names = dv.get("contacts", contact, select=["_transactioncurrencyid_value"], annotations=[LOOKUP_LOGICAL_NAME])
    assert [k for k in only_names if "@" in k and not k.startswith("@")] == [
        f"_transactioncurrencyid_value@{LOOKUP_LOGICAL_NAME}"
    ]


@pytest.fixture
def graph(sandbox, monkeypatch: pytest.MonkeyPatch) -> GraphHook:
    """A GraphHook on the sandbox's Graph (the app registration of the Dataverse connection)."""
    conn = {**sandbox.connections()["dataverse_default"], "conn_type": "dynamics_graph"}
    monkeypatch.setenv("AIRFLOW_CONN_GRAPH_DEFAULT", json.dumps({**conn, "host": f"{sandbox.base_url}/graph"}))
    return GraphHook()


def test_graph_todo_lists_come_as_documented(graph: GraphHook) -> None:
    _, body = _documented("graph/todo_lists.http")
    documented = json.loads(body)["value"]
    (page,) = graph.iter_collection("v1.0/users/user@contoso.com/todo/lists", entity_set="todoTaskLists")
    assert sorted(page.records, key=lambda r: r["id"]) == sorted(documented, key=lambda r: r["id"])
    created = graph.save_item("user@contoso.com", "tasks", {"title": "A new task"})
    # a todoTask carries its version as @odata.etag and has no changeKey, as Microsoft's create example shows
    _, task_body = _documented("graph/todotask_create.http")
    documented_task = json.loads(task_body)
    assert "changeKey" not in created and "changeKey" not in documented_task
    assert created["@odata.etag"].startswith('W/"') and documented_task["@odata.etag"].startswith('W/"')
    (tasks,) = graph.iter_item_delta("user@contoso.com", "tasks")
    assert [t["id"] for t in tasks.messages] == [created["id"]]


def test_graph_event_delta_takes_the_documented_lowercase_window(graph: GraphHook) -> None:
    """The documented request writes ``startdatetime``/``enddatetime``; Graph reads them case-insensitively."""
    response = graph.request(
        "GET",
        "v1.0/users/user@contoso.com/calendarView/delta"
        "?startdatetime=2026-01-01T00:00:00Z&enddatetime=2026-12-31T00:00:00Z",
        entity_set="events",
        headers={"Prefer": "odata.maxpagesize=2"},
    )
    assert response.status_code == 200 and "@odata.deltaLink" in response.json()


def test_graph_send_mail_answers_the_documented_request_with_202(graph: GraphHook) -> None:
    headers, body = _documented("graph/sendmail.request.http")
    response = graph.request(
        "POST",
        "v1.0/users/user@contoso.com/sendMail",
        entity_set="sendMail",
        data=body,
        headers={"Content-Type": headers["content-type"]},
        expected=(202,),
    )
    assert response.status_code == _status_line("graph/sendmail_accepted.http") and response.content == b""


def test_graph_mime_content_comes_as_documented(sandbox, graph: GraphHook) -> None:
    headers, documented = _documented("graph/message_mime.http")
    user = "user@contoso.com"
    delivered = sandbox.admin(f"graph/users/{user}/messages", {"mime": base64.b64encode(documented).decode()})
    response = graph.request("GET", f"v1.0/users/{user}/messages/{delivered['id']}/$value", entity_set="messages")
    assert response.content == documented
    assert response.headers["Content-Type"] == headers["content-type"] == "text/plain"
