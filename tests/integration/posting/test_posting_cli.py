"""The job queue's command line: enqueue (id read from Business Central), list, remove; the Airflow pools.

The commands run in-process through ``main`` (real argument parsing, real database, real HTTP); the workers
test runs ``python -m dynamics_jobqueue.posting drain`` as separate processes.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest

from dynamics_jobqueue.posting.__main__ import main


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def test_enqueue_list_and_remove_from_the_command_line(posting, state_store, capsys) -> None:
    status, out, _ = _cli(
        capsys, "enqueue", "--type", "Sales Order", "--number", "S-ORD1001", "--user", "ALICE", "--print"
    )
    assert status == 0
    assert out.startswith("Sales Order S-ORD1001 has been scheduled for posting.")

    status, _, err = _cli(capsys, "enqueue", "--type", "Sales Order", "--number", "S-ORD1001", "--user", "BOB")
    assert status == 1
    assert "cannot be posted because it has already been scheduled for posting" in err

    _, out, _ = _cli(capsys, "list", "--user", "ALICE")
    assert "Sales Order S-ORD1001" in out and "Scheduled for Posting" in out

    _, out, _ = _cli(capsys, "remove", "--type", "Sales Order", "--number", "S-ORD1001")
    assert out.strip() == "Sales Order S-ORD1001 was removed from the job queue."
    assert "S-ORD1001" not in _cli(capsys, "list")[1]
    status, _, err = _cli(capsys, "enqueue", "--type", "Sales Invoice", "--number", "NOPE", "--user", "ALICE")
    assert (status, err.strip()) == (1, "Sales Invoice NOPE does not exist.")


@pytest.mark.slow
def test_create_pools_gives_each_category_one_slot(airflow_env) -> None:
    created = subprocess.run(
        [sys.executable, "-m", "dynamics_jobqueue.posting", "create-pools"],
        env=airflow_env.env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert created.returncode == 0, created.stderr[-2000:]
    with sqlite3.connect(airflow_env.home / "airflow.db") as metadata:
        pools = dict(metadata.execute("SELECT pool, slots FROM slot_pool WHERE pool LIKE '%POST'").fetchall())
    assert pools == {"SALESPOST": 1, "PURCHPOST": 1}
