"""A sync worker that dies: runs one mapping and calls ``os._exit`` the Nth time the run passes a checkpoint.

``python crash_worker.py CUSTOMER page_written 1`` stops the process right after a page's writes reached the
APIs and before the state store committed them: the worst moment for a crash. Connections come from the
environment (``AIRFLOW_CONN_*``), like an Airflow worker's.
"""

from __future__ import annotations

import os
import sys

#: Exit status of a worker stopped at its checkpoint.
CRASHED = 70


def main(mapping_name: str, point: str, occurrence: int) -> None:
    from dynamics_jobqueue.hooks.business_central import BusinessCentralHook
    from dynamics_jobqueue.hooks.dataverse import DataverseHook
    from dynamics_jobqueue.hooks.state import StateStoreHook
    from dynamics_jobqueue.sync.loader import load_mappings
    from dynamics_jobqueue.sync.runner import MappingRunner

    seen = 0

    def checkpoint(name: str) -> None:
        nonlocal seen
        if name == point:
            seen += 1
            if seen == occurrence:
                os._exit(CRASHED)

    mappings = load_mappings()
    MappingRunner(
        mappings.get(mapping_name),
        mappings,
        state=StateStoreHook(),
        erp_hook=BusinessCentralHook(),
        crm_hook=DataverseHook(),
        run_id="crashed",
        checkpoint=checkpoint,
    ).run()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
