"""`make bench`: every benchmark of the project, one after the other, each in its own process.

Benchmarks measure; they are not tests and assert nothing. Each prints its figures and, as its last line,
``key=value`` pairs. Extra arguments per benchmark come from ``BENCH_<NAME>_ARGS``; run one alone with
``python include/scripts/bench_<name>.py --help``.

- ``bench_sync.py``: crm_sync throughput, requests per record, incremental share, speedup over a naive client,
  peak RSS (``BENCH_SYNC_ARGS``, e.g. ``--rss-records 1000000`` for the memory-scaling figure);
- ``bench_posting.py``: orchestration overhead per posted document and the no-overlap check;
- ``bench_mailbox.py``: initial IMAP fetch against mbsync, and an idle cycle over 1,000 mailboxes;
- ``bench_parse.py``: parse time of each DAG file;
- ``bench_console.py``: ms per page of every console list with 10,000 couplings and 2,000 errors (target 300);
- ``bench_latency.py``: change-to-sync latency of event-driven crm_sync (Business Central webhooks, Dataverse
  change tracking) and idle requests per hour per mapping, against the 30-minute polling baseline
  (``BENCH_LATENCY_ARGS``, e.g. ``--changes 40 --window 600``).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = (
    "bench_sync.py",
    "bench_posting.py",
    "bench_mailbox.py",
    "bench_parse.py",
    "bench_console.py",
    "bench_latency.py",
)


def main() -> int:
    failed = []
    for script in BENCHMARKS:
        extra = shlex.split(os.environ.get(f"BENCH_{script[6:-3].upper()}_ARGS", ""))
        print(f"\n>> {script} {' '.join(extra)}".rstrip(), flush=True)
        if subprocess.run([sys.executable, str(HERE / script), *extra], check=False).returncode != 0:
            failed.append(script)
    if failed:
        print(f"\n>> did not finish: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
