"""Airflow connections that point the project's hooks at a running sandbox.

Used by the demo, the benchmarks and the tests to fill ``AIRFLOW_CONN_<ID>`` environment variables; in
production these connections come from Airflow's Connections UI or a secrets backend instead.
"""

from __future__ import annotations

import json
from typing import Any

TENANT = "sandbox-tenant"
COMPANY_ID = "c0c05000-0000-4000-8000-000000000001"
INTEGRATION_CLIENT = ("integration-app", "integration-secret")
CRM_USER_CLIENT = ("crm-user-app", "crm-user-secret")
ERP_USER_CLIENT = ("erp-user-app", "erp-user-secret")


def airflow_connections(
    base_url: str, ca_file: str, *, client: tuple[str, str] = INTEGRATION_CLIENT, max_retries: int = 8
) -> dict[str, dict[str, Any]]:
    """Connection dicts (Airflow's JSON connection format) for the sandbox at ``base_url``.

    :param base_url: ``https://127.0.0.1:<port>``.
    :param ca_file: the sandbox's CA (``<data dir>/tls/ca.pem``) the clients verify TLS against.
    :param client: (client id, secret) to sign in with; the integration user by default.
    :return: ``{"business_central_default": {...}, "dataverse_default": {...}}``.
    """
    common = {
        "tenant_id": TENANT,
        "authority_host": f"{base_url}/login",
        "ca_bundle": ca_file,
        "max_retries": max_retries,
        "backoff_max": 10,
    }
    return {
        "business_central_default": {
            "conn_type": "dynamics_business_central",
            "host": f"{base_url}/businesscentral",
            "login": client[0],
            "password": client[1],
            "extra": {
                **common,
                "environment": "production",
                "company_id": COMPANY_ID,
                "endpoints": {
                    "resources": "api/cronus/integration/v1.0",
                    "shippingAgents": "api/cronus/integration/v1.0",
                    "salesReturnOrders": "api/cronus/integration/v1.0",
                    "purchaseReturnOrders": "api/cronus/integration/v1.0",
                    "salesPostingDocuments": "api/cronus/integration/v1.0",
                    "purchasePostingDocuments": "api/cronus/integration/v1.0",
                },
            },
        },
        "dataverse_default": {
            "conn_type": "dynamics_dataverse",
            "host": f"{base_url}/dataverse",
            "login": client[0],
            "password": client[1],
            "extra": common,
        },
    }


def environment(base_url: str, ca_file: str, **kwargs: Any) -> dict[str, str]:
    """The same connections as ``AIRFLOW_CONN_*`` environment variables (JSON values)."""
    return {
        f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(conn)
        for conn_id, conn in airflow_connections(base_url, ca_file, **kwargs).items()
    }
