"""Entry file of the Airflow plugins folder: registers the package's plugin (the operator console).

Airflow imports each ``.py`` file of its plugins folder as a top-level module, so the package itself is excluded
(``.airflowignore``) and imported normally from here.
"""

from __future__ import annotations

from dynamics_jobqueue.plugin import DynamicsJobQueuePlugin

__all__ = ["DynamicsJobQueuePlugin"]
