"""An update conflict as an Airflow required action, end to end (issue 16, "Conflicts as required actions").

Real parts only: crm_sync runs with ``airflow dags test`` (which keeps a run waiting while a Human-in-the-loop task
is parked in ``awaiting_input``), a real ``airflow api-server`` on the same metadata database answers the
required action through Airflow's REST API as the user ``operator``, the sandbox holds both records, and the
console's JSON API shows who chose what.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from console_support import REPO, api_server, token

#: The customer's mapping and the mappings it looks up.
FIRST_MAPPINGS = ["CURRENCY", "SALESPEOPLE", "PAYMENT TERMS", "SHIPMENT METHOD", "SHIPPING AGENT", "CUSTOMER"]


def _hitl_details(base_url: str, user: str) -> list[dict[str, Any]]:
    response = requests.get(
        f"{base_url}/api/v2/dags/crm_sync/dagRuns/~/hitlDetails",
        headers={"Authorization": f"Bearer {token(base_url, user)}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return list(response.json()["hitl_details"])


@pytest.mark.slow
def test_a_conflict_becomes_a_required_action_and_take_crm_data_lands_in_the_erp(
    airflow_env, state_store, sandbox, tmp_path: Path
) -> None:
    from dynamics_jobqueue.hooks.business_central import BusinessCentralHook
    from dynamics_jobqueue.hooks.dataverse import DataverseHook
    from sandbox.connections import CRM_USER_CLIENT, ERP_USER_CLIENT

    mappings = tmp_path / "mappings"
    shutil.copytree(REPO / "include" / "mappings", mappings)
    customer_file = mappings / "40_customer.yaml"
    customer_mapping = yaml.safe_load(customer_file.read_text())
    customer_mapping["resolve_update_conflicts"] = "ask"
    customer_file.write_text(yaml.safe_dump(customer_mapping, sort_keys=False))
    state_conn = json.loads(os.environ["AIRFLOW_CONN_DYNAMICS_STATE"])
    env = {
        **sandbox.environment(),
        "AIRFLOW_CONN_DYNAMICS_STATE": os.environ["AIRFLOW_CONN_DYNAMICS_STATE"],
        "AIRFLOW__DYNAMICS_JOBQUEUE__MAPPINGS_DIR": str(mappings),
    }
    # The first synchronization (Full Synch. Review) couples the customers: set-up, run in-process (what is under
    # test are the DAG runs after it).
    from dynamics_jobqueue.sync.loader import load_mappings
    from dynamics_jobqueue.sync.options import runner_class

    loaded = load_mappings(mappings)
    for name in FIRST_MAPPINGS:
        mapping = loaded.get(name)
        result = runner_class(mapping)(
            mapping,
            loaded,
            state=state_store,
            erp_hook=BusinessCentralHook(),
            crm_hook=DataverseHook(),
            run_id="first",
            full_synch_review=True,
        ).run()
        assert not result.failed, result.describe()
    work = tmp_path / "api"
    work.mkdir()
    mappings_env = {"AIRFLOW__DYNAMICS_JOBQUEUE__MAPPINGS_DIR": str(mappings)}
    with api_server(airflow_env, sandbox, state_conn, work, mappings_env) as (base_url, _log):
        # A conflict created on both sides: the same bidirectional field (name <-> displayName) edited by a user
        # of each system after the first sync.
        erp_user = sandbox.connections(client=ERP_USER_CLIENT)["business_central_default"]
        crm_user = sandbox.connections(client=CRM_USER_CLIENT)["dataverse_default"]
        os.environ["AIRFLOW_CONN_ERP_USER"] = json.dumps(erp_user)
        os.environ["AIRFLOW_CONN_CRM_USER"] = json.dumps(crm_user)
        try:
            erp = BusinessCentralHook("erp_user")
            crm = DataverseHook("crm_user")
            adatum = next(erp.iter_pages("customers", filter="number eq '10000'"))[0]
            account = next(crm.iter_pages("accounts", filter="accountnumber eq '10000'"))[0]
            erp.update("customers", adatum["id"], {"displayName": "Adatum (ERP)"})
            crm.upsert("accounts", account["accountid"], {"name": "Adatum (CRM)"}, mode="update")
        finally:
            del os.environ["AIRFLOW_CONN_ERP_USER"], os.environ["AIRFLOW_CONN_CRM_USER"]

        # The second run finds the conflict and waits for the answer in its ask_customer task.
        log_file = tmp_path / "second-run.log"
        second = _dags_test(airflow_env, {"mappings": ["CUSTOMER"]}, env, log_file)
        try:
            deadline = time.monotonic() + 240
            while not (details := _hitl_details(base_url, "viewer")):
                assert second.poll() is None, log_file.read_text()[-4000:]
                assert time.monotonic() < deadline, log_file.read_text()[-4000:]
                time.sleep(1)
            (detail,) = details
            ti = detail["task_instance"]
            assert (ti["task_id"], ti["map_index"]) == ("ask_customer", 0)
            assert detail["options"] == ["send ERP data", "take CRM data", "skip"]
            assert detail["subject"] == "Update conflict: CUSTOMER 10000"
            assert "| displayName / name | Adatum (ERP) | Adatum (CRM) |" in detail["body"]
            assert detail["response_received"] is False

            # A viewer may not answer; the operator (role User) chooses "take CRM data".
            path = (
                f"{base_url}/api/v2/dags/crm_sync/dagRuns/{ti['dag_run_id']}/taskInstances/ask_customer/0/hitlDetails"
            )
            answer = {"chosen_options": ["take CRM data"]}
            denied = requests.patch(
                path, json=answer, headers={"Authorization": f"Bearer {token(base_url, 'viewer')}"}, timeout=30
            )
            assert denied.status_code == 403, denied.text
            chosen = requests.patch(
                path, json=answer, headers={"Authorization": f"Bearer {token(base_url, 'operator')}"}, timeout=30
            )
            assert chosen.status_code == 200, chosen.text
            assert chosen.json()["responded_by"]["name"] == "operator"
            second.wait(timeout=240)
        finally:
            if second.poll() is None:
                second.kill()
                second.wait()
        output = log_file.read_text()
        assert "operator chose 'take CRM data' (take_crm_data) for the update conflict of CUSTOMER 10000" in output, (
            output[-4000:]
        )
        assert second.returncode != 0  # the run that met the conflict ends failed (its CUSTOMER task failed)
        # Nothing written yet: the choice waits for the next run.
        assert erp_customer(sandbox, "10000")["displayName"] == "Adatum (ERP)"

        third = airflow_env.dags_test("crm_sync", {"mappings": ["CUSTOMER"]}, extra_env=env)
        assert third.returncode == 0, (third.stdout + third.stderr)[-4000:]
        assert "applied the users' choices for the update conflicts" in third.stdout + third.stderr
        # The CRM value landed in the ERP (read from the sandbox), and the CRM kept it.
        assert erp_customer(sandbox, "10000")["displayName"] == "Adatum (CRM)"
        assert (
            next(DataverseHook().iter_pages("accounts", filter="accountnumber eq '10000'"))[0]["name"] == "Adatum (CRM)"
        )

        # The console shows who chose what, and which runs asked and applied it.
        listed = requests.get(
            f"{base_url}/dynamics/api/sync/conflicts",
            headers={"Authorization": f"Bearer {token(base_url, 'viewer')}"},
            timeout=30,
        )
        assert listed.status_code == 200, listed.text
        page = listed.json()
        assert page["total"] == 1
        (row,) = page["items"]
        assert (row["mapping"], row["source_key"], row["resolution_label"], row["chosen_by"]) == (
            "CUSTOMER",
            "10000",
            "Take CRM data",
            "operator",
        )
        assert row["run_id"] == ti["dag_run_id"] and row["applied_at"] and row["applied_run_id"]
        assert {"field": "name", "erp_field": "displayName", "erp": "Adatum (ERP)", "crm": "Adatum (CRM)"} in row[
            "fields"
        ]
        errors = requests.get(
            f"{base_url}/dynamics/api/sync/errors",
            params={"mapping": "CUSTOMER"},
            headers={"Authorization": f"Bearer {token(base_url, 'viewer')}"},
            timeout=30,
        )
        assert errors.status_code == 200 and errors.json()["total"] == 0, errors.text


def _dags_test(airflow_env: Any, conf: dict[str, Any], env: dict[str, str], log_file: Path) -> subprocess.Popen:
    """``airflow dags test crm_sync`` with ``conf`` started in the background, its output in ``log_file``."""
    with log_file.open("w") as log:
        return subprocess.Popen(
            [str(Path(sys.executable).with_name("airflow")), "dags", "test", "crm_sync", "-c", json.dumps(conf)],
            env={**airflow_env.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )


def erp_customer(sandbox: Any, number: str) -> dict[str, Any]:
    """The sandbox's ERP customer ``number`` as the integration's connection reads it."""
    from dynamics_jobqueue.hooks.business_central import BusinessCentralHook

    return dict(next(BusinessCentralHook().iter_pages("customers", filter=f"number eq '{number}'"))[0])
