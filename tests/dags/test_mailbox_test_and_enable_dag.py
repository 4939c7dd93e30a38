"""Test & Enable as a mailbox_sync DAG run (conf ``{"test_and_enable": [ids]}``), with ``airflow dags test``
against Dovecot and the sandbox: the disabled workload is tested now, enabled and back on its schedule."""

from __future__ import annotations

import json
import os
import uuid

import pytest


@pytest.mark.slow
def test_a_test_and_enable_run_enables_the_workloads_that_work(airflow_env, state_store, sandbox, tmp_path) -> None:
    from mailserver.run import MailServer

    from dynamics_jobqueue.mailbox import records

    with MailServer() as server:
        address = f"tested-{uuid.uuid4().hex[:6]}@cronus.test"
        server.add_user(address, "pw")
        server.deliver(
            address,
            [b"From: ana.bowman@northwind.example\r\nTo: jo@contoso.com\r\nSubject: after the test\r\n"
             b"Message-ID: <test-and-enable@corpus.test>\r\n\r\nbody\r\n"],
        )  # fmt: skip
        extra = {"imap_port": server.imap_port, "pop3_port": server.pop3_port, "smtp_port": server.smtp_port}
        records.save_profile(state_store, "Dovecot (test & enable)", "imap", "mail_tested")
        box = records.create_mailbox(
            state_store, name="tested", email_address=address, server_profile="Dovecot (test & enable)",
            incoming_filter=records.IncomingFilter.ALL, outgoing_method="none",
        )  # fmt: skip
        records.update_mailbox(state_store, box.mailbox_id, recovery_rule="microsoft")
        with state_store.transaction() as cur:  # disabled by an earlier permanent error, not due for a day
            cur.execute(
                "UPDATE dynamics.mailbox_workload SET enabled = false, status = 'failure', permanent_error = true,"
                " next_sync_at = now() + interval '1 day' WHERE mailbox_id = %s",
                (box.mailbox_id,),
            )
        env = {
            "AIRFLOW_CONN_MAIL_TESTED": json.dumps(
                {"conn_type": "dynamics_mail", "host": server.host, "login": address, "password": "pw", "extra": extra}
            ),
            **sandbox.environment(),
            "AIRFLOW_CONN_DYNAMICS_STATE": os.environ["AIRFLOW_CONN_DYNAMICS_STATE"],
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(tmp_path),
        }
        result = airflow_env.dags_test("mailbox_sync", conf={"test_and_enable": [box.mailbox_id]}, extra_env=env)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    state, tasks = airflow_env.run_state("mailbox_sync")
    assert state == "success" and set(tasks.values()) == {"success"}
    with state_store.transaction() as cur:
        cur.execute(
            "SELECT status, enabled, permanent_error, last_test_at IS NOT NULL FROM dynamics.mailbox_workload"
            " WHERE mailbox_id = %s AND workload = 'incoming'",
            (box.mailbox_id,),
        )
        assert cur.fetchone() == ("success", True, False, True)
        cur.execute("SELECT outcome FROM dynamics.mailbox_message WHERE mailbox_id = %s", (box.mailbox_id,))
        assert cur.fetchall() == [("tracked",)]
