"""Change-to-sync latency and idle cost of event-driven crm_sync, against the 30-minute polling baseline.

Starts a sandbox (Business Central webhooks with the documented 30-second delay unless ``--bc-delay``; Dataverse
webhooks from its async service unless ``--no-dataverse-webhooks``), an embedded Postgres state store and
``airflow standalone`` (api-server, scheduler, dag-processor, triggerer; LocalExecutor) in a temporary folder.
After the first synchronization (Full Synch. Review) and the ``webhook_subscriptions`` DAG, it

1. measures the **idle** cost per hour, from four measured parts: every API request the sandbox serves during
   ``--idle`` seconds (the Dataverse watchers' delta reads, at the bench's ``--poll`` interval and counted per hour
   at the deployment's default interval); the requests of one steady-state ``webhook_subscriptions`` run (times
   its default schedule's runs per hour); the requests of one idle **cron tick** (two an hour), made with
   ``dags_test_scheduled.py`` as the scheduler makes it, after a first tick has put every idle mapping On Hold
   with Inactivity Timeout; and for each mapping the tick skipped, one run reading it per Inactivity Timeout Period
   (720 or 1440 minutes). The bench's crm_sync cron is set to once a year so that no tick of its own falls inside
   the idle window. Requests are attributed to mappings by the table they read (shared ones spread evenly). The
   polling baseline's idle cost is two manual runs an hour, each reading every mapping;
2. changes ``--changes`` coupled customers at random times within ``--window`` seconds, alternating Business
   Central (``phoneNumber``, as a Business Central user) and Dataverse (``telephone1``, as a CRM user; each side
   its own records, so no update conflicts), and waits for each value on the other side: the latency;
3. the **polling baseline** of the same changes: the wait for the next ``*/30`` cron tick plus the duration of
   the crm_sync run measured in step 1 (each change's own time), in minutes; ``polling_uniform_p95_min`` is the
   same for changes spread evenly over the half hour (0.95 x 30 min + the run).

Prints ``change_to_sync_p95_s`` (target <= 60), ``idle_requests_per_hour`` per mapping, and the baseline's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "include"))

from sandbox import connections  # noqa: E402
from sandbox.runner import SandboxProcess  # noqa: E402

RECEIVER = "/dynamics-webhooks/business-central"
DATAVERSE_RECEIVER = "/dynamics-webhooks/dataverse"


def dataverse_webhook_settings(base_url: str) -> dict[str, str]:
    """The Airflow settings that register Dataverse webhooks in the bench stack (``--dataverse-webhooks``): the
    webhook_subscriptions DAG then registers one webhook with a step per table and message, and the CRM change
    watchers read every ``crm_change_safety_poll_interval_s`` (the bench sets it to ``--poll``)."""
    return {"AIRFLOW__DYNAMICS_JOBQUEUE__DATAVERSE_WEBHOOK_URL": f"{base_url}{DATAVERSE_RECEIVER}"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def say(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


class Stack:
    """Sandbox, state store and ``airflow standalone`` in ``folder``; the Airflow REST API without login."""

    def __init__(self, folder: Path, bc_delay: float, poll_s: int, dataverse_webhooks: bool = False) -> None:
        from dynamics_jobqueue.state import embedded

        self.folder = folder
        sandbox_env = {"SANDBOX_WEBHOOK_DELAY_S": str(bc_delay)}
        if dataverse_webhooks:
            # The api-server listens on a free loopback port; real Dataverse webhooks allow only 80/443.
            sandbox_env["SANDBOX_DV_WEBHOOK_ALLOW_LOOPBACK_PORT"] = "1"
        self.sandbox = SandboxProcess(port=None, data_dir=folder / "sandbox", env=sandbox_env)
        self.sandbox.start()
        self.pgdata = folder / "pgdata"
        uri = embedded.ensure_running(self.pgdata)
        port = free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        self.env = {
            **os.environ,
            **connections.environment(self.sandbox.base_url, str(self.sandbox.ca_file)),
            "AIRFLOW_CONN_DYNAMICS_STATE": json.dumps({"conn_type": "postgres", **embedded.connection_kwargs(uri)}),
            "AIRFLOW_HOME": str(folder / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager."
            "SimpleAuthManager",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",  # a benchmark on loopback: no login
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": self.base_url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__DYNAMICS_JOBQUEUE__WEBHOOK_NOTIFICATION_URL": f"{self.base_url}{RECEIVER}",
            # The CRM watchers' interval: the poll without Dataverse webhooks, the safety poll with them.
            "AIRFLOW__DYNAMICS_JOBQUEUE__CRM_CHANGE_POLL_INTERVAL_S": str(poll_s),
            "AIRFLOW__DYNAMICS_JOBQUEUE__CRM_CHANGE_SAFETY_POLL_INTERVAL_S": str(poll_s),
            # Cron ticks happen only when the bench makes them (Stack.scheduled_tick), so none falls inside the
            # idle window; the asset part of crm_sync's schedule is unchanged.
            "AIRFLOW__DYNAMICS_JOBQUEUE__CRM_SYNC_SCHEDULE": "0 0 1 1 *",
            "DYNAMICS_STATE_DIR": str(folder),
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
            "PYTHONPATH": os.pathsep.join([str(REPO / "include"), os.environ.get("PYTHONPATH", "")]),
        }
        for conn_id, client, name in (
            ("crm_user", connections.CRM_USER_CLIENT, "dataverse_default"),
            ("erp_user", connections.ERP_USER_CLIENT, "business_central_default"),
        ):
            conn = connections.airflow_connections(self.sandbox.base_url, str(self.sandbox.ca_file), client=client)
            self.env[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(conn[name])
        if dataverse_webhooks:
            self.env.update(dataverse_webhook_settings(self.base_url))
        os.environ.update({k: v for k, v in self.env.items() if k.startswith("AIRFLOW_CONN_")})
        self.process: subprocess.Popen[bytes] | None = None
        self.api = requests.Session()
        self.api.trust_env = False

    def airflow(self, *args: str, timeout: float = 900) -> None:
        done = subprocess.run(
            [str(Path(sys.executable).with_name("airflow")), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"airflow {' '.join(args)} failed:\n{done.stderr[-3000:]}")

    def start_airflow(self) -> None:
        log = (self.folder / "standalone.log").open("wb")
        self.process = subprocess.Popen(
            [str(Path(sys.executable).with_name("airflow")), "standalone"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.RequestException):
                if self.api.get(f"{self.base_url}/api/v2/monitor/health", timeout=5).ok:
                    self.wait_dag("crm_sync")
                    return
            if self.process.poll() is not None:
                raise RuntimeError(f"airflow standalone exited; see {self.folder / 'standalone.log'}")
            time.sleep(2)
        raise RuntimeError("airflow standalone did not come up in 10 minutes")

    def rest(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = self.api.request(method, f"{self.base_url}/api/v2/{path}", timeout=30, **kwargs)
        answer.raise_for_status()
        return answer.json() if answer.content else None

    def wait_dag(self, dag_id: str) -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.HTTPError):
                self.rest("GET", f"dags/{dag_id}")
                return
            time.sleep(2)
        raise RuntimeError(f"{dag_id} was not parsed in 5 minutes")

    def unpause(self, dag_id: str) -> None:
        self.wait_dag(dag_id)
        self.rest("PATCH", f"dags/{dag_id}", json={"is_paused": False})

    def pause(self, dag_id: str) -> None:
        self.rest("PATCH", f"dags/{dag_id}", json={"is_paused": True})

    def scheduled_tick(self) -> None:
        """One crm_sync run as its cron tick creates it (``run_type`` scheduled), in this stack's Airflow."""
        done = subprocess.run(
            [sys.executable, str(REPO / "include" / "scripts" / "dags_test_scheduled.py"), "crm_sync"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"scheduled crm_sync run failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")

    def trigger(self, dag_id: str) -> str:
        run = self.rest("POST", f"dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": {}})
        return str(run["dag_run_id"])

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        return list(self.rest("GET", f"dags/{dag_id}/dagRuns", params={"limit": 100})["dag_runs"])

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 900) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.rest("GET", f"dags/{dag_id}/dagRuns/{run_id}")
            if run["state"] in ("success", "failed"):
                return dict(run)
            time.sleep(2)
        raise RuntimeError(f"{dag_id} {run_id} did not finish")

    def wait_quiet(self, dag_id: str, timeout: float = 900) -> None:
        """Until no run of ``dag_id`` is queued or running and no new one started for 20 s."""
        deadline = time.monotonic() + timeout
        quiet_since = None
        while time.monotonic() < deadline:
            busy = [r for r in self.runs(dag_id) if r["state"] in ("queued", "running")]
            if busy:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > 20:
                return
            time.sleep(2)
        raise RuntimeError(f"{dag_id} kept running")

    def admin(self, path: str, payload: dict[str, Any] | None = None) -> Any:
        with self.sandbox.session() as session:
            url = f"{self.sandbox.base_url}/_sandbox/{path}"
            answer = session.post(url, json=payload) if payload is not None else session.get(url)
            answer.raise_for_status()
            return answer.json()

    def counted(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.admin("stats")["by_route"].items()}

    def close(self) -> None:
        from dynamics_jobqueue.state import embedded

        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=60)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.sandbox.stop()
        embedded.stop(self.pgdata)


