"""The Airflow plugin: the operator console mounted in the api-server and linked from the UI's navigation.

Airflow 3.3 plugins (airflow-3.md): ``fastapi_apps`` mounts the console under :data:`URL_PREFIX`;
``external_views`` adds its pages to the navigation (in the "Dynamics" menu), each shown inside the Airflow UI.
The console checks authentication and permissions itself (:mod:`dynamics_jobqueue.console.security`).
The Business Central webhook receiver (:mod:`dynamics_jobqueue.webhooks.receiver`) is a second app under
:data:`WEBHOOKS_PREFIX`, checked by clientState instead of a login.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from dynamics_jobqueue.console.app import create_app
from dynamics_jobqueue.webhooks.receiver import create_webhook_app

URL_PREFIX = "/dynamics"
#: The Business Central webhook receiver (no Airflow login: the clientState is the shared secret).
WEBHOOKS_PREFIX = "/dynamics-webhooks"

#: (navigation label, page path under the prefix, url_route in the Airflow UI)
PAGES = [
    ("Job Queue Entries", "/job-queue", "dynamics-job-queue"),
    ("My Job Queue", "/job-queue?mine=true", "dynamics-my-job-queue"),
    ("Documents to handle", "/documents", "dynamics-documents"),
    ("Job Queue Log Entries", "/log", "dynamics-job-queue-log"),
    ("Integration Sync", "/sync", "dynamics-sync"),
    ("Mailboxes", "/mailboxes", "dynamics-mailboxes"),
]


class DynamicsJobQueuePlugin(AirflowPlugin):
    """Registers the console app and its navigation entries."""

    name = "dynamics_jobqueue"
    fastapi_apps = [
        {"app": create_app(), "url_prefix": URL_PREFIX, "name": "Dynamics job queue console"},
        {"app": create_webhook_app(), "url_prefix": WEBHOOKS_PREFIX, "name": "Dynamics webhook receiver"},
    ]
    external_views = [
        {"name": label, "href": f"{URL_PREFIX}{path}", "destination": "nav", "category": "Dynamics", "url_route": route}
        for label, path, route in PAGES
    ]
