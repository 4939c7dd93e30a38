"""The client layer's wire rules over real HTTPS: retries by method and Retry-After, one token per connection,
one session per thread."""

from __future__ import annotations

import threading

import pytest

from dynamics_jobqueue.hooks.business_central import BusinessCentralHook
from dynamics_jobqueue.hooks.dataverse import DataverseHook
from dynamics_jobqueue.hooks.errors import TransientError
from dynamics_jobqueue.hooks.graph import GraphHook

UNAVAILABLE = "HTTP/1.1 503 Service Unavailable\nContent-Length: 0\n\n"


@pytest.fixture
def retrying(contract, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_DATAVERSE_DEFAULT", contract.connection("dataverse", max_retries=2, backoff_max=0))
    return contract


def _raw(contract, method: str, path: str, text: str, *, times: int | None = None) -> None:
    """An answer that is not a documented example (a bare throttling status)."""
    contract.answer_raw(method, path, text.replace("\n", "\r\n").encode(), times=times)


def test_post_is_not_sent_again_on_503_without_retry_after(retrying) -> None:
    _raw(retrying, "POST", "/accounts", UNAVAILABLE)
    with pytest.raises(TransientError):
        DataverseHook().create("accounts", {"name": "once"})
    assert len(retrying.requests_to("/accounts")) == 1


def test_post_is_sent_again_on_503_with_retry_after(retrying) -> None:
    _raw(
        retrying,
        "POST",
        "/accounts",
        "HTTP/1.1 503 Service Unavailable\nRetry-After: 0\nContent-Length: 0\n\n",
        times=1,
    )
    retrying.answer("POST", "/accounts", "dataverse/create_no_content.http")
    assert DataverseHook().create("accounts", {"name": "twice"}) == "2728bcb4-bb27-ed11-9db1-002248274ada"
    assert len(retrying.requests_to("/accounts")) == 2


def test_get_is_retried_on_503(retrying) -> None:
    _raw(retrying, "GET", "/contacts", UNAVAILABLE, times=1)
    retrying.answer("GET", "/contacts", "dataverse/retrieve_with_annotations.http")
    assert DataverseHook().get("contacts", "0928bcb4-bb27-ed11-9db1-002248274ada")["fullname"] == "Rafel Shillo"
    assert len(retrying.requests_to("/contacts")) == 2


def test_one_token_per_connection_and_one_session_per_thread(contract) -> None:
    contract.answer("GET", "/contacts", "dataverse/retrieve_with_annotations.http")
    hooks = [DataverseHook(), DataverseHook()]
    sessions: list[object] = []

    def read(hook: DataverseHook) -> None:
        hook.get("contacts", "0928bcb4-bb27-ed11-9db1-002248274ada")
        sessions.append(hook.session)

    threads = [threading.Thread(target=read, args=(hook,)) for hook in hooks * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(contract.requests_to("/contacts")) == 4
    assert len([r for r in contract.received if r.path.endswith("/oauth2/v2.0/token")]) == 1
    assert len({id(s) for s in sessions}) == 4  # no session shared between threads
    assert hooks[0].session is hooks[0].session  # the same thread keeps its session


@pytest.mark.parametrize(
    ("hook", "entity_set", "default"),
    [(BusinessCentralHook, "customers", "20000"), (DataverseHook, "accounts", "5000")],
)
def test_iter_pages_asks_for_the_apis_largest_page_unless_given_a_size(contract, hook, entity_set, default) -> None:
    empty = b'{"value":[]}'
    contract.answer_raw(
        "GET",
        f"/{entity_set}",
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(empty), empty),
    )
    assert list(hook().iter_pages(entity_set)) == [[]]
    assert list(hook().iter_pages(entity_set, page_size=7)) == [[]]
    asked = [r.headers["prefer"] for r in contract.requests_to(f"/{entity_set}")]
    assert asked == [f"odata.maxpagesize={default}", "odata.maxpagesize=7"]


def test_graph_has_no_entity_sets_to_page(contract) -> None:
    with pytest.raises(NotImplementedError, match="GraphHook reads no OData entity sets"):
        next(GraphHook().iter_pages("users"))
