"""The crm_sync DAG: one task per table mapping, edges from depends_on, and real runs with ``airflow dags test``
against the sandbox and a real Postgres state store."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
RECOMMENDED_ORDER = [
    "currency",
    "salespeople",
    "unit_of_measure",
    "payment_terms",
    "shipment_method",
    "shipping_agent",
    "customer",
    "contact",
    "resource_product",
    "resource_price_list_item",
    "item_product",
    "item_price_list_item",
]
OPTION_MAPPINGS = {"payment_terms", "shipment_method", "shipping_agent"}
WATCHER = "run_failed_if_any_task_failed"
#: ``airflow dags test`` with a scheduled run, as the cron tick creates it.
DAGS_TEST_SCHEDULED = REPO / "include" / "scripts" / "dags_test_scheduled.py"


def load_dag(monkeypatch: pytest.MonkeyPatch, **env: str):
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    bag = DagBag(dag_folder=str(DAGS / "crm_sync.py"))
    return bag


def test_one_task_per_mapping_with_edges_from_depends_on(monkeypatch: pytest.MonkeyPatch) -> None:
    bag = load_dag(monkeypatch)
    assert bag.import_errors == {}
    dag = bag.dags["crm_sync"]
    assert set(dag.task_dict) == {*RECOMMENDED_ORDER, WATCHER}
    watcher = dag.task_dict.pop(WATCHER)
    assert watcher.upstream_task_ids == set(RECOMMENDED_ORDER) and watcher.trigger_rule == "one_failed"
    assert watcher.retries == 0
    upstream = {task_id: task.upstream_task_ids for task_id, task in dag.task_dict.items()}
    assert upstream == {
        "currency": set(),
        "salespeople": set(),
        "unit_of_measure": set(),
        "payment_terms": set(),
        "shipment_method": set(),
        "shipping_agent": set(),
        # CDS Setup Defaults' Dependency Filter: SALESPEOPLE|CURRENCY|PAYMENT TERMS|SHIPMENT METHOD|SHIPPING AGENT
        "customer": {"salespeople", "currency", *OPTION_MAPPINGS},
        "contact": {"customer"},
        "resource_product": {"unit_of_measure", "currency"},
        "resource_price_list_item": {"resource_product", "unit_of_measure"},
        "item_product": {"unit_of_measure", "currency"},
        "item_price_list_item": {"item_product", "unit_of_measure"},
    }
    customer = dag.task_dict["customer"]
    assert customer.mapping_name == "CUSTOMER"
    # Dependents run after an upstream mapping with failed records, and when it was deselected (skipped).
    assert {task.trigger_rule for task in dag.task_dict.values()} == {"all_done"}
    assert customer.retries == 3 and customer.retry_exponential_backoff
    assert customer.retry_delay == timedelta(seconds=30)
    assert dag.timetable.timetable.expression == "*/30 * * * *"
    assert dag.max_active_runs == 1 and not dag.catchup
    assert dag.params["full_sync"] is False and dag.params["mappings"] == []
    assert dag.params["full_synch_review"] is False


def test_the_schedule_is_the_cron_or_any_table_a_mapping_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk import AssetAny, AssetOrTimeSchedule

    from dynamics_jobqueue.triggers.dataverse_changes import DataverseChangesTrigger

    dag = load_dag(monkeypatch, AIRFLOW__DYNAMICS_JOBQUEUE__CRM_CHANGE_POLL_INTERVAL_S="15").dags["crm_sync"]
    assert isinstance(dag.timetable, AssetOrTimeSchedule) and isinstance(dag.timetable.asset_condition, AssetAny)
    assets = {a.name: a for a in dag.timetable.asset_condition.objects}
    assert set(assets) == {
        *(f"business_central/{s}" for s in ("currencies", "salespeoplePurchasers", "unitsOfMeasure", "customers")),
        *(f"business_central/{s}" for s in ("contacts", "resources", "items")),
        *(f"business_central/{s}" for s in ("paymentTerms", "shipmentMethods", "shippingAgents")),
        *(f"dataverse/{t}" for t in ("transactioncurrencies", "systemusers", "uomschedules", "accounts")),
        *(f"dataverse/{t}" for t in ("contacts", "products", "productpricelevels")),
    }
    assert assets["business_central/customers"].uri == "x-dynamics-bc://business_central_default/customers"
    assert assets["business_central/customers"].watchers == []  # its events come from the webhook receiver
    (watcher,) = assets["dataverse/accounts"].watchers
    assert isinstance(watcher.trigger, DataverseChangesTrigger)
    assert watcher.trigger.serialize()[1] == {
        "entity_set": "accounts",
        "conn_id": "dataverse_default",
        "interval_s": 15,
        "refresh_s": 86_400,
    }
    off = load_dag(monkeypatch, AIRFLOW__DYNAMICS_JOBQUEUE__CRM_CHANGE_POLL_INTERVAL_S="0").dags["crm_sync"]
    assert all(not a.watchers for a in off.timetable.asset_condition.objects)


def test_with_dataverse_webhooks_the_change_watcher_polls_at_the_safety_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def intervals(**env: str) -> set[int]:
        dag = load_dag(monkeypatch, AIRFLOW__DYNAMICS_JOBQUEUE__CRM_CHANGE_POLL_INTERVAL_S="15", **env).dags["crm_sync"]
        crm = [a for a in dag.timetable.asset_condition.objects if a.name.startswith("dataverse/")]
        assert crm
        return {w.trigger.serialize()[1]["interval_s"] for a in crm for w in a.watchers}

    assert intervals() == {15}
    url = "https://airflow.example.com/dynamics-webhooks/dataverse"
    assert intervals(AIRFLOW__DYNAMICS_JOBQUEUE__DATAVERSE_WEBHOOK_URL=url) == {1800}  # the default safety interval
    assert intervals(
        AIRFLOW__DYNAMICS_JOBQUEUE__DATAVERSE_WEBHOOK_URL=url,
        AIRFLOW__DYNAMICS_JOBQUEUE__CRM_CHANGE_SAFETY_POLL_INTERVAL_S="900",
    ) == {900}
    assert (
        intervals(
            AIRFLOW__DYNAMICS_JOBQUEUE__DATAVERSE_WEBHOOK_URL=url,
            AIRFLOW__DYNAMICS_JOBQUEUE__CRM_CHANGE_SAFETY_POLL_INTERVAL_S="0",
        )
        == set()
    )  # no watcher: the webhooks and the cron only


def test_an_asset_triggered_run_syncs_the_changed_tables_mappings_and_their_dependents() -> None:
    from dynamics_jobqueue.sync.assets import affected_mappings
    from dynamics_jobqueue.sync.loader import load_mappings

    mappings = load_mappings()
    assert affected_mappings(mappings, ["business_central/customers"]) == {"CUSTOMER", "CONTACT"}
    assert affected_mappings(mappings, ["dataverse/contacts"]) == {"CONTACT"}
    assert affected_mappings(mappings, ["dataverse/transactioncurrencies"]) == {
        "CURRENCY",
        "CUSTOMER",
        "CONTACT",
        "RESOURCE-PRODUCT",
        "RESOURCE-PRICE LIST ITEM",
        "ITEM-PRODUCT",
        "ITEM-PRICE LIST ITEM",
    }
    assert affected_mappings(mappings, ["dataverse/products"]) == {
        "RESOURCE-PRODUCT",
        "RESOURCE-PRICE LIST ITEM",
        "ITEM-PRODUCT",
        "ITEM-PRICE LIST ITEM",
    }
    assert affected_mappings(mappings, ["business_central/paymentTerms"]) == {"PAYMENT TERMS", "CUSTOMER", "CONTACT"}
    assert affected_mappings(mappings, ["somewhere/else"]) == set()


def test_every_topological_order_agrees_with_the_recommended_order(monkeypatch: pytest.MonkeyPatch) -> None:
    dag = load_dag(monkeypatch).dags["crm_sync"]
    del dag.task_dict[WATCHER]
    edges = [(up, task_id) for task_id, task in dag.task_dict.items() for up in task.upstream_task_ids]
    position = {t: i for i, t in enumerate(RECOMMENDED_ORDER)}
    assert all(position[a] < position[b] for a, b in edges)  # the recommended order is a valid run order
    # No valid order puts a mapping before one it depends on: what must precede a task is the transitive closure
    # of its upstream edges (10! orders are too many to enumerate).
    before = {t: set(task.upstream_task_ids) for t, task in dag.task_dict.items()}
    changed = True
    while changed:
        changed = False
        for deps in before.values():
            more = set().union(*(before[d] for d in deps)) - deps
            if more:
                deps |= more
                changed = True
    assert {"currency", "salespeople", *OPTION_MAPPINGS} <= before["customer"]
    assert "customer" in before["contact"] and "unit_of_measure" in before["item_product"]
    # Independent mappings may run in parallel: the six roots have no edges between them.
    roots = [t for t, task in dag.task_dict.items() if not task.upstream_task_ids]
    assert roots == ["currency", "salespeople", "unit_of_measure", *sorted(OPTION_MAPPINGS)]


def test_the_schedule_is_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    dag = load_dag(monkeypatch, DYNAMICS_CRM_SYNC_SCHEDULE="*/5 * * * *").dags["crm_sync"]
    assert dag.timetable.timetable.expression == "*/5 * * * *"
    manual = load_dag(monkeypatch, DYNAMICS_CRM_SYNC_SCHEDULE="none").dags["crm_sync"]
    assert manual.schedule is None


def test_a_bad_mapping_file_fails_dag_parsing_naming_file_mapping_and_field(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    shutil.copytree(REPO / "include" / "mappings", tmp_path / "mappings")
    path = tmp_path / "mappings" / "50_contact.yaml"
    contact = yaml.safe_load(path.read_text())
    contact["fields"][0]["transform"] = {"from_crm": [{"truncate": "thirty"}]}
    path.write_text(yaml.safe_dump(contact))
    bag = load_dag(monkeypatch, DYNAMICS_MAPPINGS_DIR=str(tmp_path / "mappings"))
    assert "crm_sync" not in bag.dags
    (error,) = bag.import_errors.values()
    assert "50_contact.yaml, mapping CONTACT, field fields[0] firstName -> firstname" in error
    assert "truncate" in error


@pytest.mark.slow
def test_crm_sync_runs_end_to_end_and_a_second_run_writes_only_the_changes(airflow_env, state_store, sandbox) -> None:
    from dynamics_jobqueue.hooks.business_central import BusinessCentralHook
    from dynamics_jobqueue.hooks.dataverse import DataverseHook
    from dynamics_jobqueue.sync.summary import run_summary
    from sandbox.connections import CRM_USER_CLIENT, ERP_USER_CLIENT

    env = {**sandbox.environment(), "AIRFLOW_CONN_DYNAMICS_STATE": os.environ["AIRFLOW_CONN_DYNAMICS_STATE"]}
    first = airflow_env.dags_test("crm_sync", {"full_synch_review": True}, extra_env=env)
    output = first.stdout + first.stderr
    assert first.returncode == 0, output[-4000:]
    assert "CUSTOMER to CRM: page 1, 5/5 records" in output
    summary = run_summary(state_store).set_index("mapping")
    assert summary.index.tolist() == [
        "CURRENCY",
        "SALESPEOPLE",
        "UNIT OF MEASURE",
        "PAYMENT TERMS",
        "SHIPMENT METHOD",
        "SHIPPING AGENT",
        "CUSTOMER",
        "CONTACT",
        "RESOURCE-PRODUCT",
        "RESOURCE-PRICE LIST ITEM",
        "ITEM-PRODUCT",
        "ITEM-PRICE LIST ITEM",
    ]
    assert summary["inserted"].to_dict() == {
        "CURRENCY": 47,
        "SALESPEOPLE": 0,
        "UNIT OF MEASURE": 19,
        "PAYMENT TERMS": 10,
        "SHIPMENT METHOD": 13,
        "SHIPPING AGENT": 1,
        "CUSTOMER": 7,
        "CONTACT": 7,
        "RESOURCE-PRODUCT": 4,
        "RESOURCE-PRICE LIST ITEM": 4,
        "ITEM-PRODUCT": 20,
        "ITEM-PRICE LIST ITEM": 20,
    }
    assert int(summary["failed"].sum()) == 0

    # A human edits one customer in the ERP and one contact in the CRM.
    crm_user = sandbox.connections(client=CRM_USER_CLIENT)["dataverse_default"]
    erp_user = sandbox.connections(client=ERP_USER_CLIENT)["business_central_default"]
    os.environ["AIRFLOW_CONN_CRM_USER"] = __import__("json").dumps(crm_user)
    os.environ["AIRFLOW_CONN_ERP_USER"] = __import__("json").dumps(erp_user)
    try:
        erp = BusinessCentralHook("erp_user")
        crm = DataverseHook("crm_user")
        trey = next(erp.iter_pages("customers", filter="number eq '20000'"))[0]
        erp.update("customers", trey["id"], {"displayName": "Trey Research plc"})
        robert = next(crm.iter_pages("contacts", filter="emailaddress1 eq 'robert.townes@contoso.com'"))[0]
        crm.upsert(
            "contacts", robert["contactid"], {"jobtitle": "Buyer", "mobilephone": "+44 7700 900123"}, mode="update"
        )
    finally:
        del os.environ["AIRFLOW_CONN_CRM_USER"], os.environ["AIRFLOW_CONN_ERP_USER"]
    sandbox.admin("stats/reset", {})
    second = airflow_env.dags_test("crm_sync", extra_env=env)
    assert second.returncode == 0, (second.stdout + second.stderr)[-4000:]
    again = run_summary(state_store).set_index("mapping")
    assert int(again["inserted"].sum()) == 0 and int(again["failed"].sum()) == 0
    assert again["modified"].to_dict() == {
        "CURRENCY": 0,
        "SALESPEOPLE": 0,
        "UNIT OF MEASURE": 0,
        "PAYMENT TERMS": 0,
        "SHIPMENT METHOD": 0,
        "SHIPPING AGENT": 0,
        "CUSTOMER": 1,
        "CONTACT": 1,
        "RESOURCE-PRODUCT": 0,
        "RESOURCE-PRICE LIST ITEM": 0,
        "ITEM-PRODUCT": 0,
        "ITEM-PRICE LIST ITEM": 0,
    }
    writes = {route: n for route, n in sandbox.admin("stats")["by_route"].items() if not route.startswith("GET")}
    assert writes == {"POST dataverse/$batch": 1, "POST bc/$batch": 1}
    dv = DataverseHook()
    account = next(dv.iter_pages("accounts", filter="accountnumber eq '20000'"))[0]
    assert account["name"] == "Trey Research plc"
    person = next(erp.iter_pages("contacts", filter="email eq 'robert.townes@contoso.com' and type eq 'Person'"))[0]
    assert person["mobilePhoneNumber"] == "+44 7700 900123"


@pytest.mark.slow
def test_selected_mappings_run_and_a_dependent_runs_after_its_dependency_failed(
    airflow_env, state_store, sandbox
) -> None:
    from dynamics_jobqueue.sync.summary import run_summary

    env = {**sandbox.environment(), "AIRFLOW_CONN_DYNAMICS_STATE": os.environ["AIRFLOW_CONN_DYNAMICS_STATE"]}
    # SALESPEOPLE and CURRENCY are not selected: the customers' salesperson is not coupled, so CUSTOMER ends
    # failed; CONTACT still runs and syncs the contacts whose parent could be coupled.
    run = airflow_env.dags_test(
        "crm_sync", {"mappings": ["CUSTOMER", "CONTACT"], "full_synch_review": True}, extra_env=env
    )
    output = run.stdout + run.stderr
    assert "dependency not coupled: SALESPEOPLE has no coupling for salespeoplePurchasers code 'JO'" in output
    summary = run_summary(state_store).set_index("mapping")
    assert summary.index.tolist() == ["CUSTOMER", "CONTACT"]
    assert summary.loc["CUSTOMER", ["inserted", "failed"]].tolist() == [2, 5]
    assert summary.loc["CONTACT", ["inserted", "failed", "skipped"]].tolist() == [2, 5, 6]
    rows = state_store.get_records("SELECT DISTINCT full_sync FROM dynamics.sync_job")
    assert [r[0] for r in rows] == [True]


@pytest.mark.slow
def test_a_failed_mapping_fails_the_run_and_its_dependents_still_run(airflow_env, state_store, sandbox) -> None:
    """A currency whose code is longer than Dataverse's isocurrencycode (5) fails CURRENCY; ITEM-PRODUCT,
    which depends on it, still syncs every item, and the DAG run ends failed (the watcher), not green."""
    from dynamics_jobqueue.hooks.business_central import BusinessCentralHook
    from dynamics_jobqueue.sync.summary import run_summary
    from sandbox.connections import ERP_USER_CLIENT

    erp_user = sandbox.connections(client=ERP_USER_CLIENT)["business_central_default"]
    os.environ["AIRFLOW_CONN_ERP_USER"] = json.dumps(erp_user)
    try:
        BusinessCentralHook("erp_user").create("currencies", {"code": "EURO2026", "displayName": "Too long a code"})
    finally:
        del os.environ["AIRFLOW_CONN_ERP_USER"]
    env = {**sandbox.environment(), "AIRFLOW_CONN_DYNAMICS_STATE": os.environ["AIRFLOW_CONN_DYNAMICS_STATE"]}
    run = airflow_env.dags_test(
        "crm_sync",
        {"mappings": ["CURRENCY", "UNIT OF MEASURE", "ITEM-PRODUCT"], "full_synch_review": True},
        extra_env=env,
    )
    output = run.stdout + run.stderr
    assert run.returncode != 0 and "DagRun failed" in output, output[-4000:]
    assert "1 task(s) of crm_sync failed" in output and ": currency." in output, output[-4000:]
    summary = run_summary(state_store).set_index("mapping")
    assert summary.loc["CURRENCY", "failed"] == 1
    assert summary.loc["ITEM-PRODUCT", ["inserted", "failed"]].tolist() == [20, 0]

    state, tasks = airflow_env.run_state("crm_sync")
    assert state == "failed"
    assert tasks == {
        "currency": "failed",
        "unit_of_measure": "success",
        "item_product": "success",
        "salespeople": "skipped",
        "payment_terms": "skipped",
        "shipment_method": "skipped",
        "shipping_agent": "skipped",
        "customer": "skipped",
        "contact": "skipped",
        "resource_product": "skipped",
        "resource_price_list_item": "skipped",
        "item_price_list_item": "skipped",
        WATCHER: "failed",
    }


@pytest.mark.slow
def test_a_cron_tick_skips_on_hold_mappings_without_a_request_and_polls_those_without_webhooks(
    airflow_env, state_store, sandbox
) -> None:
    """After an idle scheduled run every mapping is On Hold with Inactivity Timeout; the next cron tick skips
    those whose Business Central entity set has a webhook subscription (the Dataverse watcher is on by default)
    without a request for them, and syncs SALESPEOPLE and CONTACT, whose entity sets accept no webhook."""
    from webhook_receiver import Receiver

    from dynamics_jobqueue.hooks.business_central import BusinessCentralHook
    from dynamics_jobqueue.sync.job_queue import entries
    from dynamics_jobqueue.sync.loader import load_mappings
    from dynamics_jobqueue.webhooks.subscriptions import ensure_subscriptions

    env = {**sandbox.environment(), "AIRFLOW_CONN_DYNAMICS_STATE": os.environ["AIRFLOW_CONN_DYNAMICS_STATE"]}

    def tick() -> str:
        done = subprocess.run(
            [sys.executable, str(DAGS_TEST_SCHEDULED), "crm_sync"],
            env={**airflow_env.env, **env},
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
        return done.stdout + done.stderr

    mappings = load_mappings()
    receiver = Receiver(state_store)
    receiver.start()
    try:
        first = airflow_env.dags_test("crm_sync", {"full_synch_review": True}, extra_env=env)
        assert first.returncode == 0, (first.stdout + first.stderr)[-4000:]
        sets = [m.erp.entity_set for m in mappings]
        outcome = ensure_subscriptions(BusinessCentralHook(), state_store, sets, receiver.url)
        polled = {"CONTACT", "SALESPEOPLE"}
        assert sorted(outcome.created) == sorted({m.erp.entity_set for m in mappings if m.name not in polled})

        sandbox.admin("stats/reset", {})
        tick()
        polling = sum(sandbox.admin("stats")["by_route"].values())
        held = entries(state_store)
        assert {name: e.status.value for name, e in held.items()} == {
            m.name: "On Hold with Inactivity Timeout" for m in mappings
        }
        assert {e.last_run_id for e in held.values()} == {held["CUSTOMER"].last_run_id}
        assert held["CUSTOMER"].last_run_id.startswith("scheduled__")

        sandbox.admin("stats/reset", {})
        output = tick()
        counted = sandbox.admin("stats")["by_route"]
        requests = {route for route, n in counted.items() if n}
    finally:
        receiver.stop()
    state, tasks = airflow_env.run_state("crm_sync")
    assert state == "success"
    assert {m.slug: tasks[m.slug] for m in mappings} == {
        m.slug: "success" if m.name in polled else "skipped" for m in mappings
    }
    until = held["CUSTOMER"].on_hold_until
    assert (
        f"On Hold with Inactivity Timeout until {until:%Y-%m-%d %H:%M:%S} UTC: a change to "
        "business_central/customers or dataverse/accounts wakes it"
    ) in output
    # Only the polled mappings' change reads: no $metadata (their checks passed in the first run and are kept in
    # the state store for metadata_check_max_age_h) and no company lookup (company_id in the connection's extra).
    print(f"idle cron tick reads: {counted}")
    assert requests == {"GET bc/contacts", "GET dataverse/contacts", "GET dataverse/systemusers"}, counted
    assert {entry.last_run_id for name, entry in entries(state_store).items() if name not in polled} == {
        held["CUSTOMER"].last_run_id
    }
    # The idle tick now costs the two polled mappings' requests instead of every mapping's.
    on_hold = sum(counted.values())
    print(f"idle cron tick: {polling} requests with every mapping Ready, {on_hold} with the covered ones on hold")
    assert on_hold == 3 and polling > 3 * on_hold, (polling, on_hold)


def test_a_task_of_an_asset_triggered_run_skips_when_its_mapping_is_not_affected() -> None:
    from airflow.sdk.exceptions import AirflowSkipException

    from dynamics_jobqueue.operators.sync import CrmSyncOperator
    from dynamics_jobqueue.sync.assets import erp_asset

    changed = {erp_asset("customers"): []}
    currency = CrmSyncOperator(task_id="currency", mapping_name="CURRENCY")
    with pytest.raises(AirflowSkipException, match="CURRENCY reads none of the changed tables"):
        currency.execute({"params": {}, "triggering_asset_events": changed})  # type: ignore[arg-type]
    contact = CrmSyncOperator(task_id="contact", mapping_name="CONTACT")
    with pytest.raises(Exception) as raised:  # goes on to the services (no connection here): not skipped
        contact.execute({"params": {}, "triggering_asset_events": changed})  # type: ignore[arg-type]
    assert not isinstance(raised.value, AirflowSkipException)
    # A scheduled or manual run has no triggering events: every mapping runs.
    with pytest.raises(Exception) as scheduled:
        currency.execute({"params": {}, "triggering_asset_events": {}})  # type: ignore[arg-type]
    assert not isinstance(scheduled.value, AirflowSkipException)


def test_a_mapping_resolving_conflicts_by_ask_gets_tasks_asking_a_user(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from airflow.providers.standard.operators.hitl import HITLOperator

    shutil.copytree(REPO / "include" / "mappings", tmp_path / "mappings")
    path = tmp_path / "mappings" / "40_customer.yaml"
    customer = yaml.safe_load(path.read_text())
    customer["resolve_update_conflicts"] = "ask"
    path.write_text(yaml.safe_dump(customer))
    bag = load_dag(monkeypatch, DYNAMICS_MAPPINGS_DIR=str(tmp_path / "mappings"))
    assert bag.import_errors == {}
    dag = bag.dags["crm_sync"]
    assert {t for t in dag.task_dict if t.startswith(("conflicts_", "ask_"))} == {"conflicts_customer", "ask_customer"}
    assert dag.task_dict["conflicts_customer"].upstream_task_ids == {"customer"}
    ask = dag.task_dict["ask_customer"]
    assert ask.upstream_task_ids == {"conflicts_customer"} and issubclass(ask.operator_class, HITLOperator)
    assert {"conflicts_customer", "ask_customer"} <= dag.task_dict[WATCHER].upstream_task_ids
