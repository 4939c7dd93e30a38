"""The state store on a real Postgres: migrations, the embedded server, the hook's connection rules."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg
import pytest

from dynamics_jobqueue.hooks.state import StateStoreHook
from dynamics_jobqueue.state import embedded, migrations


def test_migrations_apply_in_order_and_only_once(state_store: StateStoreHook) -> None:
    with state_store.transaction() as cur:
        cur.execute("SELECT version FROM dynamics.schema_migrations ORDER BY version")
        versions = [row[0] for row in cur.fetchall()]
    assert versions == [m.version for m in migrations.discover()]
    assert versions[0] == 1
    assert state_store.migrate() == []


def test_concurrent_migrations_apply_each_version_once(postgres_server, state_database) -> None:
    # Two processes migrating one empty database at the same moment, as two Airflow tasks starting together.
    conninfo = postgres_server.conninfo(state_database)
    script = textwrap.dedent(
        f"""
        import psycopg
        from dynamics_jobqueue.state import migrations
        with psycopg.connect({conninfo!r}) as conn:
            print(migrations.apply(conn))
        """
    )
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [proc.communicate(timeout=120)[0] for proc in procs]
    assert all(proc.returncode == 0 for proc in procs)
    applied = [v for out in outputs for v in json.loads(out.strip().splitlines()[-1])]
    expected = [m.version for m in migrations.discover()]
    assert sorted(applied) == expected  # every version applied exactly once across both processes
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute("SELECT count(*) FROM dynamics.schema_migrations").fetchone()
    assert rows is not None and rows[0] == len(expected)


def test_a_failing_migration_is_rolled_back_and_names_itself(tmp_path: Path, postgres_server, state_database) -> None:
    (tmp_path / "0001_ok.sql").write_text("CREATE TABLE dynamics.ok_table (id int);")
    (tmp_path / "0002_broken.sql").write_text("CREATE TABLE dynamics.half (id int); SELECT no_such_function();")
    with psycopg.connect(postgres_server.conninfo(state_database)) as conn:
        with pytest.raises(psycopg.errors.UndefinedFunction):
            migrations.apply(conn, tmp_path)
        conn.rollback()
        tables = {
            row[0]
            for row in conn.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'dynamics'")
        }
    assert "ok_table" in tables
    assert "half" not in tables


def test_migration_file_names_are_checked(tmp_path: Path) -> None:
    (tmp_path / "1_bad name.sql").write_text("SELECT 1;")
    with pytest.raises(ValueError, match=r"NNNN_name\.sql"):
        migrations.discover(tmp_path)


def test_embedded_postgres_starts_attaches_and_stops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DYNAMICS_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("AIRFLOW_CONN_DYNAMICS_STATE", raising=False)
    monkeypatch.setenv("AIRFLOW__DYNAMICS_JOBQUEUE__EMBEDDED_STATE_STORE", "True")
    data_dir = tmp_path / "pgdata"
    try:
        hook = StateStoreHook()  # no connection configured: the embedded server is used and migrated
        with hook.transaction() as cur:
            cur.execute("INSERT INTO dynamics.settings (key, value) VALUES ('probe', '1')")
        assert (data_dir / "postmaster.pid").exists()
        # A second process attaches to the same running server and sees the row.
        script = (
            "from dynamics_jobqueue.hooks.state import StateStoreHook\n"
            "with StateStoreHook().transaction() as cur:\n"
            "    cur.execute(\"SELECT value FROM dynamics.settings WHERE key = 'probe'\")\n"
            "    print('VALUE=' + str(cur.fetchone()[0]))\n"
        )
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
        assert "VALUE=1" in out.stdout.splitlines()
    finally:
        embedded.stop(data_dir)
    assert not (data_dir / "postmaster.pid").exists()
    # Data persists across a restart.
    uri = embedded.ensure_running(data_dir)
    try:
        with psycopg.connect(uri) as conn:
            row = conn.execute("SELECT value FROM dynamics.settings WHERE key = 'probe'").fetchone()
        assert row is not None and row[0] == 1
    finally:
        embedded.stop(data_dir)


@pytest.mark.parametrize("opt_in", [None, "False"])
def test_without_connection_and_opt_in_the_hook_names_the_connection_and_starts_nothing(
    opt_in: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Production: a worker or api-server that cannot resolve ``dynamics_state`` fails, it never starts a private,
    empty Postgres of its own (the deployment's state would split across processes)."""
    from airflow.exceptions import AirflowNotFoundException

    monkeypatch.setenv("DYNAMICS_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("AIRFLOW_CONN_DYNAMICS_STATE", raising=False)
    if opt_in is None:
        monkeypatch.delenv("AIRFLOW__DYNAMICS_JOBQUEUE__EMBEDDED_STATE_STORE", raising=False)
    else:
        monkeypatch.setenv("AIRFLOW__DYNAMICS_JOBQUEUE__EMBEDDED_STATE_STORE", opt_in)
    with pytest.raises(AirflowNotFoundException) as raised:
        StateStoreHook().get_conn()
    message = str(raised.value)
    assert "'dynamics_state' is not defined" in message
    assert "AIRFLOW_CONN_DYNAMICS_STATE=postgresql://" in message
    assert "AIRFLOW__DYNAMICS_JOBQUEUE__EMBEDDED_STATE_STORE=True" in message
    assert list(tmp_path.iterdir()) == []  # no data folder, no server


def test_a_named_connection_that_does_not_exist_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.exceptions import AirflowNotFoundException

    monkeypatch.delenv("AIRFLOW_CONN_OTHER_STATE", raising=False)
    with pytest.raises(AirflowNotFoundException, match="'other_state' is not defined"):
        StateStoreHook("other_state").get_conn()


def test_a_shared_embedded_postgres_stops_only_when_its_last_user_ends(tmp_path: Path) -> None:
    """``make demo`` beside ``make demo-ui``: the demo ending must not stop the server the console still uses."""
    data_dir = tmp_path / "pgdata"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])  # the other user: alive
    users = tmp_path / "users"
    users.mkdir()
    (users / str(other.pid)).touch()
    try:
        with embedded.shared(data_dir) as uri, psycopg.connect(uri) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert (data_dir / "postmaster.pid").exists(), "stopped although another user is alive"
        other.kill()
        other.wait()
        with embedded.shared(data_dir):
            pass
        assert not (data_dir / "postmaster.pid").exists(), "the last user left the server running"
    finally:
        other.kill()
        embedded.stop(data_dir)
