"""The Dynamics 365 Business Central job queue on Apache Airflow.

Three business processes share this package: ERP<->CRM entity synchronization (:mod:`.sync`),
background posting of sales and purchase documents (:mod:`.posting`) and mailbox synchronization
(:mod:`.mailbox`). Hooks to the remote systems live in :mod:`.hooks`.
"""

from __future__ import annotations

from typing import Any

from dynamics_jobqueue.settings import provider_config

__version__ = "0.1.0"


def get_provider_info() -> dict[str, Any]:
    """Provider metadata read by Airflow through the ``apache_airflow_provider`` entry point.

    The connection forms are declared here (``conn-fields``, ``ui-field-behaviour``), as Airflow 3.2+ asks of
    providers, so the api-server shows them without importing the hooks; the ``conn-fields`` keys are the
    ``extra`` keys the hooks read. Nothing here may import Airflow or the hooks: every Airflow process calls it.

    :return: the provider-info mapping, shaped like the apache-airflow-providers-* packages' (integrations, their
        hooks and operators, connection types with their forms, the failure notifier, the config section).
    """
    return {
        "package-name": "airflow-provider-dynamics-jobqueue",
        "name": "Dynamics job queue",
        "description": "Business Central <-> Dataverse sync, background posting, mailbox sync.",
        "versions": [__version__],
        "integrations": [
            {"integration-name": name, "external-doc-url": url, "tags": ["service"]}
            for name, url, _, _ in _INTEGRATIONS
        ],
        "hooks": [
            {"integration-name": name, "python-modules": modules} for name, _, modules, _ in _INTEGRATIONS if modules
        ],
        "operators": [
            {"integration-name": name, "python-modules": modules} for name, _, _, modules in _INTEGRATIONS if modules
        ],
        "connection-types": [_business_central(), _dataverse(), _graph(), _mail_server()],
        "notifications": ["dynamics_jobqueue.notifiers.JobQueueFailureNotifier"],
        "config": provider_config(),
    }


#: (integration name, documentation, hook modules, operator modules)
_INTEGRATIONS: list[tuple[str, str, list[str], list[str]]] = [
    (
        "Microsoft Dynamics 365 Business Central",
        "https://learn.microsoft.com/dynamics365/business-central/dev-itpro/api-reference/v2.0/",
        [
            "dynamics_jobqueue.hooks.business_central",
            "dynamics_jobqueue.hooks.microsoft",
            "dynamics_jobqueue.hooks.batch",
        ],
        ["dynamics_jobqueue.operators.posting"],
    ),
    (
        "Microsoft Dataverse",
        "https://learn.microsoft.com/power-apps/developer/data-platform/webapi/overview",
        ["dynamics_jobqueue.hooks.dataverse"],
        ["dynamics_jobqueue.operators.sync", "dynamics_jobqueue.operators.watcher"],
    ),
    (
        "Microsoft Graph mail",
        "https://learn.microsoft.com/graph/api/resources/mail-api-overview",
        ["dynamics_jobqueue.hooks.graph"],
        [],
    ),
    (
        "Email server (IMAP, POP3, SMTP)",
        "https://learn.microsoft.com/dynamics365/business-central/admin-how-to-set-up-email",
        ["dynamics_jobqueue.hooks.mail"],
        ["dynamics_jobqueue.operators.mailbox"],
    ),
    (
        "Dynamics job queue state store (PostgreSQL)",
        "https://www.postgresql.org/docs/current/",
        ["dynamics_jobqueue.hooks.state"],
        [],
    ),
]


def _microsoft_fields(*, host_label: str, host_placeholder: str) -> dict[str, Any]:
    """Form of a Microsoft cloud API connection: the app registration's client id/secret and the tenant."""
    return {
        "ui-field-behaviour": {
            "hidden-fields": ["schema", "port"],
            "relabeling": {"host": host_label, "login": "Client ID", "password": "Client secret"},
            "placeholders": {"host": host_placeholder, "login": "00000000-0000-0000-0000-000000000000"},
        },
        "conn-fields": {
            "tenant_id": {
                "label": "Tenant ID",
                "description": "The Microsoft Entra tenant (GUID or domain) of the app registration.",
                "schema": {"type": "string", "minLength": 1},
            },
            "authority_host": {
                "label": "Authority host",
                "description": "Identity platform; change only for sovereign clouds or the sandbox.",
                "schema": {"type": ["string", "null"], "format": "url", "default": "https://login.microsoftonline.com"},
            },
        },
    }


