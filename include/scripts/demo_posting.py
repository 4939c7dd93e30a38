"""The background posting part of ``make demo``: queue the CRONUS open documents and run both posting DAGs.

:func:`background_posting` is a step of ``include/scripts/demo.py`` (``STEPS``): it runs
``airflow dags test sales_background_posting`` and ``purchase_background_posting`` with the Batch Post params
(every open order, invoice and credit memo; Post & Print to ``.demo/printed``), exactly as a manual trigger in
the UI would, and prints per category how many documents posted, failed (with the ERP's reasons) and were
printed. The documents designed to fail (Your Reference ``DESIGNED TO FAIL`` in the sandbox) end in Error, or,
for the invoice with nothing to post, are not queued at all because Business Central will not release them (the
Batch Post task fails naming it, as its alert would); that is the expected outcome, not a demo failure.

Alone: ``python include/scripts/demo_posting.py`` (starts what demo.py starts, runs only this step).
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CATEGORIES = (("SALESPOST", "sales_background_posting"), ("PURCHPOST", "purchase_background_posting"))


def background_posting(env: dict[str, str]) -> int:
    """Run both posting DAGs (Batch Post, then drain) and print what each category did.

    :param env: the demo's environment (Airflow home, connections).
    :return: 0 when every document either posted or failed with the ERP's reason; 1 otherwise.
    """
    import demo

    from dynamics_jobqueue.hooks.state import StateStoreHook

    printed_to = demo.DEMO / "printed"
    env = {**env, "DYNAMICS_POSTING_PRINT_DESTINATION": str(printed_to)}
    params = json.dumps({"batch_post": "always", "print": True, "user_id": "DEMO"})
    store = StateStoreHook()
    problems = 0
    for category, dag_id in CATEGORIES:
        started = datetime.now(UTC)
        demo.say(f"{dag_id}: airflow dags test (Batch Post of the open documents, then the {category} drain)")
        demo.airflow(env, "dags", "test", dag_id, "-c", params, check=False)
        problems += _summary(store, category, started, printed_to)
        state, failed_tasks = demo.run_outcome(env, dag_id)
        demo.say(f"{dag_id} DAG run: {state}" + (f"; failed tasks: {', '.join(failed_tasks)}" if failed_tasks else ""))
        if "batch_post" in failed_tasks:
            demo.say(
                f'{dag_id}: Batch Post left out what Business Central would not release ("There is nothing to '
                "release ...\"); the documents and messages are in the batch_post task's log and alert"
            )
    return 1 if problems else 0


def _summary(store: object, category: str, since: datetime, printed_to: Path) -> int:
    from dynamics_jobqueue.hooks.state import StateStoreHook

    assert isinstance(store, StateStoreHook)
    with store.transaction() as cur:
        cur.execute(
            "SELECT status, document_type, document_number, user_id, error_message"
            " FROM dynamics.job_queue_log_entries WHERE category_code = %s AND started_at >= %s ORDER BY entry_no",
            (category, since),
        )
        attempts = cur.fetchall()
        cur.execute(
            "SELECT count(*) FROM dynamics.job_queue_entries WHERE category_code = %s AND printed_at >= %s",
            (category, since),
        )
        printed = cur.fetchone()[0]  # type: ignore[index]
        cur.execute(
            "SELECT count(*) FROM dynamics.job_queue_entries"
            " WHERE category_code = %s AND status IN ('Ready', 'In Process')",
            (category,),
        )
        pending = cur.fetchone()[0]  # type: ignore[index]
    posted = [a for a in attempts if a[0] == "Success"]
    failed = [a for a in attempts if a[0] == "Error"]
    print(f"\n{category}: {len(posted)} posted, {len(failed)} failed, {printed} printed (PDFs in {printed_to})")
    for _, doc_type, number, user, message in failed:
        print(f"  Error  {doc_type} {number} (queued by {user}): {message}")
    if pending:
        print(f"  {pending} entries still waiting (Ready/In Process): see `python -m dynamics_jobqueue.posting list`")
    print()
    return 1 if pending or not attempts else 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import demo

    demo.STEPS[:] = [background_posting]
    sys.exit(demo.main())
