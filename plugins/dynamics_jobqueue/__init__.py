"""The Dynamics 365 Business Central job queue on Apache Airflow.

Three business processes share this package: ERP<->CRM entity synchronization (:mod:`.sync`),
background posting of sales and purchase documents (:mod:`.posting`) and mailbox synchronization
(:mod:`.mailbox`). Hooks to the remote systems live in :mod:`.hooks`.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def get_provider_info() -> dict[str, Any]:
    """Provider metadata read by Airflow through the ``apache_airflow_provider`` entry point.

    :return: the provider-info mapping (package name, hooks and their connection types).
    """
    return {
        "package-name": "airflow-provider-dynamics-jobqueue",
        "name": "Dynamics job queue",
        "description": "Business Central <-> Dataverse sync, background posting, mailbox sync.",
        "versions": [__version__],
        "connection-types": [
            {
                "connection-type": "dynamics_business_central",
                "hook-class-name": "dynamics_jobqueue.hooks.business_central.BusinessCentralHook",
            },
            {
                "connection-type": "dynamics_dataverse",
                "hook-class-name": "dynamics_jobqueue.hooks.dataverse.DataverseHook",
            },
        ],
    }