def runs_per_hour(cron: str) -> float:
    """How many times a day ``cron`` fires, divided by 24 (``none``: 0)."""
    from croniter import croniter

    if cron.strip().lower() in ("", "none"):
        return 0.0
    start = datetime(2026, 1, 1, tzinfo=UTC)
    fires = croniter(cron, start)
    count = 0
    while fires.get_next(datetime) <= start + timedelta(days=1):
        count += 1
    return count / 24


def per_mapping(counts: dict[str, int], mappings: Any) -> dict[str, float]:
    """Requests by mapping: a request on a table goes to the mappings reading it, the rest spread evenly."""
    names = [m.name for m in mappings]
    readers: dict[str, list[str]] = {}
    for m in mappings:
        readers.setdefault(f"bc/{m.erp.entity_set}", []).append(m.name)
        readers.setdefault(f"dataverse/{m.crm.entity_set}", []).append(m.name)
    share = dict.fromkeys(names, 0.0)
    for label, count in counts.items():
        owners = readers.get(label.split(" ", 1)[-1]) or names
        for name in owners:
            share[name] += count / len(owners)
    return share


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=12, help="records changed (half on each side)")
    parser.add_argument("--window", type=float, default=240, help="seconds over which the changes are spread")
    parser.add_argument(
        "--idle",
        type=float,
        default=None,
        help="seconds of idle measurement (default: two --poll intervals, at least 120 s)",
    )
    parser.add_argument("--bc-delay", type=float, default=30, help="Business Central's notification delay (s)")
    parser.add_argument(
        "--poll",
        type=int,
        default=None,
        help="the CRM watchers' interval in the bench (crm_change_poll_interval_s, or crm_change_safety_poll_interval_s"
        " with Dataverse webhooks; default 15 s, 300 s with them); the idle figure is scaled to the deployment default",
    )
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument(
        "--dataverse-webhooks",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="register Dataverse webhooks (the CRM watchers then poll every crm_change_safety_poll_interval_s);"
        " --no-dataverse-webhooks: the watchers poll every --poll seconds",
    )
    args = parser.parse_args()
    from dynamics_jobqueue import settings

    interval_setting = "crm_change_safety_poll_interval_s" if args.dataverse_webhooks else "crm_change_poll_interval_s"
    args.default_poll = int(settings.get(interval_setting))  # the deployment's default (this process sets none)
    if args.poll is None:
        args.poll = 300 if args.dataverse_webhooks else 15
    if args.idle is None:
        args.idle = float(max(120, 2 * args.poll))
    random.seed(args.seed)
    folder = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    stack = Stack(folder, args.bc_delay, args.poll, args.dataverse_webhooks)
    try:
        return run(stack, args)
    finally:
        stack.close()


