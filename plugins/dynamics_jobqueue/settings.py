"""The provider's settings: the ``[dynamics_jobqueue]`` section of Airflow's configuration, read in one place.

The options are declared in the provider info (``config``, see :func:`dynamics_jobqueue.get_provider_info`), so
``airflow config list`` shows them, and each can be set in ``airflow.cfg`` or by the environment variable
``AIRFLOW__DYNAMICS_JOBQUEUE__<OPTION>`` (Airflow's own rule), e.g.
``AIRFLOW__DYNAMICS_JOBQUEUE__CRM_SYNC_SCHEDULE="*/15 * * * *"``. The earlier variables ``DYNAMICS_<OPTION>``
(e.g. ``DYNAMICS_CRM_SYNC_SCHEDULE``) are still honoured when the Airflow option is not set.

Everything here is cheap (no network, no database): DAG files read their schedules at parse time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SECTION = "dynamics_jobqueue"
_REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Option:
    """One option: ``kind`` (Airflow's option type), the built-in ``default`` and what it does."""

    kind: str
    default: str
    description: str


OPTIONS: dict[str, Option] = {
    "embedded_state_store": Option(
        "boolean",
        "False",
        "Development and tests only: when the dynamics_state connection is missing, start an embedded PostgreSQL "
        "(the pgserver package, installed with the extra [embedded]) with its data under state_dir. "
        "Off in production: a missing connection is then an error naming it.",
    ),
    "include_dir": Option(
        "string",
        "",
        "Folder of the deployment's data files (mappings/); default the include/ folder of a checkout.",
    ),
    "mappings_dir": Option(
        "string", "", "Folder of the integration table mapping files (*.yaml); default <include_dir>/mappings."
    ),
    "state_dir": Option(
        "string",
        "",
        "Folder for local files: the embedded Postgres (pgdata/) and printed PDFs (printed/); default .state of a "
        "checkout.",
    ),
    "crm_sync_schedule": Option(
        "string", "*/30 * * * *", "Cron expression of the crm_sync DAG, or none for manual runs only."
    ),
    "crm_sync_pool": Option("string", "default_pool", "Airflow pool of the crm_sync tasks."),
    "webhook_notification_url": Option(
        "string",
        "",
        "Public https URL of the Business Central webhook receiver (the api-server's "
        "/dynamics-webhooks/business-central); empty: no webhook subscriptions, crm_sync waits for its schedule or "
        "the CRM change watcher.",
    ),
    "dataverse_webhook_url": Option(
        "string",
        "",
        "Public URL of the Dataverse webhook receiver (the api-server's /dynamics-webhooks/dataverse; https on port "
        "443, or http on port 80: Dataverse webhooks support no other port). Set: the webhook_subscriptions DAG "
        "registers one Dataverse webhook with an asynchronous step per table and message (Create, Update, Delete), "
        "and the CRM change watcher slows to crm_change_safety_poll_interval_s. Empty: the webhook is removed and "
        "the watcher reads every crm_change_poll_interval_s.",
    ),
    "webhook_subscriptions_schedule": Option(
        "string",
        "*/30 * * * *",
        "Cron of the webhook_subscriptions DAG that creates, renews (before expiry) and recreates lost Business "
        "Central webhook subscriptions and recreates deleted Dataverse webhook steps (formerly "
        "bc_subscriptions_schedule of the bc_subscriptions DAG). Every 30 minutes: a lost subscription or step is "
        "found within the 30 minutes of the polling it replaces, and its recovery records an asset event that starts "
        "crm_sync for the tables at once; renewal a day before the three-day expiry needs no more. A steady-state "
        "run costs one request per API route and one to Dataverse.",
    ),
    "bc_subscription_renew_before_s": Option(
        "integer", "86400", "Renew a Business Central webhook subscription this many seconds before it expires."
    ),
    "crm_change_poll_interval_s": Option(
        "integer",
        "30",
        "Seconds between two Dataverse change-tracking reads of each CRM table the mappings sync (one request per "
        "table when nothing changed), when Dataverse webhooks are not configured; 0 turns the CRM change watcher off.",
    ),
    "crm_change_safety_poll_interval_s": Option(
        "integer",
        "1800",
        "With Dataverse webhooks (dataverse_webhook_url set): seconds between two change-tracking reads of each CRM "
        "table, the safety net for changes whose webhook was lost (Dataverse gives up on an asynchronous webhook "
        "after one more attempt on 502/503/504, at once on any other failure). 1800 s: 2 requests an hour per table "
        "instead of 120, and a lost delivery is picked up within 30 minutes, never later than the 30-minute polling "
        "it replaces. 0 turns the watcher off (the crm_sync schedule remains).",
    ),
    "metadata_check_max_age_h": Option(
        "integer",
        "24",
        "Hours a passed $metadata check of a table mapping stays valid: a crm_sync task skips the check (and the "
        "download of both services' $metadata) while the same mapping definition passed against the same services "
        "within this time; a changed mapping file or route, or another environment, is checked at once. 0 checks on "
        "every run.",
    ),
    "crm_conflict_response_timeout_min": Option(
        "integer",
        "25",
        "Minutes a required action of an update conflict (mapping resolution ask) waits for a user's choice; "
        "unanswered, it fails and the next run asks again (the crm_sync run holds the DAG's single active run "
        "while it waits, so keep it below the schedule's interval).",
    ),
    "posting_drain_cron": Option("string", "*/2 * * * *", "How often the posting DAGs drain the job queue (cron)."),
    "batch_post_time": Option("string", "18:00", "Time of the daily Batch Post run, HH:MM."),
    "batch_post_timezone": Option("string", "Europe/London", "IANA time zone of batch_post_time."),
    "posting_print_destination": Option(
        "string",
        "",
        "Where Post & Print sends PDFs: a folder URI (file:///...), or a printer; default <state_dir>/printed.",
    ),
    "posting_notify_on_success": Option(
        "boolean",
        "False",
        "Notify On Success of the Sales & Receivables / Purchases & Payables Setup: documents queued while it is "
        "on notify the user who queued them when they have posted (job_queue_notifications).",
    ),
    "alert_to": Option(
        "string", "", "Comma-separated recipients of failure alerts; empty: failures show in the Airflow UI only."
    ),
}


def env_name(option: str) -> str:
    """The environment variable that overrides ``option`` (``AIRFLOW__DYNAMICS_JOBQUEUE__<OPTION>``)."""
    return f"AIRFLOW__{SECTION.upper()}__{option.upper()}"


def legacy_env_name(option: str) -> str:
    """The project's earlier variable for ``option`` (``DYNAMICS_<OPTION>``)."""
    return f"DYNAMICS_{option.upper()}"


def provider_config() -> dict[str, Any]:
    """The ``config`` entry of the provider info (the shape of Airflow's ``provider.yaml`` ``config``)."""
    return {
        SECTION: {
            "description": "Settings of the Dynamics job queue provider (sync, posting, mailboxes).",
            "options": {
                name: {
                    "description": option.description,
                    "version_added": "0.1.0",
                    "type": option.kind,
                    "example": None,
                    "default": option.default,
                }
                for name, option in OPTIONS.items()
            },
        }
    }


def get(option: str) -> str:
    """The value of ``option``: the Airflow option (environment override or airflow.cfg) when set to a non-default
    value, else ``DYNAMICS_<OPTION>``, else the built-in default.

    :raises KeyError: for an option this provider does not declare.
    """
    from airflow.sdk.configuration import conf

    default = OPTIONS[option].default
    value = conf.get(SECTION, option, fallback=default) or default
    if value == default:
        value = os.environ.get(legacy_env_name(option)) or default
    return str(value)


def getboolean(option: str) -> bool:
    """The boolean ``option`` (``true``/``false``, ``1``/``0``, ``yes``/``no``, any case)."""
    return get(option).strip().lower() in ("true", "1", "yes", "on", "t", "y")


def embedded_state_store() -> bool:
    """Whether a missing ``dynamics_state`` connection may start the embedded Postgres (default ``False``)."""
    return getboolean("embedded_state_store")


def include_dir() -> Path:
    """The deployment's data folder (``include_dir``, default ``<checkout>/include``)."""
    return Path(get("include_dir") or _REPO_ROOT / "include")


def mappings_dir() -> Path:
    """The folder of the table mapping files (``mappings_dir``, default ``<include_dir>/mappings``)."""
    return Path(get("mappings_dir") or include_dir() / "mappings")


def state_dir() -> Path:
    """The folder for local files (``state_dir``, default ``<checkout>/.state``)."""
    return Path(get("state_dir") or _REPO_ROOT / ".state")


def alert_to() -> list[str]:
    """The failure alerts' recipients (``alert_to``, comma-separated), blanks dropped."""
    return [address.strip() for address in get("alert_to").split(",") if address.strip()]


def metadata_check_max_age_h() -> float:
    """Hours a passed ``$metadata`` check stays valid (``metadata_check_max_age_h``; 0: check on every run).

    :raises ValueError: when the option is not a number or is negative.
    """
    value = float(get("metadata_check_max_age_h"))
    if value < 0:
        raise ValueError(f"{env_name('metadata_check_max_age_h')} must be 0 or more hours, not {value:g}")
    return value
