"""The console's lists under load (issue 16: every list pages and sorts in under 300 ms per page, with its total).

Starts its own embedded Postgres (in a temporary folder), fills the state store with ``--couplings`` couplings
(10,000), ``--errors`` failing records (2,000), as many Error documents to handle, job queue log entries and
sync runs, then asks the console's JSON API for pages of every list: the first page, a page in the middle and
the last page, sorted by a column and by the same column descending, and filtered by a search. Requests go
through the console's FastAPI app in process (``TestClient``: routing, validation, SQL, the response model and
JSON), signed in as a stub user of the read permission; the api-server's own auth adds the same to every page.
Each figure is the median of ``--repeat`` requests, in milliseconds.

Usage::

    python include/scripts/bench_console.py [--couplings 10000] [--errors 2000] [--repeat 5] [--target 300]

Exit status 1 when a page is slower than ``--target`` ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: (list, URL under /api, a sort name, a search or filter of that list)
LISTS: list[tuple[str, str, str, dict[str, str]]] = [
    ("couplings", "/api/sync/couplings", "erp_key", {"search": "7"}),
    ("sync errors", "/api/sync/errors", "error_count", {"search": "too long"}),
    ("sync runs", "/api/sync/runs", "inserted", {"mapping": "CUSTOMER"}),
    ("documents to handle", "/api/documents-to-handle", "document_number", {"search": "1"}),
    ("job queue entries", "/api/job-queue-entries", "priority", {"status": "Error"}),
    ("job queue log", "/api/job-queue-log-entries", "started_at", {"status": "Error"}),
]

SEED = """
INSERT INTO dynamics.sync_coupling (mapping, erp_id, crm_id, erp_key, crm_key)
SELECT (ARRAY['CUSTOMER', 'CONTACT', 'ITEM-PRODUCT'])[1 + n %% 3], gen_random_uuid()::text, gen_random_uuid()::text,
       (10000 + n)::text, 'A' || (10000 + n)
  FROM generate_series(1, %(couplings)s) n;
INSERT INTO dynamics.sync_job (run_id, mapping, direction, status, started_at, finished_at, inserted, modified,
                               unchanged, failed)
SELECT 'scheduled__' || n, (ARRAY['CUSTOMER', 'CONTACT', 'ITEM-PRODUCT'])[1 + n %% 3], 'to_crm', 'success',
       now() - n * interval '10 minutes', now() - n * interval '10 minutes' + interval '1 minute',
       n %% 7, n %% 11, 100, n %% 3
  FROM generate_series(1, %(runs)s) n;
INSERT INTO dynamics.sync_record_error (mapping, direction, source_id, source_key, kind, message, error_count,
                                        skipped, last_job_id)
SELECT 'CUSTOMER', 'to_crm', gen_random_uuid()::text, (20000 + n)::text, 'record',
       'Customer ' || (20000 + n) || ': the account name is too long', 1 + n %% 3, n %% 5 = 0, n %% %(runs)s + 1
  FROM generate_series(1, %(errors)s) n;
INSERT INTO dynamics.job_queue_entries (category_code, document_type, document_id, document_number, description,
                                        status, user_id, priority, attempts, error_message)
SELECT 'SALESPOST', 'Sales Invoice', gen_random_uuid(), (300000 + n)::text, 'Post Sales Invoice ' || (300000 + n),
       CASE WHEN n <= %(errors)s THEN 'Error' ELSE 'Ready' END, 'BENCH', 1000 + n %% 10, 3,
       CASE WHEN n <= %(errors)s THEN 'Customer 10000 is blocked.' END
  FROM generate_series(1, %(entries)s) n;
INSERT INTO dynamics.job_queue_log_entries (job_queue_entry_id, category_code, document_type, document_id,
                                            document_number, user_id, description, status, started_at, ended_at,
                                            error_message)
SELECT id, category_code, document_type, document_id, document_number, user_id, description,
       CASE WHEN status = 'Error' THEN 'Error' ELSE 'Success' END, now() - entry_no * interval '1 minute',
       now() - entry_no * interval '1 minute' + interval '2 seconds', error_message
  FROM dynamics.job_queue_entries;
