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
