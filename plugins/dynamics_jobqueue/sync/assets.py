"""The Airflow Assets of the table mappings: one per side and table, so a change on either side can start crm_sync.

Each mapping reads a Business Central entity set and a Dataverse table; each of them is an
:class:`~airflow.sdk.Asset` (mappings that read the same table share it):

- ``business_central/<entitySet>`` (URI ``x-dynamics-bc://<connection id>/<entitySet>``): its asset events come
  from the webhook receiver (:mod:`dynamics_jobqueue.webhooks.receiver`) when Business Central notifies a change;
- ``dataverse/<table>`` (URI ``x-dynamics-dataverse://<connection id>/<table>``): its asset events come from the
  Dataverse webhook receiver when webhooks are configured, and from an :class:`~airflow.sdk.AssetWatcher` whose
  trigger follows the table's change-tracking delta link
  (:class:`dynamics_jobqueue.triggers.dataverse_changes.DataverseChangesTrigger`) every
  :func:`change_poll_interval_s` seconds: often without webhooks, slowly (a safety net) with them.

``x-`` URIs are left as written by Airflow (no scheme normaliser applies). :func:`affected_mappings` turns the
assets of a run's triggering events into the mappings to sync: those reading a changed table and every mapping
that depends on them, as Business Central wakes the job of the changed table and its dependents.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import Asset, AssetWatcher

if TYPE_CHECKING:
    from collections.abc import Iterable

    from dynamics_jobqueue.sync.loader import MappingSet
    from dynamics_jobqueue.sync.mapping import TableMapping

ERP_CONN_ID = "business_central_default"
CRM_CONN_ID = "dataverse_default"


def change_poll_interval_s() -> int:
    """Seconds between the CRM change watcher's reads, chosen when crm_sync is parsed: with Dataverse webhooks
    (setting ``dataverse_webhook_url``) the slow safety interval ``crm_change_safety_poll_interval_s`` (the webhook
    brings changes; the poll catches those whose delivery Dataverse gave up on), else
    ``crm_change_poll_interval_s``. ``0``: no watcher."""
    from dynamics_jobqueue import settings

    if settings.get("dataverse_webhook_url").strip():
        return int(settings.get("crm_change_safety_poll_interval_s"))
    return int(settings.get("crm_change_poll_interval_s"))


def erp_asset_name(entity_set: str) -> str:
    return f"business_central/{entity_set}"


def crm_asset_name(table: str) -> str:
    return f"dataverse/{table}"


def erp_asset(entity_set: str, conn_id: str = ERP_CONN_ID) -> Asset:
    """The Asset of a Business Central entity set (asset events: the webhook receiver)."""
    return Asset(name=erp_asset_name(entity_set), uri=f"x-dynamics-bc://{conn_id}/{entity_set}", group="dynamics")


def crm_asset(table: str, conn_id: str = CRM_CONN_ID, *, poll_interval_s: int = 0) -> Asset:
    """The Asset of a Dataverse table; with ``poll_interval_s`` > 0 it is watched by a change-tracking trigger
    that reads its delta link every ``poll_interval_s`` seconds."""
    watchers = []
    if poll_interval_s > 0:
        from dynamics_jobqueue.triggers.dataverse_changes import DataverseChangesTrigger

        trigger = DataverseChangesTrigger(entity_set=table, conn_id=conn_id, interval_s=poll_interval_s)
        watchers.append(AssetWatcher(name=f"dataverse_changes_{table}", trigger=trigger))
    return Asset(
        name=crm_asset_name(table),
        uri=f"x-dynamics-dataverse://{conn_id}/{table}",
        group="dynamics",
        watchers=watchers,
    )


def mapping_assets(mappings: MappingSet, *, poll_interval_s: int = 0) -> list[Asset]:
    """The distinct assets of every mapping's two sides, ERP first, in mapping order."""
    erp = {m.erp.entity_set: erp_asset(m.erp.entity_set) for m in mappings}
    crm = {m.crm.entity_set: crm_asset(m.crm.entity_set, poll_interval_s=poll_interval_s) for m in mappings}
    return [*erp.values(), *crm.values()]


def reads(mapping: TableMapping) -> set[str]:
    """The asset names of the tables ``mapping`` syncs."""
    return {erp_asset_name(mapping.erp.entity_set), crm_asset_name(mapping.crm.entity_set)}


def affected_mappings(mappings: MappingSet, changed_assets: Iterable[str]) -> set[str]:
    """The names of the mappings that read a changed asset, plus every mapping depending on them (transitively).

    :param changed_assets: asset names (``business_central/customers``, ``dataverse/accounts``).
    """
    changed = set(changed_assets)
    affected = {m.name for m in mappings if reads(m) & changed}
    grew = True
    while grew:
        grew = False
        for mapping in mappings:  # run order: dependencies first, so one pass usually suffices
            if mapping.name not in affected and affected.intersection(mapping.depends_on):
                affected.add(mapping.name)
                grew = True
    return affected
