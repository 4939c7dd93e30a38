"""Every DAG file imports without errors, with no network or database work at parse time."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch):
    """Parsing must not open sockets: the DAG processor parses every file every few seconds."""

    def refuse(*args, **kwargs):
        raise AssertionError("a DAG file opened a network connection at parse time")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


def test_dagbag_has_no_import_errors(no_network, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("DYNAMICS_STATE_DIR", str(tmp_path))  # an accidental embedded start would land here
    monkeypatch.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    assert bag.dag_ids, "no DAGs found"
    assert not (tmp_path / "pgdata").exists(), "a DAG file started the state store at parse time"


def test_dagbag_has_no_warnings(no_network, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No warning while parsing (the UI lists them per DAG file) and no task in a pool that the deployment does not
    create: ``default_pool`` plus the job queue categories' pools of include/docker/airflow_init.py."""
    import warnings

    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("DYNAMICS_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    with warnings.catch_warnings():
        # pytest's configuration hides DeprecationWarning; a parse must not raise any, so show every one.
        warnings.simplefilter("always")
        bag = DagBag(dag_folder=str(DAGS), known_pools={"default_pool", "SALESPOST", "PURCHPOST"})
    assert bag.import_errors == {}
    assert bag.captured_warnings == {}
    assert {w.message for w in bag.dag_warnings} == set()


def test_bench_parse_measures_each_dag_file(tmp_path: Path) -> None:
    """include/scripts/bench_parse.py on a trivial DAG file: a figure per file, well under the 0.3 s target."""
    import json
    import subprocess
    import sys

    dag_file = tmp_path / "trivial.py"
    dag_file.write_text(
        "from airflow.sdk import DAG\nfrom airflow.providers.standard.operators.empty import EmptyOperator\n"
        "with DAG('trivial', schedule=None):\n    EmptyOperator(task_id='noop')\n"
    )
    script = DAGS.parent / "include" / "scripts" / "bench_parse.py"
    result = subprocess.run(
        [sys.executable, str(script), "--runs", "1", "--json", str(dag_file)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    [figure] = json.loads(result.stdout)["files"]
    assert figure["file"] == "trivial.py" and figure["dags"] == 1 and figure["tasks"] == 1
    assert 0 < figure["median_s"] < 0.3
