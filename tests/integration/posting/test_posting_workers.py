"""Two workers on one category, and a worker killed with SIGKILL in the middle of a posting.

Workers are separate processes running ``python -m dynamics_jobqueue.posting drain`` against the same state
store and sandbox, as two Airflow workers (or a worker and an operator's CLI) would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

from dynamics_jobqueue.posting import queue
from dynamics_jobqueue.posting.entries import Status
from dynamics_jobqueue.posting.runner import PostingRunner
from sandbox.documents import overlaps


def _drain_process(category: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "dynamics_jobqueue.posting", "drain", "--category", category, "--lease", "30"],
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def _erp_received_the_post(posting) -> bool:
    # Counted by the sandbox when the request arrives, before the posting's latency or hang starts.
    return bool(posting.sandbox.admin("stats")["by_route"].get("POST bc/salesInvoices"))


def test_two_concurrent_drains_of_one_category_never_post_two_documents_at_once(posting, state_store) -> None:
    posting.configure(latency_ms=500)
    invoices = posting.documents("salesInvoices", "status eq 'Draft' and yourReference eq 'OPEN'")
    entries = [posting.enqueue("Sales Invoice", i["number"]) for i in invoices]
    workers = [_drain_process("SALESPOST"), _drain_process("SALESPOST")]
    outputs = [w.communicate(timeout=120)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    # Both workers posted (they alternate on the category lock), every document exactly once, never overlapping.
    assert all(" 0 posted" not in out for out in outputs), outputs
    postings = posting.postings()
    assert Counter(p["id"] for p in postings if p["outcome"] == "posted") == Counter(
        str(e.document_id) for e in entries
    )
    assert overlaps(postings) == []
    assert {posting.entry(e.id).status for e in entries} == {Status.FINISHED}
    assert {posting.entry(e.id).attempts for e in entries} == {1}


def test_a_worker_killed_while_posting_is_recovered_without_posting_twice(posting, state_store) -> None:
    # The ERP takes 2 s to post; the worker dies meanwhile, the ERP finishes the posting anyway.
    posting.configure(latency_ms=2000)
    entry = posting.enqueue("Sales Invoice", "S-INV1001")
    posting.sandbox.admin("stats/reset", {})
    worker = _drain_process("SALESPOST")
    _wait_for(lambda: posting.entry(entry.id).status is Status.IN_PROCESS)
    _wait_for(lambda: _erp_received_the_post(posting))
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)
    _wait_for(lambda: len(posting.postings()) == 1)  # the ERP finished the posting the dead worker started
    assert posting.entry(entry.id).status is Status.IN_PROCESS  # left behind by the dead worker

    result = PostingRunner(state_store, posting.bc, "SALESPOST").drain()
    assert result.recovered == 1
    recovered = posting.entry(entry.id)
    assert recovered.status is Status.FINISHED and recovered.attempts == 1
    assert [p["outcome"] for p in posting.postings()] == ["posted"]  # the ERP posted it once
    assert [i.status for i in queue.list_log_entries(state_store, entry.id)] == ["Success"]


def test_a_worker_killed_before_the_erp_posted_leaves_the_category_waiting_until_the_job_timeout(
    posting, state_store
) -> None:
    # The posting hangs and ends without posting (the ERP's operation timeout); the worker dies meanwhile.
    posting.configure(hang_numbers=["S-INV1001"], hang_s=2)
    entry = posting.enqueue("Sales Invoice", "S-INV1001", rerun_delay_s=0, timeout_s=4)
    other = posting.enqueue("Sales Invoice", "S-INV1003")
    posting.sandbox.admin("stats/reset", {})
    worker = _drain_process("SALESPOST")
    _wait_for(lambda: posting.entry(entry.id).status is Status.IN_PROCESS)
    _wait_for(lambda: _erp_received_the_post(posting))
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)
    _wait_for(lambda: len(posting.postings()) == 1)  # the hang ended: nothing posted
    posting.configure()

    # The ERP shows the document open, but the dead worker's posting may be running until its Job Timeout:
    # nothing of the category is posted meanwhile, not even the other document.
    waiting = PostingRunner(state_store, posting.bc, "SALESPOST").drain()
    assert (waiting.posted, waiting.recovered, waiting.waiting_for) == (0, 0, ["Sales Invoice S-INV1001"])
    assert [e.id for e in queue.list_entries(state_store, statuses=[Status.WAITING])] == [other.id]
    started = posting.entry(entry.id).started_at
    assert started is not None
    _wait_for(lambda: datetime.now(UTC) > started + timedelta(seconds=4.5))

    result = PostingRunner(state_store, posting.bc, "SALESPOST").drain()
    assert (result.recovered, result.posted, result.waiting_for) == (1, 2, [])
    final = posting.entry(entry.id)
    assert final.status is Status.FINISHED and final.attempts == 2
    assert [p["outcome"] for p in posting.postings()] == ["timeout", "posted", "posted"]
    assert [i.status for i in queue.list_log_entries(state_store, entry.id)] == ["Error", "Success"]
    assert overlaps(posting.postings()) == []
