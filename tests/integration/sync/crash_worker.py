"""A sync worker that dies: runs mappings in a child process whose ``DYNAMICS_SYNC_CRASH_AT`` names a crash point.

``DYNAMICS_SYNC_CRASH_AT=to_crm.batch.answered python crash_worker.py CUSTOMER`` stops the process right after
the first ``$batch`` of the ERP->CRM pass was answered and before the state store committed anything of it
(:mod:`dynamics_jobqueue.sync.crash_points`). Connections come from the environment (``AIRFLOW_CONN_*``), like
an Airflow worker's. ``--full`` runs a full sync. The exit status is
:data:`~dynamics_jobqueue.sync.crash_points.CRASHED` when the process died at its point, 0 when the run
ended without passing it.
"""

from __future__ import annotations

import sys


def main(names: list[str], *, full_sync: bool) -> None:
    from dynamics_jobqueue.hooks.business_central import BusinessCentralHook
    from dynamics_jobqueue.hooks.dataverse import DataverseHook
    from dynamics_jobqueue.hooks.state import StateStoreHook
    from dynamics_jobqueue.sync.loader import load_mappings
    from dynamics_jobqueue.sync.runner import MappingRunner

    mappings = load_mappings()
    for name in names:
        MappingRunner(
            mappings.get(name),
            mappings,
            state=StateStoreHook(),
            erp_hook=BusinessCentralHook(),
            crm_hook=DataverseHook(),
            run_id="crashed",
            full_sync=full_sync,
            full_synch_review=True,  # as the harness's runs: the crash points of creates are reached
        ).run()


if __name__ == "__main__":
    args = sys.argv[1:]
    main([a for a in args if a != "--full"], full_sync="--full" in args)
