"""Failure alerts reach a real SMTP server (aiosmtpd with the project's capture handler) through the smtp provider.

One test runs a real failing DAG with ``airflow dags test``, so Airflow itself calls the notifier with its own
callback context; the others call ``notify`` with the context keys Airflow documents for callbacks.
"""

from __future__ import annotations

import email
import email.policy
import json
import socket
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiosmtpd.controller import Controller
from mailserver.smtp_capture import CaptureHandler

from dynamics_jobqueue.notifiers import JobQueueFailureNotifier

POSTING_ERROR = (
    "2 document(s) of SALESPOST could not be posted:\n"
    "- Sales Invoice 103001 (queued by ADMIN): Customer 10000 is blocked. Fix: unblock the customer or post later\n"
    "- Sales Order 101005 (queued by JO): Quantity to Ship is 0 on every line. Fix: enter Qty. to Ship"
)


@dataclass
class Outbox:
    """The capture server: ``port`` to send to, ``folder`` where each accepted message lands."""

    port: int
    folder: Path

    def messages(self) -> list[tuple[dict[str, object], EmailMessage]]:
        """(envelope, parsed message) of every accepted message, oldest first."""
        found = []
        for meta in sorted(self.folder.glob("*.json")):
            raw = meta.with_suffix(".eml").read_bytes()
            parsed = email.message_from_bytes(raw, policy=email.policy.default)
            assert isinstance(parsed, EmailMessage)
            found.append((json.loads(meta.read_text()), parsed))
        return found


def _body(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("html", "plain"))
    assert part is not None
    return str(part.get_content())


