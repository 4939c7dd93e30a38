"""Crash safety of the drain: killed with SIGKILL at each named crash point of the posting runner, in a child
process, then drained to the end by the next runs. Checked from the sandbox ERP's own posting log: no two
postings of the category overlapped, no document was sent twice, and no entry is left In Process or Ready.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from dynamics_jobqueue.posting import queue
from dynamics_jobqueue.posting.entries import Status
from dynamics_jobqueue.posting.printing import FolderPrinter
from dynamics_jobqueue.posting.runner import CRASH_AT_ENV, CRASH_DELAY_ENV, CRASH_POINTS, PostingRunner
from sandbox.documents import BENCHMARK, overlaps

#: Short enough for the test to see a dead worker's Job Timeout pass.
TIMEOUT_S = 3


def _crashing_drain(point: str, print_folder: str) -> None:
    """Run ``drain`` in a child process that kills itself at ``point``; check that it died there."""
    env = {
        **os.environ,
        CRASH_AT_ENV: point,
        CRASH_DELAY_ENV: "0.1",
        "DYNAMICS_POSTING_PRINT_DESTINATION": print_folder,
    }
    done = subprocess.run(
        [sys.executable, "-m", "dynamics_jobqueue.posting", "drain", "--category", "SALESPOST", "--lease", "30"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == -signal.SIGKILL, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_a_drain_killed_at_each_crash_point_never_overlaps_nor_resends_and_leaves_nothing_behind(
    point, posting, state_store, tmp_path
) -> None:
    posting.configure(latency_ms=300)  # the ERP's own posting time: in_flight dies 0.1 s into it
    posting.sandbox.admin("documents/generate", {"entity": "salesInvoices", "count": 4})
    documents = posting.documents("salesInvoices", f"status eq 'Draft' and yourReference eq '{BENCHMARK}'")
    entries = [
        posting.enqueue(
            "Sales Invoice",
            d["number"],
            # Post & Print needs time to print on a busy machine; its crash point never waits for the timeout.
            timeout_s=60 if point == "marked_posted" else TIMEOUT_S,
            rerun_delay_s=0,
            post_and_print=point == "marked_posted",
        )
        for d in documents
    ]
    printed = tmp_path / "printed"
    if point == "recovering":  # needs an orphan to recover: the first drain dies while the ERP posts
        _crashing_drain("in_flight:1", printed.as_uri())
        _crashing_drain("recovering:1", printed.as_uri())
    else:
        # The second document: the first one posted normally, the crash hits a drain in full swing.
        _crashing_drain(f"{point}:2", printed.as_uri())

    deadline = time.monotonic() + 30
    runner = PostingRunner(state_store, posting.bc, "SALESPOST", printer=FolderPrinter(printed.as_uri()))
    while queue.list_entries(state_store, statuses=[Status.READY, Status.WAITING, Status.IN_PROCESS]):
        assert time.monotonic() < deadline, queue.list_entries(state_store)
        runner.drain()
        time.sleep(0.2)

    postings = posting.postings()
    assert overlaps(postings) == []
    sent = Counter(p["id"] for p in postings)
    assert sent == Counter(str(e.document_id) for e in entries)  # each document sent exactly once
    assert {p["outcome"] for p in postings} == {"posted"}
    final = {posting.entry(e.id).status for e in entries}
    if point == "marked_posted":  # the print of the dead worker's document is lost: posted, not printed
        assert Counter(posting.entry(e.id).status for e in entries) == {Status.FINISHED: 3, Status.ERROR: 1}
    else:
        assert final == {Status.FINISHED}
