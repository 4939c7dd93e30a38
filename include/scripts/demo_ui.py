"""`make demo-ui`: Airflow (``airflow standalone``) with the operator console, on the demo's state.

Uses what ``make demo`` left in ``.demo/``: the embedded Postgres state store (or the server of
``AIRFLOW_CONN_DYNAMICS_STATE``), the sandbox's data and the Airflow home. Starts the sandbox and
``airflow standalone`` (api-server, scheduler, dag-processor, triggerer) with the console plugin, signs users in
through the simple auth manager (``admin`` may act, ``viewer`` only reads; passwords kept in
``.demo/airflow/console_passwords.json``), prints the console's URL and the credentials, and runs until Ctrl-C.
``--check`` stops once the console answers (a smoke test: anonymous refused, admin served).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]
# The demo's folder; DYNAMICS_DEMO_DIR points elsewhere (a smoke test that must not touch a user's demo).
DEMO = Path(os.environ.get("DYNAMICS_DEMO_DIR", REPO / ".demo"))
sys.path.insert(0, str(REPO / "include"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from demo import free_port, port_is_free, say  # noqa: E402

from sandbox import connections  # noqa: E402
from sandbox.runner import SandboxProcess  # noqa: E402

USERS = {"admin": "admin", "operator": "user", "viewer": "viewer"}


def passwords(path: Path) -> dict[str, str]:
    """The demo users' passwords: generated once, then kept so a browser's saved login keeps working."""
    known = json.loads(path.read_text()) if path.exists() else {}
    for user in USERS:
        known.setdefault(user, secrets.token_urlsafe(9))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(known, indent=2))
    path.chmod(0o600)
    return known


def wait_until_up(base_url: str, process: subprocess.Popen, log_file: Path, timeout_s: float = 180) -> None:
    """Poll the api-server's health endpoint until it answers.

    :raises SystemExit: when Airflow exits or does not answer within ``timeout_s`` seconds.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"airflow standalone exited ({process.returncode}); log {log_file}")
        try:
            if requests.get(f"{base_url}/api/v2/monitor/health", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(1)
    raise SystemExit(f"Airflow did not answer within {timeout_s:.0f} s; log {log_file}")


def check(base_url: str, users: dict[str, str]) -> None:
    """Smoke test: anonymous refused, the admin served every page.

    :raises SystemExit: when the console misbehaves.
    """
    console = f"{base_url}/dynamics"
    anonymous = requests.get(f"{console}/job-queue", timeout=30).status_code
    if anonymous not in (401, 403):
        raise SystemExit(f"anonymous request answered {anonymous}")
    token = requests.post(
        f"{base_url}/auth/token", json={"username": "admin", "password": users["admin"]}, timeout=30
    ).json()["access_token"]
    for page in ("job-queue", "documents", "log", "sync", "mailboxes"):
        status = requests.get(f"{console}/{page}", cookies={"_token": token}, timeout=30).status_code
        if status != 200:
            raise SystemExit(f"{page} answered {status}")
    say("console check passed: anonymous refused, every page served")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("AIRFLOW_UI_PORT", "8080")))
    parser.add_argument("--check", action="store_true", help="exit once the console answers")
    args = parser.parse_args()

    os.environ.setdefault("DYNAMICS_STATE_DIR", str(DEMO / "state"))
    # the embedded state store is opt-in (development only)
    os.environ["AIRFLOW__DYNAMICS_JOBQUEUE__EMBEDDED_STATE_STORE"] = "True"
    from dynamics_jobqueue.hooks.state import StateStoreHook
    from dynamics_jobqueue.state import embedded

    home = DEMO / "airflow"
    password_file = home / "console_passwords.json"
    users = passwords(password_file)
    port = args.port if port_is_free(args.port) else free_port()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:{role}" for u, role in USERS.items()),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(password_file),
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__WORKERS": "1",
        # standalone starts its components as `airflow ...` subprocesses: this virtualenv's comes first
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "PYTHONPATH": os.pathsep.join([str(REPO / "include"), os.environ.get("PYTHONPATH", "")]),
    }
    embedded_state = "AIRFLOW_CONN_DYNAMICS_STATE" not in os.environ
    if embedded_state:
        if not (DEMO / "state" / "pgdata").exists():
            say("no demo state yet: the pages start empty (run `make demo` first to fill them)")
        conn = StateStoreHook.embedded_connection()
        env["AIRFLOW_CONN_DYNAMICS_STATE"] = json.dumps(
            {"conn_type": "postgres", "host": conn.host, "port": conn.port, "login": conn.login, "schema": conn.schema}
        )
        os.environ["AIRFLOW_CONN_DYNAMICS_STATE"] = env["AIRFLOW_CONN_DYNAMICS_STATE"]
    StateStoreHook().migrate()

    sandbox_port = int(os.environ.get("SANDBOX_PORT", "8765"))
    sandbox = SandboxProcess(
        port=sandbox_port if port_is_free(sandbox_port) else free_port(), data_dir=DEMO / "sandbox"
    )
    sandbox.start()
    log_file = DEMO / "logs" / "airflow-standalone.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    process: subprocess.Popen | None = None
    try:
        env.update(connections.environment(sandbox.base_url, str(sandbox.ca_file)))
        with log_file.open("w") as log:
            process = subprocess.Popen(
                [str(Path(sys.executable).with_name("airflow")), "standalone"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        say(f"airflow standalone starting (log {log_file})")
        base_url = f"http://127.0.0.1:{port}"
        wait_until_up(base_url, process, log_file)
        print(
            f"\nOperator console: {base_url}/dynamics/job-queue"
            f"\n  (in the Airflow UI {base_url}/ under the Dynamics menu)"
            f"\nSign in at {base_url}/ as:"
            f"\n  admin    / {users['admin']}    (may act)"
            f"\n  operator / {users['operator']}    (may act)"
            f"\n  viewer   / {users['viewer']}    (read only)"
            f"\nJSON API: {base_url}/dynamics/docs (after signing in)\n",
            flush=True,
        )
        if args.check:
            check(base_url, users)
            return 0
        say("Ctrl-C stops Airflow and the sandbox")
        process.wait()
        return process.returncode or 0
    except KeyboardInterrupt:
        return 0
    finally:
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        sandbox.stop()
        if embedded_state:
            embedded.stop(DEMO / "state" / "pgdata")


if __name__ == "__main__":
    sys.exit(main())
