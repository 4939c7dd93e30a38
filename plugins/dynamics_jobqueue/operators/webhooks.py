"""Operators of the webhook_subscriptions DAG: the Business Central webhook subscriptions of crm_sync's entity sets
and the Dataverse webhook steps of its tables.

A recovery wakes the table mappings: a subscription or step that was lost (expired, dropped, deleted) notified
nothing in between, and mappings On Hold with Inactivity Timeout (:mod:`dynamics_jobqueue.sync.job_queue`) are
skipped by the cron ticks while their tables look covered. So each recovered entity set gets an asset event
(``business_central/<entity set>``, ``dataverse/<entity set>``, the assets crm_sync is scheduled on) with extra
``{"source": <task>, "reason": "recovered"}``, emitted through the task's :data:`RECOVERED` asset alias (only the
recovered assets get an event; a run that recovers nothing emits none), and crm_sync syncs them at once.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import AssetAlias, BaseOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from dynamics_jobqueue import settings
from dynamics_jobqueue.sync.assets import crm_asset, erp_asset
from dynamics_jobqueue.sync.loader import load_mappings

if TYPE_CHECKING:
    from collections.abc import Iterable

    from airflow.sdk import Asset, Context

#: The asset alias through which both tasks emit the asset events of recovered subscriptions and steps.
RECOVERED = AssetAlias("dynamics_webhooks_recovered")


def announce_recovered(context: Context, assets: Iterable[Asset], source: str) -> list[str]:
    """Add one asset event per asset to the task's :data:`RECOVERED` alias (recorded by Airflow when the task
    succeeds), extra ``{"source": source, "reason": "recovered"}``. :return: the asset names."""
    names: list[str] = []
    events = context.get("outlet_events")
    for asset in assets:
        if events is not None:
            events[RECOVERED].add(asset, extra={"source": source, "reason": "recovered"})
        names.append(asset.name)
    return names


class BusinessCentralSubscriptionsOperator(BaseOperator):
    """Create, renew (before expiry), recreate (when lost) and delete the webhook subscriptions of the Business
    Central entity sets the table mappings read (:func:`dynamics_jobqueue.webhooks.subscriptions.ensure_subscriptions`).

    Settings: ``webhook_notification_url`` (empty: every subscription held is deleted and the task ends skipped)
    and ``bc_subscription_renew_before_s``.

    :return: the entity sets per outcome (``created``, ``renewed``, ``kept``, ``recovered``, ``deleted``,
        ``unsupported``) and ``woken``: the assets given an asset event (one per recovered entity set).
    """

    ui_color = "#fdf2d0"

    def __init__(
        self,
        *,
        mappings_dir: str | None = None,
        state_conn_id: str = "dynamics_state",
        business_central_conn_id: str = "business_central_default",
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("outlets", [RECOVERED])
        super().__init__(**kwargs)
        self.mappings_dir = mappings_dir
        self.state_conn_id = state_conn_id
        self.business_central_conn_id = business_central_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from dynamics_jobqueue.hooks.business_central import BusinessCentralHook
        from dynamics_jobqueue.hooks.state import StateStoreHook
        from dynamics_jobqueue.webhooks.subscriptions import delete_all, ensure_subscriptions

        hook = BusinessCentralHook(self.business_central_conn_id)
        store = StateStoreHook(state_conn_id=self.state_conn_id)
        url = settings.get("webhook_notification_url").strip()
        if not url:
            deleted = delete_all(hook, store)
            raise AirflowSkipException(
                f"webhook_notification_url is not set: no subscriptions ({len(deleted)} deleted)"
            )
        entity_sets = [m.erp.entity_set for m in load_mappings(self.mappings_dir)]
        outcome = ensure_subscriptions(
            hook,
            store,
            entity_sets,
            url,
            renew_before=timedelta(seconds=int(settings.get("bc_subscription_renew_before_s"))),
        )
        held = outcome.created + outcome.renewed + outcome.kept + outcome.recovered
        if outcome.unsupported and not held:
            first = next(iter(outcome.unsupported.values()))
            raise AirflowFailException(
                f"Business Central refused every subscription ({first}): does {url} answer the validationToken "
                "handshake from the internet?"
            )
        self.log.info(
            "subscriptions: created %s, renewed %s, kept %s, recovered %s, deleted %s, without webhooks %s",
            outcome.created,
            outcome.renewed,
            outcome.kept,
            outcome.recovered,
            outcome.deleted,
            sorted(outcome.unsupported),
        )
        woken = announce_recovered(context, (erp_asset(s) for s in outcome.recovered), self.task_id)
        return {
            "created": outcome.created,
            "renewed": outcome.renewed,
            "kept": outcome.kept,
            "recovered": outcome.recovered,
            "deleted": outcome.deleted,
            "unsupported": sorted(outcome.unsupported),
            "woken": woken,
        }


class DataverseWebhookStepsOperator(BaseOperator):
    """Register this deployment's Dataverse webhook and one asynchronous PostOperation step per table the table
    mappings read and message (Create, Update, Delete); recreate deleted steps, delete unneeded ones
    (:func:`dynamics_jobqueue.webhooks.dataverse_steps.ensure_dataverse_webhook`).

    Setting ``dataverse_webhook_url`` (empty: the webhook this deployment registered is deleted and the task ends
    skipped).

    :return: the steps (``<Message> <table>``) per outcome (``created``, ``kept``, ``recovered``, ``deleted``,
        ``unsupported``), ``endpoint`` (``created``, ``updated``: new secret or URL, ``kept``) and ``woken``: the
        assets given an asset event (one per entity set with a recovered step).
    """

    ui_color = "#fdf2d0"

    def __init__(
        self,
        *,
        mappings_dir: str | None = None,
        state_conn_id: str = "dynamics_state",
        dataverse_conn_id: str = "dataverse_default",
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("outlets", [RECOVERED])
        super().__init__(**kwargs)
        self.mappings_dir = mappings_dir
        self.state_conn_id = state_conn_id
        self.dataverse_conn_id = dataverse_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from dynamics_jobqueue.hooks.dataverse import DataverseHook
        from dynamics_jobqueue.hooks.state import StateStoreHook
        from dynamics_jobqueue.webhooks.dataverse_steps import delete_dataverse_webhook, ensure_dataverse_webhook

        hook = DataverseHook(self.dataverse_conn_id)
        store = StateStoreHook(state_conn_id=self.state_conn_id)
        url = settings.get("dataverse_webhook_url").strip()
        if not url:
            deleted = delete_dataverse_webhook(hook, store)
            raise AirflowSkipException(f"dataverse_webhook_url is not set: no Dataverse webhook ({deleted} deleted)")
        entity_sets = [m.crm.entity_set for m in load_mappings(self.mappings_dir)]
        outcome = ensure_dataverse_webhook(hook, store, entity_sets, url)
        woken = announce_recovered(context, (crm_asset(s) for s in outcome.recovered_entity_sets), self.task_id)
        return {
            "endpoint": outcome.endpoint,
            "created": outcome.created,
            "kept": outcome.kept,
            "recovered": outcome.recovered,
            "deleted": outcome.deleted,
            "unsupported": outcome.unsupported,
            "woken": woken,
        }
