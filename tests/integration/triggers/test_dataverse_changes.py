"""DataverseChangesTrigger against the sandbox over real HTTP: one delta read per interval when nothing changed and
the stored delta link left alone, an event for a CRM user's change, none for the integration user's own write,
and an expired link replaced by a full read with an event."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import pytest

from dynamics_jobqueue.hooks.dataverse import DataverseHook
from dynamics_jobqueue.triggers.dataverse_changes import STATE_KEY, DataverseChangesTrigger


class Store:
    """The asset state store accessor's async API, counting writes."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.writes = 0

    async def aget(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    async def aset(self, key: str, value: Any) -> None:
        self.writes += 1
        self.values[key] = value


@pytest.fixture
def crm_user(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> DataverseHook:
    from sandbox.connections import CRM_USER_CLIENT

    conn = sandbox.connections(client=CRM_USER_CLIENT)["dataverse_default"]
    monkeypatch.setenv("AIRFLOW_CONN_CRM_USER", json.dumps(conn))
    return DataverseHook("crm_user")


class Events:
    """Drains the trigger's events into a queue (cancelling a pending ``__anext__`` would end the generator)."""

    def __init__(self, trigger: DataverseChangesTrigger) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue()

        async def drain() -> None:
            async for event in trigger.run():
                await self.queue.put(event)

        self.task = asyncio.ensure_future(drain())

    async def next(self, timeout: float) -> Any:
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            if self.task.done():
                self.task.result()  # the trigger failed: show why
            return None

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


def test_one_read_per_interval_events_only_for_other_users_changes(sandbox, crm_user) -> None:
    trigger = DataverseChangesTrigger(entity_set="accounts", interval_s=1, refresh_s=3600)
    store = Store()
    trigger.asset_state_store = store  # type: ignore[assignment]
    integration = DataverseHook()
    account = next(integration.iter_pages("accounts", select=["accountid"]))[0]["accountid"]

    async def scenario() -> dict[str, Any]:
        events = Events(trigger)
        idle = await events.next(3.5)  # the initial read, then about three idle intervals
        idle_requests, idle_writes = trigger.requests, store.writes
        await asyncio.to_thread(integration.upsert, "accounts", account, {"telephone1": "01 own"}, mode="update")
        own = await events.next(2.5)
        await asyncio.to_thread(crm_user.upsert, "accounts", account, {"telephone1": "01 user"}, mode="update")
        theirs = await events.next(5)
        await events.close()
        return {"idle": idle, "idle_requests": idle_requests, "idle_writes": idle_writes, "own": own, "theirs": theirs}

    result = asyncio.run(scenario())
    assert result["idle"] is None and result["own"] is None
    assert result["idle_writes"] == 1  # the first delta link only: nothing written while nothing changed
    assert 3 <= result["idle_requests"] <= 5  # the initial read + one request per interval
    assert result["theirs"].payload == {"entity_set": "accounts", "changed": 1, "deleted": 0, "reason": "changes"}
    assert store.writes == 2 and "$deltatoken=" in store.values[STATE_KEY]["link"]


def test_an_expired_delta_link_is_replaced_and_fires(sandbox) -> None:
    trigger = DataverseChangesTrigger(entity_set="accounts", interval_s=1)
    store = Store()
    store.values[STATE_KEY] = {
        "link": f"{sandbox.base_url}/dataverse/api/data/v9.2/accounts?$select=_modifiedby_value"
        "&$deltatoken=1%2101%2f01%2f2020%2000%3a00%3a00",
        "saved_at": 0,
    }
    trigger.asset_state_store = store  # type: ignore[assignment]

    async def scenario() -> Any:
        events = Events(trigger)
        event = await events.next(10)
        await events.close()
        return event

    event = asyncio.run(scenario())
    assert event is not None and event.payload["reason"] == "expired"
    assert store.values[STATE_KEY]["link"] != "" and "2020" not in store.values[STATE_KEY]["link"]
