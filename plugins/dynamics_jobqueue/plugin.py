"""The Airflow plugin: the operator console as a React app inside the Airflow UI, over its JSON API.

Airflow 3.1+ plugins (``airflow.plugins_manager``; the UI's ``plugin/:page/*`` route): ``fastapi_apps`` mounts
the console's API under :data:`URL_PREFIX`; ``react_apps`` adds each console page to the navigation (the
"Dynamics" menu) as a React component the Airflow UI renders itself, no iframe: it imports ``bundle_url`` (a UMD
bundle that registers ``globalThis.AirflowPlugin``, with React, ReactDOM, ReactRouterDOM, ChakraUI and
EmotionReact taken from the host's globals, so the pages use Airflow's own theme in light and dark mode). Each
page has its own ``bundle_url`` (a ``page`` query) because the UI imports one module per app and a module runs
once. ``operator_extra_links`` are the links from sync, posting and mailbox task instances to their console pages.
The console checks authentication and permissions itself (:mod:`dynamics_jobqueue.console.security`).
The webhook receiver (:mod:`dynamics_jobqueue.webhooks.receiver`: ``/business-central`` and ``/dataverse``) is a
second app under :data:`WEBHOOKS_PREFIX`, checked by the clientState or the webhook's header secret instead of a
login.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from dynamics_jobqueue.console.app import create_app
from dynamics_jobqueue.console.links import OPERATOR_LINKS
from dynamics_jobqueue.webhooks.receiver import create_webhook_app

URL_PREFIX = "/dynamics"
#: The Business Central and Dataverse webhook receiver (no Airflow login: the clientState and the Dataverse
#: webhook's header are the shared secrets).
WEBHOOKS_PREFIX = "/dynamics-webhooks"

#: (navigation label, page key): the UI's route is ``plugin/dynamics-<key>``.
PAGES = [
    ("Job Queue Entries", "job-queue"),
    ("My Job Queue", "my-job-queue"),
    ("Documents to handle", "documents"),
    ("Job Queue Log Entries", "job-queue-log"),
    ("Integration Sync", "sync"),
    ("Mailboxes", "mailboxes"),
    ("Trends", "trends"),
]


class DynamicsJobQueuePlugin(AirflowPlugin):
    """Registers the console's API, its pages in the Airflow UI and the task instances' links to them."""

    name = "dynamics_jobqueue"
    fastapi_apps = [
        {"app": create_app(), "url_prefix": URL_PREFIX, "name": "Dynamics job queue console"},
        {"app": create_webhook_app(), "url_prefix": WEBHOOKS_PREFIX, "name": "Dynamics webhook receiver"},
    ]
    react_apps = [
        {
            "name": label,
            # Relative to the UI's <base href>, so it also works when Airflow is served under a sub-path.
            "bundle_url": f"{URL_PREFIX.lstrip('/')}/ui/console.js?page={key}",
            "destination": "nav",
            "category": "Dynamics",
            "url_route": f"dynamics-{key}",
        }
        for label, key in PAGES
    ]
    operator_extra_links = OPERATOR_LINKS
