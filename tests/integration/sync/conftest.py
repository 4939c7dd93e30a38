"""Fixtures of the sync tests: the CRONUS sandbox, a fresh state store, the runner, and human users' clients."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dynamics_jobqueue.paths import include_dir
from dynamics_jobqueue.sync import crash_points
from dynamics_jobqueue.sync.loader import MappingSet, load_mappings
from dynamics_jobqueue.sync.options import runner_class
from dynamics_jobqueue.sync.runner import MappingRunResult

DEFAULT_MAPPINGS = include_dir() / "mappings"
CRASH_WORKER = Path(__file__).with_name("crash_worker.py")


class SyncHarness:
    """Runs mappings against the sandbox and reads both sides and the state store, over real HTTP and SQL.

    ``crm_user`` / ``erp_user`` are hooks signed in as human users (Jim Olive in Dataverse, a BC user), for
    edits that the sync must pick up; the integration user's own edits are what it must ignore.
    """

    def __init__(
        self,
        sandbox: Any,
        state_store: Any,
        mappings_dir: Path,
        monkeypatch: pytest.MonkeyPatch,
        crash_server: CrashServer,
    ) -> None:
        from dynamics_jobqueue.hooks.business_central import BusinessCentralHook
        from dynamics_jobqueue.hooks.dataverse import DataverseHook
        from sandbox.connections import CRM_USER_CLIENT, ERP_USER_CLIENT

        self.sandbox = sandbox
        self.state = state_store
        self.mappings_dir = mappings_dir
        self.crash_server = crash_server
        for conn_id, client, name in (
            ("crm_user", CRM_USER_CLIENT, "dataverse_default"),
            ("erp_user", ERP_USER_CLIENT, "business_central_default"),
        ):
            conn = sandbox.connections(client=client)[name]
            monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
        self.bc = BusinessCentralHook()
        self.dv = DataverseHook()
        self.crm_user = DataverseHook("crm_user")
        self.erp_user = BusinessCentralHook("erp_user")

    # -- mappings and runs -------------------------------------------------------------------------------------
    @property
    def mappings(self) -> MappingSet:
        return load_mappings(self.mappings_dir)

    def edit_mapping(self, file: str, change: Callable[[dict[str, Any]], None]) -> None:
        """Change one mapping file of this test's copy of ``include/mappings``."""
        path = self.mappings_dir / file
        data = yaml.safe_load(path.read_text())
        change(data)
        path.write_text(yaml.safe_dump(data, sort_keys=False))

    def run(
        self, *names: str, run_id: str = "test", full_synch_review: bool = True, **kwargs: Any
    ) -> dict[str, MappingRunResult]:
        """Run the named mappings (all, in run order, when none are named) with fresh hooks.

        Runs are Full Synch. Review runs (records that match nothing are created) unless
        ``full_synch_review=False`` asks for a scheduled run, which syncs coupled records only."""
        from dynamics_jobqueue.hooks.business_central import BusinessCentralHook
        from dynamics_jobqueue.hooks.dataverse import DataverseHook

        mappings = self.mappings
        chosen = [mappings.get(n) for n in names] if names else list(mappings)
        results = {}
        for mapping in chosen:
            runner = runner_class(mapping)(
                mapping,
                mappings,
                state=self.state,
                erp_hook=BusinessCentralHook(),
                crm_hook=DataverseHook(),
                run_id=run_id,
                full_synch_review=full_synch_review,
                **kwargs,
            )
            results[mapping.name] = runner.run()
        return results

    def crash(self, *names: str, point: str, occurrence: int = 1, full_sync: bool = False) -> None:
        """Run the named mappings in a worker process that dies at crash point ``point`` (its ``occurrence``-th
        pass there), as ``kill -9`` would (:mod:`dynamics_jobqueue.sync.crash_points`).

        The worker is a child forked by the warm :class:`CrashServer`.

        :raises AssertionError: when the run ended without passing the point (or failed otherwise).
        """
        env = {**os.environ, crash_points.CRASH_AT_ENV: f"{point}@{occurrence}"}
        status, error = self.crash_server.run(names, env=env, full_sync=full_sync)
        # Postgres ends the dead worker's sessions (and frees its mapping lock) when it notices the closed socket.
        for _ in range(100):
            if self.sql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == [(0,)]:
                break
            time.sleep(0.02)
        assert status == crash_points.CRASHED, f"no crash at {point} (exit status {status}): {error}"

    @staticmethod
    def counts(results: dict[str, MappingRunResult]) -> dict[str, dict[str, int]]:
        """``{"CUSTOMER to CRM": {"inserted": 5, ...}}`` with zero counters left out."""
        return {
            f"{name} {p.flow.label}": {k: v for k, v in p.counts.items() if v}
            for name, result in results.items()
            for p in result.passes
        }

    @staticmethod
    def only(records: Iterable[dict[str, Any]], **match: Any) -> dict[str, Any]:
        """The one record whose fields have the given values."""
        found = [r for r in records if all(r.get(k) == v for k, v in match.items())]
        assert len(found) == 1, f"{len(found)} records match {match}"
        return found[0]

    # -- the two sides ----------------------------------------------------------------------------------------
    def crm(self, entity_set: str, filter: str | None = None) -> list[dict[str, Any]]:
        return [r for page in self.dv.iter_pages(entity_set, filter=filter) for r in page]

    def erp(self, entity_set: str, filter: str | None = None) -> list[dict[str, Any]]:
        return [r for page in self.bc.iter_pages(entity_set, filter=filter) for r in page]

    def account(self, number: str) -> dict[str, Any]:
        found = self.crm("accounts", f"accountnumber eq '{number}'")
        assert len(found) == 1, f"{len(found)} accounts with accountnumber {number}"
        return found[0]

    def customer(self, number: str) -> dict[str, Any]:
        found = self.erp("customers", f"number eq '{number}'")
        assert len(found) == 1, f"{len(found)} customers {number}"
        return found[0]

    def systemuser(self, email: str) -> dict[str, Any]:
        return self.crm("systemusers", f"internalemailaddress eq '{email}'")[0]

    # -- the state store --------------------------------------------------------------------------------------
    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with self.state.transaction() as cur:
            cur.execute(query, params)
            return cur.fetchall() if cur.description else []

    def coupled(self, mapping: str) -> int:
        return int(self.sql("SELECT count(*) FROM dynamics.sync_coupling WHERE mapping = %s", mapping)[0][0])

    def record_errors(self, mapping: str) -> list[dict[str, Any]]:
        rows = self.sql(
            "SELECT direction, source_id, source_key, destination_id, kind, message, error_count, skipped"
            " FROM dynamics.sync_record_error WHERE mapping = %s ORDER BY source_key",
            mapping,
        )
        names = ["direction", "source_id", "source_key", "destination_id", "kind", "message", "error_count", "skipped"]
        return [dict(zip(names, row, strict=True)) for row in rows]

    # -- the sandbox's request counters -------------------------------------------------------------------------
    def reset_stats(self) -> None:
        self.sandbox.admin("stats/reset", {})

    def stats(self) -> dict[str, int]:
        return dict(self.sandbox.admin("stats")["by_route"])


