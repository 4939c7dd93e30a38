"""The operator console inside the Airflow UI (issue 6): pages and a JSON API over the state store.

:func:`dynamics_jobqueue.console.app.create_app` builds the FastAPI app that :mod:`dynamics_jobqueue.plugin`
mounts in the api-server.
"""
