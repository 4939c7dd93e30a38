"""A sync worker that dies: runs mappings in a child process whose ``DYNAMICS_SYNC_CRASH_AT`` names a crash point.

``DYNAMICS_SYNC_CRASH_AT=to_crm.batch.answered python crash_worker.py CUSTOMER`` stops the process right after
the first ``$batch`` of the ERP->CRM pass was answered and before the state store committed anything of it
(:mod:`dynamics_jobqueue.sync.crash_points`). Connections come from the environment (``AIRFLOW_CONN_*``), like
an Airflow worker's. ``--full`` runs a full sync. The exit status is
:data:`~dynamics_jobqueue.sync.crash_points.CRASHED` when the process died at its point, 0 when the run
ended without passing it.

``python crash_worker.py --serve`` is the same worker, warm: a fork server that imports Airflow and the package
once (about 5 s) and then forks one child per request, so a killed run costs the run, not a new interpreter.
Requests are JSON lines on stdin, ``{"names": [...], "full_sync": bool, "env": {...}}``; the child takes
``env`` as its whole environment (the crash point, the connections of the calling test), runs the mappings and
dies at its point exactly as the one-shot worker does. For each request the server answers one JSON line
``{"exit": <status>}`` on stdout (first ``{"passed": [<point>, ...]}`` when the run ended without dying, or
``{"error": <traceback>}`` when it raised); everything else the
processes print goes to stderr. The server opens no connection and starts no thread before it forks: each
child opens its own HTTP and Postgres connections, so nothing is shared across a fork.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import traceback


def main(names: list[str], *, full_sync: bool, passed: list[str] | None = None) -> None:
    """Run ``names``; the points the run passes are appended to ``passed`` (the last one is where it died)."""
    from dynamics_jobqueue.hooks.business_central import BusinessCentralHook
    from dynamics_jobqueue.hooks.dataverse import DataverseHook
    from dynamics_jobqueue.hooks.state import StateStoreHook
    from dynamics_jobqueue.sync import crash_points
    from dynamics_jobqueue.sync.loader import load_mappings
    from dynamics_jobqueue.sync.options import runner_class

    crash = crash_points.from_environment()

    def checkpoint(point: str) -> None:
        if passed is not None:
            passed.append(point)
        crash(point)

    mappings = load_mappings()
    for name in names:
        runner_class(mappings.get(name))(
            mappings.get(name),
            mappings,
            state=StateStoreHook(),
            erp_hook=BusinessCentralHook(),
            crm_hook=DataverseHook(),
            run_id="crashed",
            full_sync=full_sync,
            full_synch_review=True,  # as the harness's runs: the crash points of creates are reached
            checkpoint=checkpoint,
        ).run()


def serve() -> None:
    """The fork server (see the module docstring)."""
    import gc

    # Everything a run imports, imported once here (the children inherit it).
    import dynamics_jobqueue.hooks.business_central
    import dynamics_jobqueue.hooks.dataverse
    import dynamics_jobqueue.hooks.state
    import dynamics_jobqueue.sync.loader
    import dynamics_jobqueue.sync.runner  # noqa: F401

    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # prints and logs of the server and its children go to stderr, never into the answers
    gc.freeze()  # the imported modules stay shared with the children instead of being copied by the collector
    for line in sys.stdin.buffer:
        request = json.loads(line)
        assert threading.active_count() == 1, "a thread would not survive the fork"
        pid = os.fork()
        if pid == 0:  # the child: the request's environment, the run, and an exit without any cleanup
            status = 0
            passed: list[str] = []
            try:
                os.environ.clear()
                os.environ.update(request["env"])
                main(request["names"], full_sync=request["full_sync"], passed=passed)
                replies.write(json.dumps({"passed": passed}) + "\n")
            except BaseException:
                replies.write(json.dumps({"error": traceback.format_exc()[-3000:]}) + "\n")
                status = 1
            os._exit(status)
        _, wait_status = os.waitpid(pid, 0)
        replies.write(json.dumps({"exit": os.waitstatus_to_exitcode(wait_status)}) + "\n")


if __name__ == "__main__":
    args = sys.argv[1:]
    if args == ["--serve"]:
        serve()
    else:
        main([a for a in args if a != "--full"], full_sync="--full" in args)
