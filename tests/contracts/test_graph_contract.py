"""GraphHook against Microsoft Graph's documented delta responses, over real HTTPS."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dynamics_jobqueue.hooks.errors import ApiError, MalformedResponseError
from dynamics_jobqueue.hooks.graph import GraphHook

CONTRACTS = Path(__file__).resolve().parent


def test_message_delta_page_with_a_next_link(contract) -> None:
    contract.answer("GET", "/messages/delta", "graph/message_delta_page.http", times=1)
    pages = GraphHook().iter_message_delta("user@contoso.com", page_size=2)
    first = next(pages)
    # the documented message is shortened and has no id: set aside, where the mailbox would need its id
    assert [m["subject"] for m in first.without_id] == ["subject-value"] and first.messages == []
    assert first.removed_ids == [] and first.delta_link is None  # more pages follow (the nextLink)
    (sent,) = contract.requests_to("/messages/delta")
    assert sent.path == "/graph/v1.0/users/user@contoso.com/mailFolders/inbox/messages/delta"
    assert sent.headers["prefer"] == "odata.maxpagesize=2"


@pytest.mark.parametrize("framing", ["lf", "crlf"])
def test_event_delta_page_passes_on_the_calendar_view_window(contract, framing: str) -> None:
    """The documented item has no ``id`` (the example is shortened): it is set aside, not passed on."""
    contract.answer("GET", "/calendarView/delta", "graph/event_delta_page.http", framing=framing, times=1)
    first = next(GraphHook().iter_item_delta("user@contoso.com", "events", page_size=2))
    assert first.messages == [] and first.removed_ids == [] and first.delta_link is None
    assert [i["iCalUId"] for i in first.without_id] == ["iCalUId-value"]
    (sent,) = contract.requests_to("/calendarView/delta")
    assert sent.path.startswith("/graph/v1.0/users/user@contoso.com/calendarView/delta?startDateTime=")
    assert "&endDateTime=" in sent.path and sent.headers["prefer"] == "odata.maxpagesize=2"


def test_contact_delta_page_follows_the_documented_next_link(contract) -> None:
    contract.answer("GET", "/contacts/delta", "graph/contact_delta_page.http", times=2)
    pages = GraphHook().iter_item_delta("user@contoso.com", "contacts")
    first, second = next(pages), next(pages)
    assert [c["displayName"] for c in first.without_id] == ["displayName-value"]
    assert second.delta_link is None
    initial, following = contract.requests_to("/contacts/delta")
    assert initial.path == "/graph/v1.0/users/user@contoso.com/contactFolders/contacts/contacts/delta"
    # the nextLink is requested as Graph gave it (its placeholders percent-encoded by the HTTP client)
    assert following.path.startswith("/graph/v1.0/me/contactfolders/")
    assert "contacts/delta?$skiptoken=" in following.path


@pytest.mark.parametrize("framing", ["lf", "crlf"])
def test_todo_task_delta_from_the_default_list_ends_with_its_delta_link(contract, framing: str) -> None:
    contract.answer("GET", "/todo/lists/", "graph/todotask_delta_last_page.http", framing=framing)
    contract.answer("GET", "/todo/lists", "graph/todo_lists.http", framing=framing)
    (page,) = GraphHook().iter_item_delta("user@contoso.com", "tasks")
    assert [t["title"] for t in page.messages] == ["empty task3"]
    assert page.messages[0]["@odata.etag"] == 'W/"4rfRVIPi9EqXgDbc8U7HGwADLLQ9xQ=="'
    assert page.delta_link == (
        f"{contract.base_url}/graph/v1.0/me/todo/lists/gDbc8U7HGwADDZocJgAAAA==/tasks/delta"
        "?$deltatoken=MoVMZ_DzHG4AhT3WE8VioVS1IXZJ-ArqK5fknOjnKFY"
    )
    lists, tasks = contract.requests_to("/todo/lists")
    assert lists.path == "/graph/v1.0/users/user@contoso.com/todo/lists"
    # the list whose wellknownListName is defaultList
    assert tasks.path == "/graph/v1.0/users/user@contoso.com/todo/lists/AAMkADIyAAAAABrJAAA%3D/tasks/delta"


def test_todo_task_create_answers_the_created_task(contract) -> None:
    contract.answer("GET", "/todo/lists", "graph/todo_lists.http", times=1)
    contract.answer("POST", "/todo/lists/", "graph/todotask_create.http")
    saved = GraphHook().save_item("user@contoso.com", "tasks", {"title": "A new task"})
    assert saved["id"] == "AlMKXwbQAAAJws6wcAAAA=" and saved["title"] == "A new task"
    (sent,) = [r for r in contract.requests_to("/tasks") if r.method == "POST"]
    assert json.loads(sent.body) == {"title": "A new task"}


@pytest.mark.parametrize("framing", ["lf", "crlf"])
def test_send_mail_accepted_without_headers_or_body(contract, framing: str) -> None:
    """The documented ``202 Accepted`` is a bare status line: no headers, no blank line, no body."""
    request = (CONTRACTS / "graph/sendmail.request.http").read_text(encoding="utf-8")
    documented = json.loads(request.split("\n\n", 1)[1])
    contract.answer("POST", "/sendMail", "graph/sendmail_accepted.http", framing=framing)
    GraphHook().send_mail("user@contoso.com", documented["message"], save_to_sent_items=False)
    (sent,) = contract.requests_to("/sendMail")
    assert sent.path == "/graph/v1.0/users/user@contoso.com/sendMail"
    assert json.loads(sent.body) == {**documented, "saveToSentItems": False}


def test_send_mail_refused_is_a_typed_error_with_graph_code(contract) -> None:
    contract.answer("POST", "/sendMail", "graph/sendmail_invalid_mime.http")
    with pytest.raises(ApiError) as raised:
        GraphHook().send_mail("user@contoso.com", {"subject": "x"})
    assert raised.value.status == 400 and raised.value.code == "ErrorMimeContentInvalidBase64String"
    assert raised.value.entity_set == "sendMail"


@pytest.mark.parametrize("framing", ["lf", "crlf"])
def test_message_mime_is_returned_byte_for_byte(contract, framing: str) -> None:
    """The documented ``$value`` answer: ``text/plain``, no ``Content-Length``, trailing spaces on every line."""
    contract.answer("GET", "/$value", "graph/message_mime.http", framing=framing)
    mime = GraphHook().get_mime("user@contoso.com", "4aade2547798441eab5188a7a2436bc1")
    documented = (CONTRACTS / "graph/message_mime.http").read_bytes().split(b"\n\n", 1)[1]
    assert mime == (documented.replace(b"\n", b"\r\n") if framing == "crlf" else documented)
    (sent,) = contract.requests_to("/$value")
    assert sent.path == "/graph/v1.0/users/user@contoso.com/messages/4aade2547798441eab5188a7a2436bc1/$value"


def test_contact_create_answers_the_created_contact(contract) -> None:
    contract.answer("POST", "/contacts", "graph/contact_create.http")
    saved = GraphHook().save_item("user@contoso.com", "contacts", {"givenName": "Pavel", "surname": "Bansky"})
    assert saved["id"] == "id-value" and saved["displayName"] == "Pavel Bansky"
    (sent,) = contract.requests_to("/contacts")
    assert sent.path == "/graph/v1.0/users/user@contoso.com/contactFolders/contacts/contacts"


def test_a_saved_item_without_id_is_a_typed_error(contract) -> None:
    """The todoTask example without its ``id`` line (as a shortened example could print it)."""
    contract.answer("GET", "/todo/lists", "graph/todo_lists.http", times=1)
    contract.answer(
        "POST", "/todo/lists/", "graph/todotask_create.http", edit=('   "id":"AlMKXwbQAAAJws6wcAAAA=",\n', "")
    )
    with pytest.raises(MalformedResponseError) as raised:
        GraphHook().save_item("user@contoso.com", "tasks", {"title": "A new task"})
    assert raised.value.entity_set == "tasks"
