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

A killed run is a child forked by the warm crash worker (``crash_worker.py --serve``), so a kill costs the run,
not an interpreter start; its point is drawn among the points the run will pass given what is owed since the
last finished run (:func:`reachable`), so a drawn kill is rarely a clean run in disguise.

``make test`` runs a few sequences (``SYNC_PROPERTY_EXAMPLES``, default 4, of up to ``SYNC_PROPERTY_STEPS``
steps, default 6); ``make chaos`` runs hundreds on the CRONUS data, then a few with ``SYNC_PROPERTY_RECORDS``
synthetic customers more (tens of thousands: kills then land in the middle of large change sets), and prints
what it tried and found (:func:`summary`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from dynamics_jobqueue.sync import crash_points
from dynamics_jobqueue.sync.runner import SyncRecordsFailed, SyncSystemicError

EXAMPLES = int(os.environ.get("SYNC_PROPERTY_EXAMPLES", "4"))
STEPS = int(os.environ.get("SYNC_PROPERTY_STEPS", "6"))
#: Synthetic customers added to the CRONUS ones at the start of every sequence (``make chaos``'s large mode).
RECORDS = int(os.environ.get("SYNC_PROPERTY_RECORDS", "0"))
#: Customer fields that flow both ways, ERP name -> CRM name (short values: no truncation in play).
FIELDS = {"displayName": "name", "city": "address1_city", "phoneNumber": "telephone1"}
TALLY: Counter[str] = Counter()

SANDBOX_TABLES = (
    "dynamics.sync_coupling, dynamics.sync_watermark, dynamics.sync_record_error, dynamics.sync_job,"
    " dynamics.sync_job_error, dynamics.sync_staging, dynamics.sync_pending_create, dynamics.settings"
)

#: The stages of a CUSTOMER run in the order it passes them (``write_back`` is inside the CRM->ERP pass).
STAGES = ("staging", "to_crm", "from_crm", "write_back")
#: Points every run passes, whatever changed.
ALWAYS = (
    "staging.read",
    *(f"{flow}.pass.{p}" for flow in ("to_crm", "from_crm") for p in ("before_finish", "finished")),
)


#: Seconds spent per kind of step (the per-sequence cost ``make chaos`` reports).
SECONDS: Counter[str] = Counter()
#: A step slower than this is printed with ``SYNC_PROPERTY_PROGRESS`` (a hang is a finding too).
SLOW_STEP_S = 20.0


def timed(step: Callable[..., None]) -> Callable[..., None]:
    """Add the step's wall time to :data:`SECONDS`."""

    @functools.wraps(step)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        started = time.monotonic()
        try:
            step(*args, **kwargs)
        finally:
            took = time.monotonic() - started
            SECONDS[step.__name__] += took
            if took > SLOW_STEP_S and os.environ.get("SYNC_PROPERTY_PROGRESS"):
                print(f"slow step: {step.__name__}({kwargs}) took {took:.1f} s", flush=True)

    return wrapper


def stage_of(point: str) -> str:
    return point.split(".", 1)[0]


def reachable(owed: set[str], *, full: bool) -> list[str]:
    """The crash points a CUSTOMER run passes, given the work ``owed`` since the last run that finished.

    ``owed`` holds ``"<stage>"`` (changes the stage writes) and ``"<stage>.create"`` (records it creates). A
    stage with changes passes its page's commit and ``$batch`` points; one with creates, its pending point;
    a full run commits an ERP->CRM page even with nothing to write (the CRM side leaves out what the integration
    user changed last, so a full run may stage nothing). ``write_back.pending`` is never passed:
    a write-back only updates. Kills are drawn from these so that a drawn kill is not a clean run in disguise.
    """
    points = list(ALWAYS)
    for stage in ("to_crm", "from_crm", "write_back"):
        if stage in owed or (full and stage == "to_crm"):
            points += [f"{stage}.commit.inside", f"{stage}.commit.after"]
        if stage in owed:
            points += [f"{stage}.batch.before", f"{stage}.batch.answered"]
        if f"{stage}.create" in owed:
            points.append(f"{stage}.pending")
    assert set(points) <= set(crash_points.POINTS)
    return sorted(set(points))


def machine(sync: Any) -> type[RuleBasedStateMachine]:
    class SyncMachine(RuleBasedStateMachine):
        """Edits, runs, crashes and faults; the invariant once clean runs caught up (see the module)."""

        @initialize(data=st.data())
        @timed
        def fresh(self, data: st.DataObject) -> None:
            sync.sandbox.reset()
            sync.sql(f"TRUNCATE {SANDBOX_TABLES}")
            if RECORDS:
                sync.sandbox.admin("generate", {"entity": "customers", "count": RECORDS, "prefix": "S"})
            sync.run("CURRENCY", "SALESPEOPLE", run_id="dependencies")
            #: (erp id or crm id, ERP field) -> the last value a user gave it
            self.last: dict[tuple[str, str], str] = {}
            self.serial = 0
            self.stepped = False
            #: what the next run has to do (see reachable()): a fresh tenant pair owes the first sync
            self.owed = {"to_crm", "to_crm.create", "from_crm", "from_crm.create", "write_back"}
            TALLY["sequences"] += 1
            if RECORDS:
                # The first sync of tens of thousands of records is killed somewhere in its middle: the case a
                # large tenant pair meets first, and one a few sequences would otherwise rarely draw.
                self._kill(data, False)

        @invariant()
        def count_steps(self) -> None:  # hypothesis checks invariants after the initialization and every step
            if self.stepped:
                TALLY["steps"] += 1
            self.stepped = True

        def _value(self, label: str) -> str:
            self.serial += 1
            return f"{label} {self.serial}"

        @rule(pick=st.integers(0, 50), field=st.sampled_from(sorted(FIELDS)))
        @timed
        def erp_user_edits(self, pick: int, field: str) -> None:
            customers = sorted(sync.erp("customers"), key=lambda c: c["number"])
            customer = customers[pick * max(1, len(customers) // 50) % len(customers)]
            value = self._value("ERP")
            sync.erp_user.update("customers", customer["id"], {field: value})
            self.last[(customer["id"], field)] = value
            self.owed.add("to_crm")
            TALLY["erp edits"] += 1

        @rule(pick=st.integers(0, 50), field=st.sampled_from(sorted(FIELDS)))
        @timed
        def crm_user_edits(self, pick: int, field: str) -> None:
            accounts = sorted(sync.crm("accounts", "customertypecode eq 3"), key=lambda a: a["accountid"])
            account = accounts[pick * max(1, len(accounts) // 50) % len(accounts)]
            value = self._value("CRM")
            sync.crm_user.upsert("accounts", account["accountid"], {FIELDS[field]: value}, mode="update")
            self.last[(account["accountid"], field)] = value
            self.owed.add("from_crm")
            TALLY["crm edits"] += 1

        @rule()
        @timed
        def erp_user_creates(self) -> None:
            value = self._value("New ERP")
            number = f"9{self.serial:04d}"
            created = sync.erp_user.create("customers", {"number": number, "displayName": value, "city": "Ely"})
            self.last[(created["id"], "displayName")] = value
            self.owed |= {"to_crm", "to_crm.create"}
            TALLY["erp creates"] += 1

        @rule()
        @timed
        def crm_user_creates(self) -> None:
            value = self._value("New CRM")
            created = sync.crm_user.create("accounts", {"name": value, "address1_city": "York", "customertypecode": 3})
            self.last[(created.lower(), "displayName")] = value
            self.owed |= {"from_crm", "from_crm.create", "write_back"}
            TALLY["crm creates"] += 1

        @rule(full=st.booleans())
        @timed
        def clean_run(self, full: bool) -> None:
            self._run(full_sync=full)
            self.owed.clear()
            TALLY["full runs" if full else "incremental runs"] += 1

        @rule(data=st.data(), full=st.booleans())
        @timed
        def run_killed(self, data: st.DataObject, full: bool) -> None:
            self._kill(data, full)

        @rule(data=st.data())
        @timed
        def run_killed_incremental(self, data: st.DataObject) -> None:
            # A second kill rule makes kills as likely as edits: they are what this test is about.
            self._kill(data, False)

        def _kill(self, data: st.DataObject, full: bool) -> None:
            point = data.draw(st.sampled_from(reachable(self.owed, full=full)), label="point")
            # Large change sets pass a point once per $batch or page: any of them may be the one.
            once = point in ALWAYS  # a run passes its staging and pass boundaries once
            occurrence = 1 if once else data.draw(st.integers(1, max(1, RECORDS // 2000)), label="occurrence")
            try:
                sync.crash("CUSTOMER", point=point, occurrence=occurrence, full_sync=full)
            except AssertionError as exc:  # the run ended without passing the point: it was a clean run
                if os.environ.get("SYNC_PROPERTY_PROGRESS"):
                    print(f"kill at {point}@{occurrence} owing {sorted(self.owed)} not reached: {exc}", flush=True)
                self.owed.clear()
                TALLY["kills not reached"] += 1
                TALLY[f"not reached: {point}@{occurrence}"] += 1
                return
            # What the stages before the killed one owed is done; the killed stage and the later ones still owe.
            done = STAGES[: STAGES.index(stage_of(point))]
            self.owed = {o for o in self.owed if stage_of(o) not in done}
            TALLY["runs killed"] += 1
            TALLY[f"killed at {point}"] += 1

        @rule(
            before=st.sampled_from([{}, {"rate_429": 0.3, "retry_after_s": 0}, {"rate_5xx": 0.3}, {"rate_drop": 0.2}]),
            after=st.sampled_from([{}, {"rate_5xx_after": 0.3}, {"rate_drop_after": 0.3}]),
            seed=st.integers(0, 1000),
        )
        @timed
        def run_with_faults(self, before: dict[str, Any], after: dict[str, Any], seed: int) -> None:
            sync.sandbox.admin("faults", {**before, **after, "seed": seed})
            try:
                self._run(full_sync=False)
                self.owed.clear()
                TALLY["faulty runs finished"] += 1
            except SyncSystemicError:
                TALLY["faulty runs stopped"] += 1
            finally:
                sync.sandbox.admin("faults", {})

        def _run(self, *, full_sync: bool) -> None:
            # Conflicts are reported as failed records: the invariant decides whether that is right.
            with contextlib.suppress(SyncRecordsFailed):
                sync.run("CUSTOMER", run_id=f"run-{self.serial}", full_sync=full_sync)
            TALLY["runs finished"] += 1

        @timed
        def teardown(self) -> None:
            if not hasattr(self, "last"):
                return
            for fault, n in sync.sandbox.admin("stats")["faults"].items():
                TALLY[f"faults injected: {fault}"] += n
            for _ in range(2):
                self._run(full_sync=False)
            records = check_invariant(sync, self.last)
            TALLY["invariant checks"] += 1
            TALLY["records checked"] += records
            TALLY["most records in a sequence"] = max(TALLY["most records in a sequence"], records)
            if os.environ.get("SYNC_PROPERTY_PROGRESS"):
                print(f"sequence {TALLY['sequences']}: invariant holds; so far {dict(TALLY)}", flush=True)

    return SyncMachine


def check_invariant(sync: Any, last: dict[tuple[str, str], str]) -> int:
    """The convergence invariant after clean runs caught up (see the module docstring); the pairs checked."""
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
    return len(pairs)


def summary(seconds: float) -> str:
    """What the test tried and found, for ``make chaos``'s output."""
    tally = dict(sorted(TALLY.items()))
    runs = TALLY["runs finished"] + TALLY["runs killed"] + TALLY["faulty runs stopped"]
    lines = [
        f"sync property test: {TALLY['sequences']} sequences, {TALLY['steps']} steps, {runs} runs"
        f" ({TALLY['runs killed']} killed, {TALLY['kills not reached']} kills not reached),"
        f" {sum(n for k, n in TALLY.items() if k.startswith('faults injected'))} faults injected,"
        f" {TALLY['records checked']} records checked (at most {TALLY['most records in a sequence']} in a sequence),"
        f" {seconds:.0f} s",
        *(f"  {name}: {n}" for name, n in tally.items()),
        *(f"  seconds in {name}: {n:.1f}" for name, n in sorted(SECONDS.items())),
    ]
    return "\n".join(lines)


def short_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """The API connections of the runs (in this process and the crash worker's) wait at most 50 ms between
    retries (``extra.backoff_max``): the length of a wait changes nothing but the time taken, and hundreds of
    faulty runs would otherwise spend most of ``make chaos`` asleep."""
    for name, value in list(os.environ.items()):
        if name.startswith("AIRFLOW_CONN_") and value.startswith("{"):
            conn = json.loads(value)
            if isinstance(conn.get("extra"), dict) and "backoff_max" in conn["extra"]:
                conn["extra"]["backoff_max"] = 0.05
                monkeypatch.setenv(name, json.dumps(conn))


@pytest.mark.timeout(0)
def test_edits_runs_crashes_and_faults_converge(sync, monkeypatch) -> None:
    short_backoff(monkeypatch)
    TALLY.clear()
    SECONDS.clear()
    started = time.monotonic()
    found = "nothing"
    try:
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
    except BaseException as exc:
        found = f"{type(exc).__name__} (the falsifying sequence is printed above)"
        raise
    finally:
        print(f"\n{summary(time.monotonic() - started)}\n  found: {found}", flush=True)
