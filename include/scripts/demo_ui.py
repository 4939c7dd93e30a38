"""`make demo-ui`: Airflow (``airflow standalone``) with the operator console, on the demo's state.

Uses what ``make demo`` left in ``.demo/``: the embedded Postgres state store (or the server of
``AIRFLOW_CONN_DYNAMICS_STATE``), the sandbox's data and the Airflow home. Starts everything the demo has — the
sandbox, Dovecot and SMTP with the demo's mailboxes and connections, the state store (shared with a ``make demo``
running beside it: whichever ends last stops it) — and ``airflow standalone`` (api-server, scheduler,
dag-processor, triggerer) on ``AIRFLOW_UI_PORT`` (default 8080; a busy port is refused, 0 picks a free one), with
the tasks' execution API URL on the same port. Prints every URL. The console plugin signs users in
through the simple auth manager (``admin`` may act, ``viewer`` only reads; passwords kept in
``.demo/airflow/console_passwords.json``), prints the console's URL and the credentials, and runs until Ctrl-C.
``--check`` stops once the console answers (a smoke test: anonymous refused, admin served).
"""

from __future__ import annotations

import argparse
import contextlib
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

from demo import free_port, port_is_free, say, state_connection_json  # noqa: E402

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


def wait_until_up(base_url: str, process: subprocess.Popen, log_file: Path, timeout_s: float = 300) -> None:
    """Poll the api-server's health endpoint until it answers 200.

    A slow answer or a refused connection only means "not yet" (the api-server starts its workers, the
    scheduler migrates): every ``requests`` error is retried until the deadline.

    :raises SystemExit: when Airflow exits or does not answer within ``timeout_s`` seconds (naming the log).
    """
    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"airflow standalone exited ({process.returncode}); log {log_file}")
        try:
            response = requests.get(f"{base_url}/api/v2/monitor/health", timeout=10)
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}"
        except requests.RequestException as exc:
            last = type(exc).__name__
        time.sleep(1)
    raise SystemExit(f"Airflow did not answer within {timeout_s:.0f} s (last: {last}); log {log_file}")


def ui_port(requested: int) -> int:
    """The api-server's port: ``requested`` when free, any free port for 0.

    :raises SystemExit: when ``requested`` is busy (never a silent move: the printed URLs and the tasks'
        execution API URL must name the port Airflow really listens on).
    """
    if requested == 0:
        return free_port()
    if not port_is_free(requested):
        raise SystemExit(
            f"port {requested} is busy (another Airflow?): choose a free one with AIRFLOW_UI_PORT=<port>, "
            "or AIRFLOW_UI_PORT=0 for any free port"
        )
    return requested


def check(base_url: str, users: dict[str, str]) -> None:
    """Smoke test: anonymous refused, the admin served the console's API lists and its React app's bundle.

    :raises SystemExit: when the console misbehaves.
    """
    console = f"{base_url}/dynamics"
    anonymous = requests.get(f"{console}/api/job-queue-entries", timeout=30).status_code
    if anonymous not in (401, 403):
        raise SystemExit(f"anonymous request answered {anonymous}")
    token = requests.post(
        f"{base_url}/auth/token", json={"username": "admin", "password": users["admin"]}, timeout=30
    ).json()["access_token"]
    pages = ("job-queue-entries", "documents-to-handle", "job-queue-log-entries", "sync/couplings", "mailboxes")
    for page in (*(f"api/{p}" for p in pages), "ui/console.js"):
        status = requests.get(f"{console}/{page}", cookies={"_token": token}, timeout=30).status_code
        if status != 200:
            raise SystemExit(f"{page} answered {status}")
    say("console check passed: anonymous refused, every list and the React app served")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("AIRFLOW_UI_PORT", "8080")))
    parser.add_argument("--check", action="store_true", help="exit once the console answers")
    args = parser.parse_args()
    port = ui_port(args.port)  # before anything starts

    os.environ.setdefault("DYNAMICS_STATE_DIR", str(DEMO / "state"))
    # the embedded state store is opt-in (development only)
    os.environ["AIRFLOW__DYNAMICS_JOBQUEUE__EMBEDDED_STATE_STORE"] = "True"
    from dynamics_jobqueue.hooks.state import StateStoreHook
    from dynamics_jobqueue.state import embedded

    home = DEMO / "airflow"
    password_file = home / "console_passwords.json"
    users = passwords(password_file)
    base_url = f"http://127.0.0.1:{port}"
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
        "AIRFLOW__API__BASE_URL": base_url,
        # the tasks' supervisors report to the api-server: the same port, whatever it is
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
        "AIRFLOW__API__WORKERS": "1",
        # standalone starts its components as `airflow ...` subprocesses: this virtualenv's comes first
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "PYTHONPATH": os.pathsep.join([str(REPO / "include"), os.environ.get("PYTHONPATH", "")]),
    }
    with contextlib.ExitStack() as stack:
        if "AIRFLOW_CONN_DYNAMICS_STATE" not in os.environ:
            if not (DEMO / "state" / "pgdata").exists():
                say("no demo state yet: the pages start empty (run `make demo` first to fill them)")
            # shared with a `make demo` run beside it: whichever ends last stops the server
            stack.enter_context(embedded.shared(DEMO / "state" / "pgdata"))
            env["AIRFLOW_CONN_DYNAMICS_STATE"] = state_connection_json(StateStoreHook.embedded_connection())
            os.environ["AIRFLOW_CONN_DYNAMICS_STATE"] = env["AIRFLOW_CONN_DYNAMICS_STATE"]
        StateStoreHook().migrate()
        return serve(env, base_url, users, check_only=args.check)


