"""`make demo`: run the project's jobs on the embedded defaults and print what they did.

Starts what a fresh machine lacks — the embedded Postgres state store (unless ``AIRFLOW_CONN_DYNAMICS_STATE`` points
at a server), the API sandbox seeded with the CRONUS demo company, an Airflow home with SQLite metadata — then runs
the DAGs with ``airflow dags test`` exactly as the scheduler would run them, and prints a summary per job.
State persists in ``.demo/`` between runs, so a second run shows what an incremental run does;
``make demo-reset`` wipes it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / ".demo"
sys.path.insert(0, str(REPO / "include"))

from sandbox import connections  # noqa: E402
from sandbox.runner import SandboxProcess  # noqa: E402


def say(message: str) -> None:
    print(f">> {message}", flush=True)


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def airflow(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run an ``airflow`` command of this virtualenv; its output goes to ``.demo/logs``."""
    log_dir = DEMO / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_file = log_dir / f"airflow-{'-'.join(args[:3]).replace('/', '_')}.log"
    with open(log_file, "w") as out:
        result = subprocess.run(
            [str(Path(sys.executable).with_name("airflow")), *args], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    if check and result.returncode != 0:
        tail = log_file.read_text(errors="replace")[-4000:]
        raise SystemExit(f"airflow {' '.join(args)} failed (exit {result.returncode}); log {log_file}:\n{tail}")
    return result


def run_outcome(env: dict[str, str], dag_id: str) -> tuple[str, list[str]]:
    """The state of ``dag_id``'s latest run and its failed tasks, as the Airflow UI shows them."""

    def cli_json(*args: str) -> list[dict[str, str]]:
        result = subprocess.run(
            [str(Path(sys.executable).with_name("airflow")), *args, "--output", "json"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        return [row for line in result.stdout.splitlines() if line.startswith("[") for row in json.loads(line)]

    latest = max(cli_json("dags", "list-runs", dag_id), key=lambda run: run["run_after"])
    tasks = cli_json("tasks", "states-for-dag-run", dag_id, latest["run_id"])
    failed = [
        f"{t['task_id']}[{t['map_index']}]" if t.get("map_index") else t["task_id"]
        for t in tasks
        if t["state"] in ("failed", "upstream_failed")
    ]
    return latest["state"], failed


def reset() -> None:
    from dynamics_jobqueue.state import embedded

    embedded.stop(DEMO / "state" / "pgdata")
    shutil.rmtree(DEMO, ignore_errors=True)
    say(f"demo state wiped ({DEMO})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reset", action="store_true", help="wipe the demo's state and exit")
    args = parser.parse_args()
    if args.reset:
        reset()
        return 0

    os.environ.setdefault("DYNAMICS_STATE_DIR", str(DEMO / "state"))
    # the embedded state store is opt-in (development only)
    os.environ["AIRFLOW__DYNAMICS_JOBQUEUE__EMBEDDED_STATE_STORE"] = "True"
    from dynamics_jobqueue.hooks.state import StateStoreHook
    from dynamics_jobqueue.state import embedded

    started = time.monotonic()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(DEMO / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PYTHONPATH": os.pathsep.join([str(REPO / "include"), os.environ.get("PYTHONPATH", "")]),
    }
    with contextlib.ExitStack() as stack:
        if "AIRFLOW_CONN_DYNAMICS_STATE" not in os.environ:
            say(f"state store: embedded Postgres with data in {DEMO / 'state' / 'pgdata'}")
            # shared: a `make demo-ui` running beside this demo keeps its state store when the demo ends
            stack.enter_context(embedded.shared(DEMO / "state" / "pgdata"))
            env["AIRFLOW_CONN_DYNAMICS_STATE"] = state_connection_json(StateStoreHook.embedded_connection())
        else:
            say("state store: the server of AIRFLOW_CONN_DYNAMICS_STATE")
        StateStoreHook().migrate()
        failures = run_steps(env)
    say(f"demo finished in {time.monotonic() - started:.0f} s; state kept in {DEMO} (make demo-reset wipes it)")
    return 1 if failures else 0


def state_connection_json(conn: Any) -> str:
    """The embedded state store as an ``AIRFLOW_CONN_DYNAMICS_STATE`` value (JSON)."""
    fields = {"host": conn.host, "port": conn.port, "login": conn.login, "schema": conn.schema}
    return json.dumps({"conn_type": "postgres", **fields})


def run_steps(env: dict[str, str]) -> int:
    """Start the sandbox, prepare the Airflow home and run every step; return how many failed."""
    port = int(os.environ.get("SANDBOX_PORT", "8765"))
    if not port_is_free(port):
        port = free_port()
    sandbox = SandboxProcess(port=port, data_dir=DEMO / "sandbox")
    say(f"sandbox: Business Central + Dataverse emulator on https://127.0.0.1:{port} (data in {DEMO / 'sandbox'})")
    sandbox.start()
    try:
        env.update(connections.environment(sandbox.base_url, str(sandbox.ca_file)))
        os.environ.update({k: v for k, v in env.items() if k.startswith("AIRFLOW_CONN_")})
        say(f"Airflow home {DEMO / 'airflow'} (SQLite metadata): airflow db migrate")
        airflow(env, "db", "migrate")
        say("pools SALESPOST and PURCHPOST (one slot each: one posting at a time per job queue category)")
        subprocess.run([sys.executable, "-m", "dynamics_jobqueue.posting", "create-pools"], env=env, check=True)
        return sum(step(env) for step in STEPS)
    finally:
        sandbox.stop()


def crm_sync(env: dict[str, str]) -> int:
    """The main job: ERP<->CRM synchronization of the default table mappings (include/mappings)."""
    from dynamics_jobqueue.hooks.state import StateStoreHook
    from dynamics_jobqueue.sync.summary import run_summary

    state = StateStoreHook()
    # The first synchronization is BC's Full Synch. Review (couple by match, create the rest); later runs are
    # scheduled runs, which sync coupled records only.
    first = not state.get_first("SELECT EXISTS (SELECT 1 FROM dynamics.sync_job)")[0]
    kind = "Full Synch. Review" if first else "a scheduled run: coupled records only"
    say(f"crm_sync: airflow dags test crm_sync ({kind}; one task per table mapping, in dependency order)")
    conf = ["--conf", json.dumps({"full_synch_review": True})] if first else []
    result = airflow(env, "dags", "test", "crm_sync", *conf, check=False)
    summary = run_summary(state)
    print("\nIntegration synch. jobs of this run (one row per table mapping, in run order):")
    print(summary.to_string(index=False))
    print()
    failed = summary[summary["failed"] > 0]
    for row in failed.itertuples():
        say(f"FAILED mapping {row.mapping}: {row.failed} record(s) failed (reasons in the Integration Synch. Errors)")
    state, failed_tasks = run_outcome(env, "crm_sync")
    say(f"crm_sync DAG run: {state}" + (f"; failed tasks: {', '.join(failed_tasks)}" if failed_tasks else ""))
    if result.returncode != 0:
        say(f"crm_sync ended failed; task logs in {DEMO / 'airflow' / 'logs'}, command output in {DEMO / 'logs'}")
        return 1
    return 0


def mailbox_sync(env: dict[str, str]) -> int:
    """Mailbox synchronization: real Dovecot (IMAP, POP3) and SMTP servers plus the sandbox's Graph."""
    from demo_mailbox import MailboxDemo

    from dynamics_jobqueue.hooks.state import StateStoreHook

    state = StateStoreHook()
    with MailboxDemo(DEMO / "mail") as mail:
        say("mailbox_sync: Dovecot (IMAP, POP3) and an SMTP server on loopback, seeded with realistic mail")
        mail_env = mail.seed(state)
        say("mailbox_sync: airflow dags test mailbox_sync (due mailboxes, one task per mailbox)")
        result = airflow({**env, **mail_env}, "dags", "test", "mailbox_sync", check=False)
        print(mail.report(state))
    run_state, failed_tasks = run_outcome(env, "mailbox_sync")
    say(f"mailbox_sync DAG run: {run_state}" + (f"; failed tasks: {', '.join(failed_tasks)}" if failed_tasks else ""))
    if result.returncode != 0:
        say(f"mailbox_sync ended failed; task logs in {DEMO / 'airflow' / 'logs'}, output in {DEMO / 'logs'}")
        return 1
    return 0


from demo_posting import background_posting  # noqa: E402

STEPS: list[Callable[[dict[str, str]], int]] = [crm_sync, background_posting, mailbox_sync]

if __name__ == "__main__":
    sys.exit(main())