@pytest.fixture
def outbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Outbox]:
    """A real SMTP server on a free port and the ``smtp_default`` connection pointing at it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    folder = tmp_path / "outbox"
    controller = Controller(CaptureHandler(folder), hostname="127.0.0.1", port=port, decode_data=False)
    controller.start()
    monkeypatch.setenv(
        "AIRFLOW_CONN_SMTP_DEFAULT",
        json.dumps(
            {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": port,
                "extra": {"disable_ssl": True, "disable_tls": True, "from_email": "airflow@cronus.test"},
            }
        ),
    )
    try:
        yield Outbox(port, folder)
    finally:
        controller.stop()


def _task_context(exception: BaseException, **ti: object) -> dict[str, object]:
    fields = {
        "dag_id": "background_posting",
        "task_id": "drain_salespost",
        "run_id": "scheduled__2026-11-21T18:00:00+00:00",
        "map_index": -1,
        "try_number": 2,
        **ti,
    }
    return {"ti": SimpleNamespace(**fields), "exception": exception, "run_id": fields["run_id"]}


class PostingFailed(Exception):
    """What a posting task raises when it names the users who queued the failed documents."""

    def __init__(self, message: str, queued_by: list[str]) -> None:
        super().__init__(message)
        self.queued_by = queued_by


def test_posting_alert_goes_to_the_dag_recipients_and_the_users_who_queued(
    outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.cronus.test")
    notifier = JobQueueFailureNotifier(
        to=["erp-team@cronus.test"], user_addresses={"ADMIN": "admin@cronus.test"}, max_error_lines=2
    )
    notifier.notify(_task_context(PostingFailed(POSTING_ERROR, ["ADMIN", "jo@cronus.test", "NOADDRESS"])))

    [(envelope, message)] = outbox.messages()
    assert envelope["rcpt_tos"] == ["erp-team@cronus.test", "admin@cronus.test", "jo@cronus.test"]
    assert envelope["mail_from"] == "airflow@cronus.test"
    assert message["Subject"] == (
        "[Airflow] background_posting.drain_salespost failed: 2 document(s) of SALESPOST could not be posted:"
    )
    body = _body(message)
    for expected in (
        "background_posting",
        "drain_salespost",
        "scheduled__2026-11-21T18:00:00+00:00",
        "PostingFailed",
        "Sales Invoice 103001 (queued by ADMIN): Customer 10000 is blocked. Fix: unblock the customer",
        "1 more line(s) in the task log",
        "https://airflow.cronus.test/dags/background_posting/runs/scheduled__2026-11-21T18%3A00%3A00%2B00%3A00"
        "/tasks/drain_salespost?try_number=2",
    ):
        assert expected in body, expected
    # background_posting is not one of the project's DAG ids, so no console page is linked.
    assert "/plugin/dynamics-" not in body
    # Only max_error_lines lines of the error are in the mail; the rest is in the log.
    assert "Sales Order 101005" not in body


def test_mapped_mailbox_alert_names_the_mailbox_and_uses_the_default_recipients(
    outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DYNAMICS_ALERT_TO", "crm-admins@cronus.test, it@cronus.test")
    error = RuntimeError(
        "mailbox sales@cronus.test: IMAP login as 'sales@cronus.test' refused by mail.cronus.test: "
        "[AUTHENTICATIONFAILED]; fix: correct the login/password in the Airflow connection 'mail_sales'"
    )
    context = _task_context(
        error, dag_id="mailbox_sync", task_id="sync_mailbox", map_index=3, rendered_map_index="sales@cronus.test"
    )
    JobQueueFailureNotifier().notify(context)

    [(envelope, message)] = outbox.messages()
    assert envelope["rcpt_tos"] == ["crm-admins@cronus.test", "it@cronus.test"]
    assert message["Subject"].startswith("[Airflow] mailbox_sync.sync_mailbox[sales@cronus.test] failed: mailbox")
    body = _body(message)
    assert "fix: correct the login/password in the Airflow connection &#x27;mail_sales&#x27;" in body
    assert "/tasks/sync_mailbox/mapped/3?try_number=2" in body
    assert "/plugin/dynamics-mailboxes" in body  # the console page where the mailbox is fixed and re-tested


def test_dag_callback_alert_carries_the_reason(outbox: Outbox) -> None:
    context = {
        "dag": SimpleNamespace(dag_id="crm_sync"),
        "run_id": "manual__2026-11-21",
        "reason": "task_failure",
    }
    JobQueueFailureNotifier(to="erp-team@cronus.test").notify(context)
    [(_, message)] = outbox.messages()
    assert message["Subject"] == "[Airflow] crm_sync failed: task_failure"
    assert "/dags/crm_sync/runs/manual__2026-11-21'" in _body(message)


def test_no_recipient_is_an_error_not_a_silent_drop(outbox: Outbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DYNAMICS_ALERT_TO", raising=False)
    with pytest.raises(ValueError, match="DYNAMICS_ALERT_TO"):
        JobQueueFailureNotifier().notify(_task_context(RuntimeError("boom")))
    assert outbox.messages() == []


@pytest.mark.slow
def test_airflow_calls_the_notifier_when_a_task_fails(outbox: Outbox, airflow_env, tmp_path: Path) -> None:
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "failing_posting.py").write_text(
        textwrap.dedent(
            """
            from airflow.sdk import dag, task
            from airflow.sdk.exceptions import AirflowFailException

            from dynamics_jobqueue.notifiers import failure_notifier


            class PostingFailed(AirflowFailException):
                def __init__(self, message, queued_by):
                    super().__init__(message)
                    self.queued_by = queued_by


            @dag(
                schedule=None,
                default_args={
                    "retries": 0,
                    "on_failure_callback": [
                        failure_notifier(to="erp-team@cronus.test", user_addresses={"ADMIN": "admin@cronus.test"})
                    ],
                },
            )
            def failing_posting():
                @task
                def drain_salespost():
                    raise PostingFailed(ERROR, ["ADMIN"])

                drain_salespost()


            failing_posting()
            """
        ).replace("ERROR", repr(POSTING_ERROR))
    )
    result = airflow_env.run(
        "dags",
        "test",
        "failing_posting",
        extra_env={
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__API__BASE_URL": "https://airflow.cronus.test",
            "AIRFLOW_CONN_SMTP_DEFAULT": json.dumps(
                {
                    "conn_type": "smtp",
                    "host": "127.0.0.1",
                    "port": outbox.port,
                    "extra": {"disable_ssl": True, "disable_tls": True, "from_email": "airflow@cronus.test"},
                }
            ),
        },
    )
    messages = outbox.messages()
    assert len(messages) == 1, result.stdout[-3000:] + result.stderr[-3000:]
    envelope, message = messages[0]
    assert envelope["rcpt_tos"] == ["erp-team@cronus.test", "admin@cronus.test"]
    assert message["Subject"].startswith("[Airflow] failing_posting.drain_salespost failed: 2 document(s)")
    body = _body(message)
    assert "Sales Order 101005 (queued by JO): Quantity to Ship is 0 on every line. Fix: enter Qty. to Ship" in body
    assert "https://airflow.cronus.test/dags/failing_posting/runs/" in body
    assert "/tasks/drain_salespost" in body
