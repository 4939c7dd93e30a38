"""An event trigger that follows a Dataverse table's change-tracking delta link (the CRM side of event-driven
crm_sync).

Dataverse change tracking ("Use change tracking to synchronize data with external systems",
https://learn.microsoft.com/power-apps/developer/data-platform/use-change-tracking-synchronize-data-external-systems):
a collection GET with ``Prefer: odata.track-changes`` answers every row and, on its last page, an
``@odata.deltaLink``; GETting that link answers the rows created or changed since and the deleted ones, and a new
delta link. The trigger reads the link once per interval - one request per table when nothing changed - and fires
an event (Airflow then records an asset event on the watched ``dataverse/<table>`` asset) when rows changed that
the integration user did not write (the sync's own writes would otherwise wake it again: BC's CRM->ERP filter
"not modified by the integration user" applied before waking). The delta link is kept in the asset's state store
(Airflow 3.3 ``asset_state_store``), written only when something changed or once a day, so a restarted triggerer
continues where it stopped; a link that expired is replaced by a fresh read, and that fires an event because the
changes in between are unknown.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

# The hooks (requests, msal) are imported when the trigger runs: crm_sync builds this trigger at parse time.
if TYPE_CHECKING:
    from pydantic import JsonValue

    from dynamics_jobqueue.hooks.dataverse import DataverseHook

LOG = logging.getLogger(__name__)
#: Columns read: the change-tracking answer needs one column; the modifier tells the integration user's writes.
SELECT = ["_modifiedby_value"]
STATE_KEY = "delta_link"


class DataverseChangesTrigger(BaseEventTrigger):
    """Fire when a Dataverse table changed (created, updated or deleted rows not written by the integration user).

    :param entity_set: the table's entity set name, e.g. ``accounts``.
    :param conn_id: the Dataverse connection (:class:`~dynamics_jobqueue.hooks.dataverse.DataverseHook`).
    :param interval_s: seconds between two reads of the delta link.
    :param refresh_s: seconds after which an unchanged delta link is stored again (keeps it younger than the
        change-tracking retention).
    :return: events ``{"entity_set", "changed": <rows>, "deleted": <rows>, "reason": "changes" | "expired"}``.
    """

    def __init__(
        self, *, entity_set: str, conn_id: str = "dataverse_default", interval_s: int = 30, refresh_s: int = 86_400
    ) -> None:
        super().__init__()
        self.entity_set = entity_set
        self.conn_id = conn_id
        self.interval_s = interval_s
        self.refresh_s = refresh_s
        self._memory: dict[str, Any] = {}
        #: Requests made (tests and the benchmark read it).
        self.requests = 0

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "entity_set": self.entity_set,
                "conn_id": self.conn_id,
                "interval_s": self.interval_s,
                "refresh_s": self.refresh_s,
            },
        )

    # -- the stored delta link ----------------------------------------------------------------------------
    async def _load(self) -> tuple[str | None, float]:
        store = self.asset_state_store
        saved = await store.aget(STATE_KEY) if store is not None else self._memory.get(STATE_KEY)
        if isinstance(saved, dict):
            link, saved_at = saved.get("link"), saved.get("saved_at")
            if isinstance(link, str):
                return link, float(saved_at) if isinstance(saved_at, int | float) else 0.0
        return None, 0.0

    async def _save(self, link: str) -> float:
        saved_at = time.time()
        value: dict[str, JsonValue] = {"link": link, "saved_at": saved_at}
        if self.asset_state_store is not None:
            await self.asset_state_store.aset(STATE_KEY, value)
        else:
            self._memory[STATE_KEY] = value
        return saved_at

    # -- reads (blocking HTTP, run in a thread) -----------------------------------------------------------
    def _read(self, hook: DataverseHook, link: str | None, me: str) -> tuple[int, int, str]:
        """Follow ``link`` (or start tracking): ``(changed rows not by me, deleted rows, new delta link)``."""
        from dynamics_jobqueue.hooks.errors import ApiError

        changed = deleted = 0
        new_link: str | None = None
        for page in hook.iter_changes(self.entity_set, delta_link=link, select=SELECT):
            self.requests += 1
            changed += sum(1 for r in page.records if str(r.get("_modifiedby_value") or "").lower() != me)
            deleted += len(page.deleted_ids)
            new_link = page.delta_link or new_link
        if new_link is None:
            raise ApiError("change-tracking answer without @odata.deltaLink", entity_set=self.entity_set)
        return changed, deleted, new_link

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from dynamics_jobqueue.hooks.dataverse import DataverseHook
        from dynamics_jobqueue.hooks.errors import ApiError, AuthenticationError

        hook = DataverseHook(self.conn_id)
        await hook.aload_connection()
        me = (await asyncio.to_thread(hook.who_am_i)).lower()
        stored, saved_at = await self._load()
        if stored is None:
            _, _, link = await asyncio.to_thread(self._read, hook, None, me)  # the initial read: every row
            saved_at = await self._save(link)
        else:
            link = stored
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                changed, deleted, new_link = await asyncio.to_thread(self._read, hook, link, me)
            except AuthenticationError:
                raise
            except ApiError as exc:
                if exc.status not in (400, 404, 410):
                    LOG.warning("%s: change-tracking read failed (%s); next interval again", self.entity_set, exc)
                    continue
                LOG.warning("%s: delta link refused (%s); tracking again from a full read", self.entity_set, exc)
                _, _, link = await asyncio.to_thread(self._read, hook, None, me)
                saved_at = await self._save(link)
                yield TriggerEvent({"entity_set": self.entity_set, "changed": 0, "deleted": 0, "reason": "expired"})
                continue
            link = new_link
            if changed or deleted:
                saved_at = await self._save(link)
                yield TriggerEvent(
                    {"entity_set": self.entity_set, "changed": changed, "deleted": deleted, "reason": "changes"}
                )
            elif time.time() - saved_at > self.refresh_s:
                saved_at = await self._save(link)
