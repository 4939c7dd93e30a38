"""The mailbox_sync DAG: its shape, and one real run with ``airflow dags test`` against Dovecot and the sandbox."""

from __future__ import annotations

import json
import os
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"


def test_mailbox_sync_dag_shape() -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS / "mailbox_sync.py"))
    assert bag.import_errors == {}
    dag = bag.dags["mailbox_sync"]
    assert dag.schedule == timedelta(minutes=5)
    assert set(dag.task_dict) == {"select_due_mailboxes", "sync_mailboxes"}
    assert dag.task_dict["sync_mailboxes"].upstream_task_ids == {"select_due_mailboxes"}
    assert dag.max_active_runs == 1 and not dag.catchup


@pytest.mark.slow
def test_mailbox_sync_dag_run_isolates_a_failing_mailbox(airflow_env, state_store, sandbox, tmp_path) -> None:
    from mailserver.run import MailServer

    from dynamics_jobqueue.hooks.dataverse import DataverseHook
    from dynamics_jobqueue.mailbox import records

    jo = next(
        DataverseHook().iter_pages(
            "systemusers", filter="internalemailaddress eq 'JO@contoso.com'", select=["systemuserid"]
        )
    )[0]["systemuserid"]
    with MailServer() as server:
        tag = uuid.uuid4().hex[:6]
        good, bad = f"good-{tag}@cronus.test", f"bad-{tag}@cronus.test"
        server.add_user(good, "pw")
        server.add_user(bad, "pw")
        server.deliver(
            good,
            [b"From: ana.bowman@northwind.example\r\nTo: jo@contoso.com\r\nSubject: hello\r\n"
             b"Message-ID: <dag-run@corpus.test>\r\n\r\nbody\r\n"],
        )  # fmt: skip
        extra = {"imap_port": server.imap_port, "pop3_port": server.pop3_port, "smtp_port": server.smtp_port}
        connections = {
            "AIRFLOW_CONN_MAIL_DAG": {"conn_type": "dynamics_mail", "host": server.host, "login": good,
                                      "password": "pw", "extra": extra},
            "AIRFLOW_CONN_MAIL_DAG_BAD": {"conn_type": "dynamics_mail", "login": bad, "password": "wrong"},
        }  # fmt: skip
        records.save_profile(state_store, "Dovecot", "imap", "mail_dag")
        box = records.create_mailbox(
            state_store, name="good", email_address=good, server_profile="Dovecot",
            incoming_filter=records.IncomingFilter.FROM_CRM_RECORDS,
        )  # fmt: skip
        records.map_user(state_store, box.mailbox_id, jo)
        records.create_mailbox(
            state_store, name="bad", email_address=bad, server_profile="Dovecot", credentials_conn_id="mail_dag_bad"
        )
        env = {name: json.dumps(value) for name, value in connections.items()}
        env.update(sandbox.environment())
        env["AIRFLOW_CONN_DYNAMICS_STATE"] = os.environ["AIRFLOW_CONN_DYNAMICS_STATE"]
        # the package is installed; the run needs none of the plugin folder's extras
        env["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(tmp_path)
        result = airflow_env.dags_test("mailbox_sync", extra_env=env)
    output = result.stdout + result.stderr
    # the bad mailbox fails its own task with the mailbox and the fix; the good one is tracked anyway
    assert f"mailbox {bad} (incoming)" in output and "mail_dag_bad" in output
    rows = next(DataverseHook().iter_pages("emails", filter="messageid eq '<dag-run@corpus.test>'"))
    assert len(rows) == 1
    # one failed mailbox fails the DAG run as Airflow shows it; the other mailbox's task succeeded
    state, tasks = airflow_env.run_state("mailbox_sync")
    assert state == "failed" and tasks.pop("select_due_mailboxes") == "success"
    assert sorted(tasks.values()) == ["failed", "success"]