def serve(env: dict[str, str], base_url: str, users: dict[str, str], *, check_only: bool) -> int:
    """Start the sandbox, the mail servers and ``airflow standalone``; print every URL; run until Ctrl-C."""
    from demo_mailbox import MailboxDemo

    from dynamics_jobqueue.hooks.state import StateStoreHook

    sandbox_port = int(os.environ.get("SANDBOX_PORT", "8765"))
    sandbox = SandboxProcess(
        port=sandbox_port if port_is_free(sandbox_port) else free_port(), data_dir=DEMO / "sandbox"
    )
    log_file = DEMO / "logs" / "airflow-standalone.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    # Ctrl-C (even when started in the background, where SIGINT is ignored) and a plain kill both stop everything.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with contextlib.ExitStack() as stack:
        sandbox.start()
        stack.callback(sandbox.stop)
        # Mail servers of their own (a `make demo` beside this one runs its own under .demo/mail).
        mail = stack.enter_context(MailboxDemo(DEMO / "mail-ui"))
        env.update(connections.environment(sandbox.base_url, str(sandbox.ca_file)))
        os.environ.update({k: v for k, v in env.items() if k.startswith("AIRFLOW_CONN_")})
        env.update(mail.seed(StateStoreHook()))
        with log_file.open("w") as log:
            process = subprocess.Popen(
                [str(Path(sys.executable).with_name("airflow")), "standalone"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        stack.callback(stop_standalone, process)
        say(f"airflow standalone starting (log {log_file})")
        wait_until_up(base_url, process, log_file)
        server = mail.server
        print(
            f"\nAirflow UI:       {base_url}/  (trigger crm_sync, the posting DAGs and mailbox_sync here)"
            f"\nOperator console: {base_url}/plugin/dynamics-job-queue  (in the Airflow UI under the Dynamics menu)"
            f"\nSandbox (Business Central + Dataverse): {sandbox.base_url}  (admin: /_sandbox/stats)"
            f"\nMail servers: IMAP {server.host}:{server.imap_port}, POP3 {server.host}:{server.pop3_port},"
            f" SMTP {server.host}:{server.smtp_port}"
            f"\nState store: {env['AIRFLOW_CONN_DYNAMICS_STATE']}"
            f"\nSign in at {base_url}/ as:"
            f"\n  admin    / {users['admin']}    (may act)"
            f"\n  operator / {users['operator']}    (may act)"
            f"\n  viewer   / {users['viewer']}    (read only)"
            f"\nJSON API: {base_url}/dynamics/docs (after signing in)\n",
            flush=True,
        )
        if check_only:
            check(base_url, users)
            return 0
        say("Ctrl-C stops Airflow, the mail servers and the sandbox")
        try:
            process.wait()
        except KeyboardInterrupt:
            return 0
        return process.returncode or 0


def stop_standalone(process: subprocess.Popen) -> None:
    """Stop ``airflow standalone`` and every component it forked (they share its process group): SIGTERM, up to
    60 s to finish, then SIGKILL for whatever is left (a scheduler busy at SIGTERM would otherwise linger)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=60)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main())
