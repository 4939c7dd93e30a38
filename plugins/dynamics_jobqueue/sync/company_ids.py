"""Business Central company ids looked up by the hook, kept in the state store between task processes.

A connection without ``extra.company_id`` names its company by ``extra.company_name`` (or has only one), and
:class:`~dynamics_jobqueue.hooks.business_central.BusinessCentralHook` looks its id up with ``GET companies``;
kept here (``dynamics.settings``, key ``bc_company_id:<environment URL> <company name>``), the next processes skip
that request. The hook drops a kept id whose company no longer exists and looks it up again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from psycopg.types.json import Jsonb

from dynamics_jobqueue.sync import queries as q

if TYPE_CHECKING:
    from dynamics_jobqueue.hooks.state import StateStoreHook

_PREFIX = "bc_company_id:"


class StateStoreCompanyIds:
    """A :class:`~dynamics_jobqueue.hooks.business_central.CompanyIdCache` in the state store."""

    def __init__(self, state: StateStoreHook) -> None:
        self.state = state

    def get(self, key: str) -> str | None:
        """The kept company id (GUID) under ``key``, or ``None``."""
        with self.state.transaction() as cur:
            cur.execute(q.GET_SETTING, (_PREFIX + key,))
            row = cur.fetchone()
        return str(row[0]) if row and row[0] else None

    def put(self, key: str, company_id: str) -> None:
        with self.state.transaction() as cur:
            cur.execute(q.PUT_SETTING, (_PREFIX + key, Jsonb(company_id)))

    def drop(self, key: str) -> None:
        with self.state.transaction() as cur:
            cur.execute(q.DROP_SETTING, (_PREFIX + key,))