"""


def _median_ms(client: Any, url: str, params: dict[str, Any], repeat: int) -> tuple[float, dict[str, Any]]:
    samples = []
    body: dict[str, Any] = {}
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(url, params=params)
        samples.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"{url} {params}: HTTP {response.status_code} {response.text[:300]}")
        body = response.json()
    return statistics.median(samples), body


def run(couplings: int, errors: int, repeat: int, limit: int) -> list[dict[str, Any]]:
    """Seed, then time the pages of every list. :return: one row per list and kind of page (ms, total)."""
    with tempfile.TemporaryDirectory(prefix="bench-console-") as folder:
        os.environ["DYNAMICS_STATE_DIR"] = str(Path(folder) / "state")
        os.environ["AIRFLOW__DYNAMICS_JOBQUEUE__EMBEDDED_STATE_STORE"] = "True"
        os.environ.pop("AIRFLOW_CONN_DYNAMICS_STATE", None)
        from fastapi.testclient import TestClient

        from dynamics_jobqueue.console import app as console_app
        from dynamics_jobqueue.console import security
        from dynamics_jobqueue.hooks.state import StateStoreHook
        from dynamics_jobqueue.state import embedded

        try:
            store = StateStoreHook()
            store.migrate()
            with store.transaction() as cur:
                params = {"couplings": couplings, "errors": errors, "runs": couplings // 2, "entries": couplings}
                for statement in filter(str.strip, SEED.split(";")):
                    cur.execute(statement, params if "%(" in statement else None)
            app = console_app.create_app()
            app.dependency_overrides[console_app.get_store] = lambda: store

            class BenchUser:  # the read permission is the auth manager's; here a stub user has it
                def get_name(self) -> str:
                    return "bench"

            app.dependency_overrides[security.read_user] = BenchUser
            client = TestClient(app)
            figures = []
            for name, url, sort, filters in LISTS:
                _, first = _median_ms(client, url, {"limit": limit}, 1)
                total = int(first["total"])
                last_offset = max(total - limit, 0)
                pages = {
                    "first": {"limit": limit},
                    "middle": {"limit": limit, "offset": total // 2},
                    "last": {"limit": limit, "offset": last_offset},
                    f"sort {sort}": {"limit": limit, "sort": sort, "offset": total // 2},
                    f"sort -{sort}": {"limit": limit, "sort": f"-{sort}"},
                    "filtered": {"limit": limit, **filters},
                }
                for kind, params in pages.items():
                    ms, body = _median_ms(client, url, params, repeat)
                    figures.append(
                        {
                            "list": name,
                            "page": kind,
                            "ms": round(ms, 1),
                            "rows": len(body["items"]),
                            "total": body["total"],
                        }
                    )
        finally:
            embedded.stop(Path(folder) / "state" / "pgdata")
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--couplings", type=int, default=10_000)
    parser.add_argument("--errors", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=5, help="requests per figure (median)")
    parser.add_argument("--limit", type=int, default=50, help="rows per page")
    parser.add_argument("--target", type=float, default=300.0, help="ms per page (issue 16)")
    args = parser.parse_args(argv)
    figures = run(args.couplings, args.errors, args.repeat, args.limit)
    print(f"{'list':<22}{'page':<24}{'ms':>8}{'rows':>6}{'total':>8}")
    for f in figures:
        print(f"{f['list']:<22}{f['page']:<24}{f['ms']:>8.1f}{f['rows']:>6}{f['total']:>8}")
    slowest = max(figures, key=lambda f: f["ms"])
    print(
        f"console_pages={len(figures)} console_max_ms={slowest['ms']} console_slowest={slowest['list']!r}"
        f"/{slowest['page']!r} target_ms={args.target:g}"
    )
    return 1 if slowest["ms"] > args.target else 0


if __name__ == "__main__":
    sys.exit(main())