def run(stack: Stack, args: argparse.Namespace) -> int:
    from dynamics_jobqueue import settings
    from dynamics_jobqueue.hooks.business_central import BusinessCentralHook
    from dynamics_jobqueue.hooks.dataverse import DataverseHook
    from dynamics_jobqueue.hooks.state import StateStoreHook
    from dynamics_jobqueue.sync import job_queue
    from dynamics_jobqueue.sync.loader import load_mappings

    mappings = load_mappings()
    say("first synchronization (Full Synch. Review, airflow dags test)")
    stack.airflow("db", "migrate")
    stack.airflow("dags", "test", "crm_sync", "-c", json.dumps({"full_synch_review": True}))
    say("starting airflow standalone")
    stack.start_airflow()
    stack.unpause("webhook_subscriptions")
    started = time.monotonic()
    stack.wait_run("webhook_subscriptions", stack.trigger("webhook_subscriptions"))  # creates and registers
    stack.admin("stats/reset", {})
    stack.wait_run("webhook_subscriptions", stack.trigger("webhook_subscriptions"))  # a steady-state run
    subscription_counts = stack.counted()
    subscription_requests = sum(subscription_counts.values())
    stack.pause("webhook_subscriptions")  # its cron must not fire inside the idle window: counted six an hour below
    subscribed = [
        s for route in ("api/v2.0", "api/cronus/integration/v1.0") for s in BusinessCentralHook().subscriptions(route)
    ]
    say(f"webhook_subscriptions: {len(subscribed)} BC subscriptions, {subscription_requests} requests per run")
    stack.unpause("crm_sync")  # the watchers start in the triggerer: each reads its table once, then its delta link
    time.sleep(max(0.0, 45 - (time.monotonic() - started)))  # each watcher's first read, then its interval
    stack.wait_quiet("crm_sync")

    # Cron ticks, as the scheduler creates them (run_type scheduled). The first puts every idle mapping On Hold
    # with Inactivity Timeout; the second is what each later tick of an idle tenant costs.
    stack.scheduled_tick()
    before = job_queue.entries(StateStoreHook())
    stack.admin("stats/reset", {})
    tick_started = time.monotonic()
    stack.scheduled_tick()
    tick_s = time.monotonic() - tick_started
    tick_counts = stack.counted()
    after = job_queue.entries(StateStoreHook())
    skipped = sorted(n for n, e in after.items() if n in before and e.last_run_id == before[n].last_run_id)
    say(f"an idle cron tick: {sum(tick_counts.values())} requests, {tick_s:.0f} s; On Hold, skipped: {skipped}")

    say(f"idle: {args.idle:.0f} s")
    stack.admin("stats/reset", {})
    time.sleep(args.idle)
    idle_counts = stack.counted()
    stack.admin("stats/reset", {})
    idle_started = time.monotonic()
    run_id = stack.trigger("crm_sync")  # a manual run reads every mapping: what each 30-minute poll costs
    finished = stack.wait_run("crm_sync", run_id)
    run_s = time.monotonic() - idle_started
    run_counts = stack.counted()
    say(f"one idle crm_sync run reading every mapping: {sum(run_counts.values())} requests, {run_s:.0f} s")
    say(f"  ({finished['state']})")
    stack.wait_quiet("crm_sync")

    per_hour = 3600 / args.idle
    watchers = per_mapping(idle_counts, mappings)
    runs_share = per_mapping(run_counts, mappings)
    tick_share = per_mapping(tick_counts, mappings)
    subs_share = subscription_requests * runs_per_hour(settings.get("webhook_subscriptions_schedule")) / len(mappings)
    # A mapping On Hold runs again when its Inactivity Timeout Period has passed (720 or 1440 minutes): one run
    # reading it, spread over the period. A mapping the tick did not skip already pays for every tick.
    held = {m.name: m.inactivity_timeout_min for m in mappings if m.name in skipped and m.inactivity_timeout_min}
    wake = {n: runs_share[n] * 60 / held[n] if n in held else 0.0 for n in watchers}
    parts = {
        # measured at the bench's --poll interval, scaled to the deployment's default interval
        "watchers": {n: watchers[n] * per_hour * args.poll / args.default_poll for n in watchers},
        "subscriptions": dict.fromkeys(watchers, subs_share),
        "ticks": {n: 2 * tick_share[n] for n in watchers},
        "wake-ups": wake,
    }
    event_idle = {n: sum(part[n] for part in parts.values()) for n in watchers}
    polling_idle = {n: 2 * runs_share[n] for n in watchers}

    say(f"latency: {args.changes} changes over {args.window:.0f} s")
    bc, dv = BusinessCentralHook(), DataverseHook()
    erp_user, crm_user = BusinessCentralHook("erp_user"), DataverseHook("crm_user")
    customers = [r for page in bc.iter_pages("customers", select=["id", "number"]) for r in page]
    accounts = {
        r["accountnumber"]: r["accountid"]
        for page in dv.iter_pages("accounts", select=["accountid", "accountnumber"])
        for r in page
        if r.get("accountnumber")
    }
    pairs = [(c["id"], accounts[c["number"]]) for c in customers if c["number"] in accounts]
    erp_pairs, crm_pairs = pairs[: len(pairs) // 2], pairs[len(pairs) // 2 :]
    offsets = sorted(random.uniform(0, args.window) for _ in range(args.changes))
    latencies: list[tuple[str, float, datetime]] = []
    lock = threading.Lock()

    def change(index: int, offset: float) -> None:
        time.sleep(offset)
        value = f"0171 555 {index:04d}"
        at = datetime.now(UTC)
        begin = time.monotonic()
        if index % 2 == 0:
            erp_id, crm_id = erp_pairs[(index // 2) % len(erp_pairs)]
            erp_user.update("customers", erp_id, {"phoneNumber": value})
            seen = lambda: dv.get("accounts", crm_id, select=["telephone1"]).get("telephone1") == value  # noqa: E731
            side = "bc->crm"
        else:
            erp_id, crm_id = crm_pairs[(index // 2) % len(crm_pairs)]
            crm_user.upsert("accounts", crm_id, {"telephone1": value}, mode="update")
            seen = lambda: bc.get("customers", erp_id).get("phoneNumber") == value  # noqa: E731
            side = "crm->bc"
        while time.monotonic() - begin < 900:
            if seen():
                with lock:
                    latencies.append((side, time.monotonic() - begin, at))
                return
            time.sleep(1)
        with lock:
            latencies.append((side, float("inf"), at))

    threads = [threading.Thread(target=change, args=(i, o)) for i, o in enumerate(offsets)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    values = [lat for _, lat, _ in latencies]
    by_side = {s: [lat for side, lat, _ in latencies if side == s] for s in ("bc->crm", "crm->bc")}

    def next_tick(at: datetime) -> float:
        tick = at.replace(second=0, microsecond=0) + timedelta(minutes=30 - at.minute % 30)
        return (tick - at).total_seconds()

    baseline = [next_tick(at) + run_s for _, _, at in latencies]
    runs = stack.runs("crm_sync")
    print()
    print(f"latency (s) per change: {', '.join(f'{side} {lat:.0f}' for side, lat, _ in latencies)}")
    for side, side_values in by_side.items():
        print(f"  {side}: p50 {sorted(side_values)[len(side_values) // 2]:.0f} s, p95 {p95(side_values):.0f} s")
    print(f"crm_sync runs: {len(runs)} ({sum(1 for r in runs if r['run_type'] == 'asset_triggered')} asset-triggered)")
    print(
        "idle requests per hour per mapping, event-driven (watchers + subscriptions + cron ticks + wake-ups after"
        " the Inactivity Timeout) | 30-minute polling:"
    )
    for name in event_idle:
        split = " + ".join(f"{parts[part][name]:.2f}" for part in parts)
        print(f"  {name:22} {event_idle[name]:6.2f} ({split}) | {polling_idle[name]:6.1f}")
    total_event, total_polling = sum(event_idle.values()), sum(polling_idle.values())
    split = " + ".join(f"{sum(parts[part].values()):.1f}" for part in parts)
    print(f"  {'all':22} {total_event:6.1f} ({split}) | {total_polling:6.1f}")
    print(f"requests of an idle cron tick: {json.dumps(tick_counts, sort_keys=True)}")
    print(f"requests of a steady-state webhook_subscriptions run: {json.dumps(subscription_counts, sort_keys=True)}")
    print(f"watchers: measured every {args.poll} s, counted per hour at the default {args.default_poll} s")
    print(f"idle requests seen in {args.idle:.0f} s: {json.dumps(idle_counts, sort_keys=True)}")
    print(
        f"change_to_sync_p95_s={p95(values):.1f} change_to_sync_p50_s={sorted(values)[len(values) // 2]:.1f}"
        f" polling_change_to_sync_p95_min={p95(baseline) / 60:.1f}"
        f" polling_uniform_p95_min={(0.95 * 1800 + run_s) / 60:.1f}"
        f" idle_requests_per_hour={total_event:.0f} polling_idle_requests_per_hour={total_polling:.0f}"
        f" idle_requests_per_hour_per_mapping={total_event / len(event_idle):.1f}"
        f" polling_idle_requests_per_hour_per_mapping={total_polling / len(polling_idle):.1f}"
        f" bc_delay_s={args.bc_delay:g} poll_s={args.poll} default_poll_s={args.default_poll}"
        f" dataverse_webhooks={args.dataverse_webhooks}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
