"""Command line of the job queue: ``python -m dynamics_jobqueue.posting <command>``.

Commands: ``enqueue`` (Post via Job Queue), ``remove`` (Remove from Job Queue), ``hold`` / ``ready`` (Set On
Hold / Set Status to Ready), ``list`` (Job Queue Entries, ``--user`` for My Job Queue), ``log`` (Job Queue Log
Entries), ``drain`` (post a category now, as the DAG's drain task), ``batch-post`` and ``create-pools`` (the
Airflow pools ``SALESPOST`` and ``PURCHPOST`` of one slot).
Connections are Airflow's (``AIRFLOW_CONN_DYNAMICS_STATE``, ``AIRFLOW_CONN_BUSINESS_CENTRAL_DEFAULT``); without a
state store connection the embedded Postgres is used.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from dynamics_jobqueue.hooks.state import StateStoreHook
from dynamics_jobqueue.posting import queue
from dynamics_jobqueue.posting.batch import BatchPostOptions, batch_post
from dynamics_jobqueue.posting.categories import DOCUMENT_TYPES, PURCHPOST, SALESPOST, SHORT_NAMES
from dynamics_jobqueue.posting.entries import Status
from dynamics_jobqueue.posting.printing import printer_for
from dynamics_jobqueue.posting.runner import PostingRunner

if TYPE_CHECKING:
    from dynamics_jobqueue.hooks.business_central import BusinessCentralHook


def _bc(conn_id: str) -> BusinessCentralHook:
    # Imported here: only the commands that reach Business Central pay for msal and requests.
    from dynamics_jobqueue.hooks.business_central import BusinessCentralHook

    return BusinessCentralHook(conn_id)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dynamics_jobqueue.posting", description=__doc__.split("\n")[0])
    parser.add_argument("--state-conn-id", default=StateStoreHook.default_conn_name)
    parser.add_argument("--bc-conn-id", default="business_central_default")
    commands = parser.add_subparsers(dest="command", required=True)

    enqueue = commands.add_parser("enqueue", help="queue a document for posting (Post via Job Queue)")
    enqueue.add_argument("--type", required=True, choices=list(DOCUMENT_TYPES), help="document type")
    enqueue.add_argument("--number", required=True, help="document number")
    enqueue.add_argument("--id", help="document id (GUID); read from Business Central when left out")
    enqueue.add_argument("--user", required=True, help="user id who queues it (named in alerts)")
    enqueue.add_argument("--print", action="store_true", help="Post & Print")
    enqueue.add_argument("--priority", type=int, default=1000)
    enqueue.add_argument("--earliest-start", type=datetime.fromisoformat, help="ISO 8601 with time zone")
    enqueue.add_argument("--expires", type=datetime.fromisoformat, help="ISO 8601 with time zone")
    enqueue.add_argument("--max-attempts", type=int, default=3)
    enqueue.add_argument("--rerun-delay", type=int, default=60, help="seconds")
    enqueue.add_argument("--timeout", type=int, default=7200, help="seconds (default 2 h)")

    remove = commands.add_parser("remove", help="Remove from Job Queue")
    remove.add_argument("--type", required=True, choices=list(DOCUMENT_TYPES))
    remove.add_argument("--number", required=True)

    for name, help_text in (("hold", "Set On Hold"), ("ready", "Set Status to Ready")):
        change = commands.add_parser(name, help=help_text)
        change.add_argument("--type", required=True, choices=list(DOCUMENT_TYPES))
        change.add_argument("--number", required=True)

    listing = commands.add_parser("list", help="job queue entries, newest first")
    listing.add_argument("--category", choices=[SALESPOST, PURCHPOST])
    listing.add_argument("--status", action="append", choices=[str(s) for s in Status])
    listing.add_argument("--user", help="My Job Queue: this user's entries")
    listing.add_argument("--limit", type=int, default=100)

    log = commands.add_parser("log", help="job queue log entries")
    log.add_argument("--entry", type=uuid.UUID, help="of one job queue entry")

    drain = commands.add_parser("drain", help="post a category's Ready entries now")
    drain.add_argument("--category", required=True, choices=[SALESPOST, PURCHPOST])
    drain.add_argument("--print-destination", help="folder/URL, lp or lp:<printer>")
    drain.add_argument("--max-entries", type=int)
    drain.add_argument("--lease", type=float, default=60.0, help="seconds")

    batch = commands.add_parser("batch-post", help="queue a category's open documents (Batch Post)")
    batch.add_argument("--category", required=True, choices=[SALESPOST, PURCHPOST])
    batch.add_argument("--user", required=True)
    batch.add_argument("--document-type", action="append", choices=list(SHORT_NAMES))
    batch.add_argument("--filter", help="OData $filter on the documents")
    batch.add_argument("--posting-date", help="YYYY-MM-DD")
    batch.add_argument("--replace-posting-date", action="store_true")
    batch.add_argument("--replace-document-date", action="store_true")
    batch.add_argument("--vat-date", help="YYYY-MM-DD, for --replace-vat-date (default: the posting date)")
    batch.add_argument("--replace-vat-date", action="store_true", help="with --replace-posting-date")
    batch.add_argument("--no-ship", action="store_true", help="orders: invoice only what was shipped (received)")
    batch.add_argument("--no-invoice", action="store_true", help="orders: ship (receive) only")
    batch.add_argument("--no-calc-inv-discount", action="store_true", help="leave invoice discounts as they are")
    batch.add_argument("--print", action="store_true")

    commands.add_parser("create-pools", help="create the Airflow pools SALESPOST and PURCHPOST (one slot each)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status (1 when the job queue refused the request)."""
    args = _parser().parse_args(argv)
    if args.command == "create-pools":
        from airflow.models.pool import Pool

        for category, description in ((SALESPOST, "Sales posting"), (PURCHPOST, "Purchase posting")):
            Pool.create_or_update_pool(category, 1, f"Job queue category {category}: {description}", False)
            print(f"pool {category}: 1 slot")
        return 0
    store = StateStoreHook(state_conn_id=args.state_conn_id)
    try:
        if args.command == "enqueue":
            options = dict(
                user_id=args.user,
                post_and_print=args.print,
                priority=args.priority,
                earliest_start_at=args.earliest_start,
                expires_at=args.expires,
                max_attempts=args.max_attempts,
                rerun_delay_s=args.rerun_delay,
                timeout_s=args.timeout,
            )
            if args.id:
                entry = queue.enqueue(
                    store,
                    queue.EnqueueRequest(
                        document_type=args.type, document_id=uuid.UUID(args.id), document_number=args.number, **options
                    ),
                )
            else:
                entry = queue.enqueue_by_number(store, _bc(args.bc_conn_id), args.type, args.number, **options)
            print(queue.scheduled_message(entry.document_type, entry.document_number), f"(entry {entry.id})")
        elif args.command == "remove":
            entry = queue.remove(store, args.type, args.number)
            print(f"{entry.describe()} was removed from the job queue.")
        elif args.command in ("hold", "ready"):
            target = Status.ON_HOLD if args.command == "hold" else Status.READY
            entry = queue.set_status(store, args.type, args.number, target)
            print(f"{entry.describe()}: {entry.status}")
        elif args.command == "list":
            statuses = [Status(s) for s in args.status] if args.status else None
            for entry in queue.list_entries(
                store, category_code=args.category, statuses=statuses, user_id=args.user, limit=args.limit
            ):
                print(
                    f"{entry.id}  {entry.category_code:<9}  {entry.status:<10}  {entry.describe():<32}  "
                    f"{entry.user_id:<12}  {entry.job_queue_status or '-':<21}  {entry.error_message or ''}"
                )
        elif args.command == "log":
            for item in queue.list_log_entries(store, args.entry):
                print(
                    f"{item.entry_no:>6}  {item.status:<10}  {item.document_type} {item.document_number:<14}  "
                    f"{item.started_at:%Y-%m-%d %H:%M:%S}  {item.error_message or ''}"
                )
        elif args.command == "drain":
            runner = PostingRunner(
                store,
                _bc(args.bc_conn_id),
                args.category,
                printer=printer_for(args.print_destination),
                lease_s=args.lease,
            )
            result = runner.drain(max_entries=args.max_entries)
            print(result.summary())
            for failure in result.failed:
                print(f"  failed: {failure}")
            return 1 if result.failed else 0
        elif args.command == "batch-post":
            batch_options = BatchPostOptions.from_params(
                {
                    "document_types": args.document_type,
                    "filter": args.filter,
                    "posting_date": args.posting_date,
                    "replace_posting_date": args.replace_posting_date,
                    "replace_document_date": args.replace_document_date,
                    "vat_date": args.vat_date,
                    "replace_vat_date": args.replace_vat_date,
                    "ship": not args.no_ship,
                    "invoice": not args.no_invoice,
                    "calc_inv_discount": not args.no_calc_inv_discount,
                    "print": args.print,
                }
            )
            outcome = batch_post(store, _bc(args.bc_conn_id), args.category, batch_options, user_id=args.user)
            print(
                json.dumps(
                    {
                        "found": outcome.found,
                        "queued": outcome.queued,
                        "refused": outcome.refused,
                        "not_released": outcome.not_released,
                    }
                )
            )
            return 1 if outcome.not_released else 0
    except (queue.JobQueueError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
