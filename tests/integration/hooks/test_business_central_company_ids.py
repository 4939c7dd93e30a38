"""A company looked up by name is kept in the state store between processes; a kept id of a company that no
longer exists is dropped and looked up again, so nothing is read from or written to a wrong company."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from dynamics_jobqueue.hooks.errors import NotFoundError
from dynamics_jobqueue.sync.company_ids import StateStoreCompanyIds


@pytest.fixture
def by_name(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """The Business Central connection without extra.company_id, naming its company; returns the company id."""
    conn = json.loads(sandbox.environment()["AIRFLOW_CONN_BUSINESS_CENTRAL_DEFAULT"])
    company_id = conn["extra"].pop("company_id")
    conn["extra"]["company_name"] = "CRONUS UK Ltd."
    monkeypatch.setenv("AIRFLOW_CONN_BUSINESS_CENTRAL_DEFAULT", json.dumps(conn))
    return company_id


def _hook(state_store: Any) -> Any:
    from dynamics_jobqueue.hooks.business_central import BusinessCentralHook

    return BusinessCentralHook(company_ids=StateStoreCompanyIds(state_store))


def _requests(sandbox: Any) -> dict[str, int]:
    counted = sandbox.admin("stats")["by_route"]
    sandbox.admin("stats/reset", {})
    return {route: n for route, n in counted.items() if n}


def test_a_looked_up_company_is_kept_for_the_next_process(sandbox: Any, state_store: Any, by_name: str) -> None:
    sandbox.admin("stats/reset", {})
    first = _hook(state_store)
    assert first.company_id == by_name
    assert _requests(sandbox) == {"GET bc/companies": 1}
    second = _hook(state_store)  # the next task, in another process
    assert second.find_by("currencies", "code", "EUR")
    assert _requests(sandbox) == {"GET bc/currencies": 1}
    assert StateStoreCompanyIds(state_store).get(second.company_key) == by_name


def test_a_kept_id_of_a_company_that_no_longer_exists_is_looked_up_again(
    sandbox: Any, state_store: Any, by_name: str
) -> None:
    hook = _hook(state_store)
    gone = str(uuid.uuid4())
    StateStoreCompanyIds(state_store).put(hook.company_key, gone)
    sandbox.admin("stats/reset", {})
    created = hook.create("itemCategories", {"code": "CACHE", "displayName": "Kept company id test"})
    # the write 404s, the kept company is confirmed gone, looked up again, and the write repeated once
    assert _requests(sandbox) == {"POST bc/itemCategories": 2, "GET bc/companies": 2}
    assert hook.company_id == by_name
    assert StateStoreCompanyIds(state_store).get(hook.company_key) == by_name
    assert [c["id"] for c in hook.find_by("itemCategories", "code", "CACHE")] == [created["id"]]


def test_a_missing_record_of_an_existing_company_keeps_the_id(sandbox: Any, state_store: Any, by_name: str) -> None:
    assert _hook(state_store).company_id == by_name  # looked up and kept
    hook = _hook(state_store)
    sandbox.admin("stats/reset", {})
    with pytest.raises(NotFoundError):
        hook.get("customers", str(uuid.uuid4()))
    # the kept company was confirmed (GET companies(<id>)), not looked up again
    assert _requests(sandbox) == {"GET bc/customers": 1, "GET bc/companies": 1}
    assert StateStoreCompanyIds(state_store).get(hook.company_key) == by_name
    assert hook.company_id == by_name
