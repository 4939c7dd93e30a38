"""The sync's convergence invariant, checked by a stateful property test (hypothesis ``RuleBasedStateMachine``).

Over the real sandbox and the real Postgres, hypothesis draws sequences of: users' edits and creates on both
sides (Business Central customers, Dataverse accounts), clean runs of CUSTOMER (incremental or full), runs
killed at a random named crash point in a child process (:mod:`dynamics_jobqueue.sync.crash_points`), and runs
against a sandbox answering 429, 5xx or dropping connections before and after processing. At the end of every
sequence two clean runs catch up and the invariant of the sync package's README must hold:

- no pending coupling and no write-back owed; couplings 1:1 and every record coupled once (no twin);
- every mapped field equal on both sides, and equal to the last value a user gave it, unless the pair's
  update conflict is reported (``resolve_update_conflicts: none``); no other record error, nothing Skipped
  that is not such a conflict.

``make test`` runs a few sequences (``SYNC_PROPERTY_EXAMPLES``, default 4); ``make chaos`` runs hundreds and
prints what it tried and found.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule, run_state_machine_as_test

from dynamics_jobqueue.sync import crash_points
from dynamics_jobqueue.sync.runner import SyncRecordsFailed, SyncSystemicError

EXAMPLES = int(os.environ.get("SYNC_PROPERTY_EXAMPLES", "4"))
STEPS = int(os.environ.get("SYNC_PROPERTY_STEPS", "6"))
#: Customer fields that flow both ways, ERP name -> CRM name (short values: no truncation in play).
FIELDS = {"displayName": "name", "city": "address1_city", "phoneNumber": "telephone1"}
POINTS = list(crash_points.POINTS)
TALLY: Counter[str] = Counter()

SANDBOX_TABLES = (
    "dynamics.sync_coupling, dynamics.sync_watermark, dynamics.sync_record_error, dynamics.sync_job,"
    " dynamics.sync_job_error, dynamics.sync_staging, dynamics.sync_pending_create, dynamics.settings"
)


def machine(sync: Any) -> type[RuleBasedStateMachine]:
    class SyncMachine(RuleBasedStateMachine):
        """Edits, runs, crashes and faults; the invariant once clean runs caught up (see the module)."""

        @initialize()
        def fresh(self) -> None:
            sync.sandbox.reset()
            sync.sql(f"TRUNCATE {SANDBOX_TABLES}")
            sync.run("CURRENCY", "SALESPEOPLE", run_id="dependencies")
            #: (erp id or crm id, ERP field) -> the last value a user gave it
            self.last: dict[tuple[str, str], str] = {}
            self.serial = 0
            TALLY["sequences"] += 1

        def _value(self, label: str) -> str:
            self.serial += 1
            return f"{label} {self.serial}"

        @rule(pick=st.integers(0, 50), field=st.sampled_from(sorted(FIELDS)))
        def erp_user_edits(self, pick: int, field: str) -> None:
            customers = sorted(sync.erp("customers"), key=lambda c: c["number"])
            customer = customers[pick % len(customers)]
            value = self._value("ERP")
            sync.erp_user.update("customers", customer["id"], {field: value})
            self.last[(customer["id"], field)] = value
            TALLY["erp edits"] += 1

        @rule(pick=st.integers(0, 50), field=st.sampled_from(sorted(FIELDS)))
        def crm_user_edits(self, pick: int, field: str) -> None:
            accounts = sorted(sync.crm("accounts", "customertypecode eq 3"), key=lambda a: a["accountid"])
            account = accounts[pick % len(accounts)]
            value = self._value("CRM")
            sync.crm_user.upsert("accounts", account["accountid"], {FIELDS[field]: value}, mode="update")
            self.last[(account["accountid"], field)] = value
            TALLY["crm edits"] += 1

        @rule()
        def erp_user_creates(self) -> None:
            value = self._value("New ERP")
            number = f"9{self.serial:04d}"
            created = sync.erp_user.create("customers", {"number": number, "displayName": value, "city": "Ely"})
            self.last[(created["id"], "displayName")] = value
            TALLY["erp creates"] += 1

        @rule()
        def crm_user_creates(self) -> None:
            value = self._value("New CRM")
            created = sync.crm_user.create("accounts", {"name": value, "address1_city": "York", "customertypecode": 3})
            self.last[(created.lower(), "displayName")] = value
            TALLY["crm creates"] += 1

        @rule(full=st.booleans())
        def clean_run(self, full: bool) -> None:
            self._run(full_sync=full)
            TALLY["full runs" if full else "incremental runs"] += 1

        @rule(point=st.sampled_from(POINTS), occurrence=st.integers(1, 2), full=st.booleans())
        def run_killed(self, point: str, occurrence: int, full: bool) -> None:
            self._kill(point, occurrence, full)

        @rule(point=st.sampled_from(POINTS))
        def run_killed_at_first_pass(self, point: str) -> None:
            # A second kill rule makes kills as likely as edits: they are what this test is about.
            self._kill(point, 1, False)

        def _kill(self, point: str, occurrence: int, full: bool) -> None:
            try:
                sync.crash("CUSTOMER", point=point, occurrence=occurrence, full_sync=full)
                TALLY["runs killed"] += 1
                TALLY[f"killed at {point}"] += 1
            except AssertionError:  # the run ended before passing the point: a clean run
                TALLY["kills not reached"] += 1

        @rule(
            before=st.sampled_from([{}, {"rate_429": 0.3, "retry_after_s": 0}, {"rate_5xx": 0.3}, {"rate_drop": 0.2}]),
            after=st.sampled_from([{}, {"rate_5xx_after": 0.3}, {"rate_drop_after": 0.3}]),
            seed=st.integers(0, 1000),
        )
        def run_with_faults(self, before: dict[str, Any], after: dict[str, Any], seed: int) -> None:
            sync.sandbox.admin("faults", {**before, **after, "seed": seed})
            try:
                self._run(full_sync=False)
                TALLY["faulty runs finished"] += 1
            except SyncSystemicError:
                TALLY["faulty runs stopped"] += 1
            finally:
                sync.sandbox.admin("faults", {})

        def _run(self, *, full_sync: bool) -> None:
            # Conflicts are reported as failed records: the invariant decides whether that is right.
            with contextlib.suppress(SyncRecordsFailed):
                sync.run("CUSTOMER", run_id=f"run-{self.serial}", full_sync=full_sync)

        def teardown(self) -> None:
            if not hasattr(self, "last"):
                return
            for _ in range(2):
                self._run(full_sync=False)
            check_invariant(sync, self.last)
            TALLY["invariant checks"] += 1
            if os.environ.get("SYNC_PROPERTY_PROGRESS"):
                print(f"sequence {TALLY['sequences']}: invariant holds; so far {dict(TALLY)}", flush=True)

    return SyncMachine


def check_invariant(sync: Any, last: dict[tuple[str, str], str]) -> None:
    """The convergence invariant after clean runs caught up (see the module docstring)."""
    assert sync.sql("SELECT count(*) FROM dynamics.sync_pending_create WHERE mapping = 'CUSTOMER'") == [(0,)]
    assert sync.sql("SELECT count(*) FROM dynamics.sync_coupling WHERE write_back_pending") == [(0,)]
    errors = sync.record_errors("CUSTOMER")
    assert {e["kind"] for e in errors} <= {"conflict"}, errors
    in_conflict = {e["source_id"] for e in errors} | {e["destination_id"] for e in errors}
    customers = {c["id"]: c for c in sync.erp("customers")}
    accounts = {a["accountid"]: a for a in sync.crm("accounts", "customertypecode eq 3 and statecode eq 0")}
    pairs = dict(sync.sql("SELECT erp_id, crm_id FROM dynamics.sync_coupling WHERE mapping = 'CUSTOMER'"))
    assert set(pairs) == set(customers), "every customer coupled once"
    assert set(pairs.values()) == set(accounts), "every account coupled once (no twin)"
    for erp_id, crm_id in pairs.items():
        customer, account = customers[erp_id], accounts[crm_id]
        assert customer["number"] == account["accountnumber"]
        if erp_id in in_conflict or crm_id in in_conflict:
            continue
        for erp_field, crm_field in FIELDS.items():
            assert (customer[erp_field] or None) == (account[crm_field] or None), (erp_field, customer, account)
            # The last edit wins on both sides; the other side's older edit is overwritten, never the newer.
            edits = [v for k, v in last.items() if k in ((erp_id, erp_field), (crm_id, erp_field))]
            if edits:
                newest = max(edits, key=lambda v: int(v.rsplit(" ", 1)[1]))
                assert customer[erp_field] == newest, (erp_field, newest, customer, account)


@pytest.mark.timeout(0)
def test_edits_runs_crashes_and_faults_converge(sync) -> None:
    TALLY.clear()
    run_state_machine_as_test(
        machine(sync),
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        ),
    )
    print(f"\nsync property test: {dict(TALLY)}")
