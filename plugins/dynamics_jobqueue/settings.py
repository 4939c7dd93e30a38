"""The provider's settings: the ``[dynamics_jobqueue]`` section of Airflow's configuration.

The options are declared in the provider info (``config``, see :func:`dynamics_jobqueue.get_provider_info`), so
``airflow config list`` shows them with their defaults, and each can be set in ``airflow.cfg`` or overridden by the
environment variable ``AIRFLOW__DYNAMICS_JOBQUEUE__<OPTION>`` (Airflow's own rule), e.g.
``AIRFLOW__DYNAMICS_JOBQUEUE__EMBEDDED_STATE_STORE=True``.
"""

from __future__ import annotations

from typing import Any

SECTION = "dynamics_jobqueue"

#: option -> (type, default, description); the provider info's ``config`` section is built from this table.
OPTIONS: dict[str, tuple[str, str, str]] = {
    "embedded_state_store": (
        "boolean",
        "False",
        "Development and tests only: when the dynamics_state connection is missing, start an embedded PostgreSQL "
        "(the pgserver package, installed with the extra [embedded]) with its data under DYNAMICS_STATE_DIR. "
        "Off in production: a missing connection is then an error naming it.",
    ),
}


def env_name(option: str) -> str:
    """The environment variable that overrides ``option`` (``AIRFLOW__DYNAMICS_JOBQUEUE__<OPTION>``)."""
    return f"AIRFLOW__{SECTION.upper()}__{option.upper()}"


def provider_config() -> dict[str, Any]:
    """The ``config`` entry of the provider info (the shape of Airflow's ``provider.yaml`` ``config``)."""
    return {
        SECTION: {
            "description": "Settings of the Dynamics job queue provider (sync, posting, mailboxes).",
            "options": {
                name: {"description": text, "version_added": "0.1.0", "type": kind, "example": None, "default": default}
                for name, (kind, default, text) in OPTIONS.items()
            },
        }
    }


def getboolean(option: str) -> bool:
    """The boolean ``option`` of the section (environment override first, then airflow.cfg, then the default)."""
    from airflow.sdk.configuration import conf

    kind, default, _ = OPTIONS[option]
    assert kind == "boolean", option
    return bool(conf.getboolean(SECTION, option, fallback=default.lower() == "true"))


def embedded_state_store() -> bool:
    """Whether a missing ``dynamics_state`` connection may start the embedded Postgres (default ``False``)."""
    return getboolean("embedded_state_store")