class CrashServer:
    """The warm crash worker (``crash_worker.py --serve``): one process that imported Airflow and the package
    once and forks a child per run, so a killed run costs the run, not a new interpreter (about 5 s)."""

    def __init__(self, log: Path) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(include_dir()), os.environ.get("PYTHONPATH", "")])}
        self.log = log
        with log.open("ab") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, str(CRASH_WORKER), "--serve"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=env,
            )

    def run(self, names: Iterable[str], *, env: dict[str, str], full_sync: bool) -> tuple[int, str]:
        """Run ``names`` in a forked child with environment ``env``; its exit status, and the error it raised or
        the crash points it passed when it did not die."""
        assert self.process.stdin is not None and self.process.stdout is not None
        request = {"names": list(names), "full_sync": full_sync, "env": env}
        self.process.stdin.write(json.dumps(request).encode() + b"\n")
        self.process.stdin.flush()
        error = ""
        while line := self.process.stdout.readline():
            answer = json.loads(line)
            error = answer.get("error", error)
            if "passed" in answer:
                error = f"the run passed {', '.join(answer['passed'])}"
            if "exit" in answer:
                return int(answer["exit"]), error
        raise RuntimeError(f"the crash server died: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="session")
def crash_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CrashServer]:
    """The warm crash worker of the session (its children's output in ``crash_server.log``)."""
    server = CrashServer(tmp_path_factory.mktemp("crash") / "crash_server.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mappings_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the default mappings that a test may edit (also what the operator loads)."""
    folder = tmp_path / "mappings"
    shutil.copytree(DEFAULT_MAPPINGS, folder)
    monkeypatch.setenv("DYNAMICS_MAPPINGS_DIR", str(folder))
    return folder


@pytest.fixture
def sync(sandbox, state_store, mappings_dir, monkeypatch, crash_server) -> SyncHarness:
    """The sandbox reset to CRONUS, an empty migrated state store, and the harness over both."""
    return SyncHarness(sandbox, state_store, mappings_dir, monkeypatch, crash_server)


@pytest.fixture
def receiver(sync: SyncHarness) -> Iterator[Any]:
    """The webhook receiver app (Business Central and Dataverse routes) on a free loopback port, over the sync's
    state store; it records asset events in memory (``tests/webhook_receiver.py``)."""
    from webhook_receiver import Receiver

    receiver = Receiver(sync.state)
    receiver.start()
    yield receiver
    receiver.stop()


@pytest.fixture
def wide_overlap(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every record a run reads lies inside its watermark overlap: the ERP watermark is capped an hour before the
    pass's start instead of 999 ms, so the next run reads again everything changed since (the seed included),
    on purpose and whatever the machine's speed."""
    from datetime import timedelta

    from dynamics_jobqueue.sync import runner

    monkeypatch.setattr(runner, "ERP_OVERLAP", timedelta(hours=1))