def _business_central() -> dict[str, Any]:
    form = _microsoft_fields(host_label="API host", host_placeholder="https://api.businesscentral.dynamics.com")
    form["conn-fields"] |= {
        "environment": {
            "label": "Environment",
            "description": "The Business Central environment name, e.g. production or a sandbox environment.",
            "schema": {"type": "string", "default": "production"},
        },
        "company_id": {
            "label": "Company ID",
            "description": "GUID of the company (GET .../api/v2.0/companies); empty: the company named below.",
            "schema": {"type": ["string", "null"]},
        },
        "company_name": {
            "label": "Company name",
            "description": "Used when no company ID is given, e.g. CRONUS UK Ltd.; crm_sync keeps the id it looks "
            "up in the state store (looked up again when that company no longer exists).",
            "schema": {"type": ["string", "null"]},
        },
    }
    return {
        "connection-type": "dynamics_business_central",
        "hook-class-name": "dynamics_jobqueue.hooks.business_central.BusinessCentralHook",
        "hook-name": "Dynamics 365 Business Central",
        **form,
    }


def _dataverse() -> dict[str, Any]:
    return {
        "connection-type": "dynamics_dataverse",
        "hook-class-name": "dynamics_jobqueue.hooks.dataverse.DataverseHook",
        "hook-name": "Dynamics 365 Dataverse",
        **_microsoft_fields(host_label="Organisation URL", host_placeholder="https://contoso.crm.dynamics.com"),
    }


def _graph() -> dict[str, Any]:
    return {
        "connection-type": "dynamics_graph",
        "hook-class-name": "dynamics_jobqueue.hooks.graph.GraphHook",
        "hook-name": "Microsoft Graph mailboxes (Exchange Online)",
        **_microsoft_fields(host_label="Graph endpoint", host_placeholder="https://graph.microsoft.com"),
    }


def _mail_server() -> dict[str, Any]:
    def port(label: str, default: int) -> dict[str, Any]:
        return {
            "label": label,
            "description": f"Default {default}; the implicit-TLS port when the TLS switch is on.",
            "schema": {"type": ["integer", "null"], "minimum": 1, "maximum": 65535},
        }

    def switch(label: str, description: str) -> dict[str, Any]:
        return {"label": label, "description": description, "schema": {"type": "boolean", "default": False}}

    return {
        "connection-type": "dynamics_mail",
        "hook-class-name": "dynamics_jobqueue.hooks.mail.MailHook",
        "hook-name": "Email server profile (IMAP/POP3/SMTP)",
        "ui-field-behaviour": {
            "hidden-fields": ["schema", "port"],
            "relabeling": {"host": "Mail server", "login": "Login", "password": "Password"},
            "placeholders": {"host": "mail.contoso.com", "login": "crm-mailbox@contoso.com"},
        },
        "conn-fields": {
            "imap_port": port("IMAP port", 143),
            "imap_ssl": switch("IMAP over TLS", "Implicit TLS (IMAPS, usually port 993)."),
            "pop3_port": port("POP3 port", 110),
            "pop3_ssl": switch("POP3 over TLS", "Implicit TLS (POP3S, usually port 995)."),
            "smtp_host": {
                "label": "SMTP server",
                "description": "When outgoing mail goes through another server than the mail server.",
                "schema": {"type": ["string", "null"]},
            },
            "smtp_port": port("SMTP port", 25),
            "smtp_ssl": switch("SMTP over TLS", "Implicit TLS (SMTPS, usually port 465)."),
            "smtp_starttls": switch("SMTP STARTTLS", "Upgrade the connection with STARTTLS (usually port 587)."),
        },
    }
