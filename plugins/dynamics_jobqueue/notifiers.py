"""Failure alerts of the job queue's DAGs: one email per failed task (or DAG run) through the smtp provider.

The reference system tells the user who queued a job queue entry when it ends in Error, and shows every failure
in the Job Queue Log Entries (docs/reference/dynamics-semantics.md). Here the equivalent is a mail that names the DAG,
the task, the run, what failed (the table mapping, document or mailbox: the tasks' exception messages name them, with
their counts and the fix for each error) and links to the task's log in the Airflow UI.

Wire it into a DAG with::

    from dynamics_jobqueue.notifiers import failure_notifier

    @dag(default_args={"on_failure_callback": [failure_notifier(to=["erp-team@contoso.com"])]}, ...)

Recipients: ``to`` of the notifier, else the setting ``alert_to`` (comma-separated, read when the alert is sent, not
at parse time), plus the users who queued the failed documents when the exception carries them (attribute
``queued_by``: user ids, resolved through ``user_addresses`` unless they already are addresses).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow.sdk import BaseNotifier

from dynamics_jobqueue import settings

if TYPE_CHECKING:
    from airflow.sdk import Context

#: Lines of the exception message shown in the mail; the rest is in the task log.
MAX_ERROR_LINES = 25
#: How the recipients are configured, for error messages (the setting ``alert_to``, see dynamics_jobqueue.settings).
ALERT_TO_ENV = "AIRFLOW__DYNAMICS_JOBQUEUE__ALERT_TO"


class JobQueueFailureNotifier(BaseNotifier):
    """Send a failure alert by SMTP (the smtp provider's :class:`~airflow.providers.smtp.hooks.smtp.SmtpHook`).

    Works as a task callback (``on_failure_callback`` of a task or of ``default_args``) and as a DAG callback
    (``on_failure_callback`` of the DAG, where Airflow passes the reason instead of an exception).

    :param to: recipient address(es) (templated); default the setting ``alert_to`` at send time.
    :param smtp_conn_id: the smtp provider's connection (default ``smtp_default``).
    :param from_email: the sender (templated); default the connection's ``from_email`` extra.
    :param user_addresses: Business Central user id -> email address, for the users who queued documents.
    :param notify_queued_by: also mail the users named in the exception's ``queued_by`` (default ``True``).
    :param max_error_lines: lines of the exception message in the mail (default :data:`MAX_ERROR_LINES`).
    :raises ValueError: when sent with no recipient at all (no ``to``, no the setting ``alert_to``, no user).
    """

    template_fields = ("to", "from_email")

    def __init__(
        self,
        *,
        to: str | Sequence[str] | None = None,
        smtp_conn_id: str = "smtp_default",
        from_email: str | None = None,
        user_addresses: Mapping[str, str] | None = None,
        notify_queued_by: bool = True,
        max_error_lines: int = MAX_ERROR_LINES,
    ) -> None:
        super().__init__()
        self.to = to
        self.smtp_conn_id = smtp_conn_id
        self.from_email = from_email
        self.user_addresses = dict(user_addresses or {})
        self.notify_queued_by = notify_queued_by
        self.max_error_lines = max_error_lines

    def notify(self, context: Context) -> None:
        """Build the alert from ``context`` and send it (one SMTP transaction)."""
        from airflow.providers.smtp.hooks.smtp import SmtpHook

        alert = FailureAlert.from_context(context, max_error_lines=self.max_error_lines)
        recipients = self.recipients(alert.queued_by)
        if not recipients:
            raise ValueError(
                f"no recipient for the failure alert of {alert.dag_id}: set `to`, {ALERT_TO_ENV} or DYNAMICS_ALERT_TO"
            )
        with SmtpHook(smtp_conn_id=self.smtp_conn_id) as smtp:
            smtp.send_email_smtp(
                to=recipients, subject=alert.subject, html_content=alert.html(), from_email=self.from_email
            )
        self.log.info("failure alert for %s sent to %d recipient(s)", alert.where, len(recipients))

    def recipients(self, queued_by: Iterable[str] = ()) -> list[str]:
        """The addresses of one alert, without duplicates, in order: ``to`` (or the setting ``alert_to``), users.

        :param queued_by: user ids (or addresses) of the users who queued the failed documents.
        """
        configured = self.to if self.to is not None else settings.alert_to()
        addresses = _split(configured)
        if self.notify_queued_by:
            for user in queued_by:
                address = self.user_addresses.get(user) or (user if "@" in user else None)
                if address:
                    addresses.append(address)
        return list(dict.fromkeys(addresses))


class FailureAlert:
    """What an alert says, taken from an Airflow callback context.

    :ivar dag_id: the DAG. :ivar task_id: the failed task (``None`` for a DAG callback without one).
    :ivar run_id: the DAG run. :ivar map_index: index of a mapped task instance (-1 when not mapped).
    :ivar label: the mapped instance's rendered label (e.g. the mailbox or mapping), when Airflow has one.
    :ivar try_number: the attempt that failed. :ivar error: the exception message or the DAG run's reason.
    :ivar error_type: the exception class name. :ivar queued_by: user ids from the exception's ``queued_by``.
    :ivar log_url: the task's log page (or the run's page) in the Airflow UI, under ``[api] base_url``.
    """

    def __init__(self, **fields: Any) -> None:
        self.dag_id: str = fields["dag_id"]
        self.task_id: str | None = fields.get("task_id")
        self.run_id: str = fields.get("run_id") or ""
        self.map_index: int = fields.get("map_index", -1)
        self.label: str | None = fields.get("label")
        self.try_number: int | None = fields.get("try_number")
        self.error: str = fields.get("error") or "no error message"
        self.error_type: str = fields.get("error_type") or "Failure"
        self.queued_by: list[str] = list(fields.get("queued_by") or [])
        self.log_url: str = fields.get("log_url") or ""
        self.console_url: str = fields.get("console_url") or ""
        self.max_error_lines: int = fields.get("max_error_lines", MAX_ERROR_LINES)

    @classmethod
    def from_context(cls, context: Mapping[str, Any], *, max_error_lines: int = MAX_ERROR_LINES) -> FailureAlert:
        """Read an Airflow callback context (task callback: ``ti`` and ``exception``; DAG callback: ``reason``)."""
        ti = context.get("ti") or context.get("task_instance")
        dag = context.get("dag")
        dag_run = context.get("dag_run")
        exception = context.get("exception")
        dag_id = str(getattr(ti, "dag_id", None) or getattr(dag, "dag_id", None) or getattr(dag_run, "dag_id", ""))
        run_id = str(context.get("run_id") or getattr(ti, "run_id", None) or getattr(dag_run, "run_id", ""))
        task_id = getattr(ti, "task_id", None)
        map_index = getattr(ti, "map_index", -1)
        if map_index is None:
            map_index = -1
        try_number = getattr(ti, "try_number", None)
        if exception is not None:
            error, error_type = str(exception), type(exception).__name__
        else:
            error, error_type = str(context.get("reason") or ""), "DAG run failed"
        return cls(
            dag_id=dag_id,
            task_id=task_id,
            run_id=run_id,
            map_index=map_index,
            label=getattr(ti, "rendered_map_index", None),
            try_number=try_number,
            error=error,
            error_type=error_type,
            queued_by=_split(getattr(exception, "queued_by", None)),
            log_url=_log_url(dag_id, run_id, task_id, map_index, try_number),
            console_url=_console_url(dag_id),
            max_error_lines=max_error_lines,
        )

    @property
    def where(self) -> str:
        """``dag_id.task_id[map_index]``, the way Airflow's UI names a task instance."""
        task = f".{self.task_id}" if self.task_id else ""
        mapped = f"[{self.label or self.map_index}]" if self.map_index >= 0 else ""
        return f"{self.dag_id}{task}{mapped}"

    @property
    def subject(self) -> str:
        """``[Airflow] <where> failed: <first line of the error>`` (at most 200 characters)."""
        first = self.error.strip().splitlines()[0] if self.error.strip() else self.error_type
        subject = f"[Airflow] {self.where} failed: {first}"
        return subject if len(subject) <= 200 else subject[:197] + "..."

    def error_lines(self) -> tuple[list[str], int]:
        """The first :attr:`max_error_lines` lines of the error and how many more the log holds."""
        lines = self.error.strip().splitlines()
        return lines[: self.max_error_lines], max(0, len(lines) - self.max_error_lines)

    def html(self) -> str:
        """The mail body: a table of what failed, the error lines (counts, records, fixes), the log link."""
        esc = html.escape
        rows = [("DAG", self.dag_id), ("Task", self.task_id or "-"), ("Run", self.run_id)]
        if self.map_index >= 0:
            rows.append(("Mapped instance", self.label or str(self.map_index)))
        if self.try_number:
            rows.append(("Attempt", str(self.try_number)))
        rows.append(("Error", self.error_type))
        if self.queued_by:
            rows.append(("Queued by", ", ".join(self.queued_by)))
        lines, more = self.error_lines()
        table = "".join(f"<tr><th align='left'>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
        more_note = f"<p>... {more} more line(s) in the task log.</p>" if more else ""
        link = f"<p><a href='{esc(self.log_url)}'>Open the task log in Airflow</a>: {esc(self.log_url)}</p>"
        if self.console_url:
            link += f"<p><a href='{esc(self.console_url)}'>Handle it in the console</a>: {esc(self.console_url)}</p>"
        return (
            f"<p>{esc(self.where)} failed.</p><table>{table}</table>"
            f"<pre>{esc(chr(10).join(lines))}</pre>{more_note}{link}"
        )


def failure_notifier(**kwargs: Any) -> JobQueueFailureNotifier:
    """A :class:`JobQueueFailureNotifier` for ``on_failure_callback=[failure_notifier(...)]`` (same arguments)."""
    return JobQueueFailureNotifier(**kwargs)


def failure_callbacks(**kwargs: Any) -> list[JobQueueFailureNotifier]:
    """The DAGs' ``on_failure_callback``: a failure mail when ``to`` or the setting ``alert_to`` names recipients.

    Without recipients the list is empty and failures surface in the Airflow UI only (a notifier with nobody to
    write to would fail on every task failure). Reads only the environment, so DAG files may call it at parse time.
    """
    if kwargs.get("to") is None and not settings.alert_to():
        return []
    return [failure_notifier(**kwargs)]


def _split(value: str | Iterable[str] | None) -> list[str]:
    """Addresses or user ids from a comma-separated string or an iterable; blanks dropped."""
    if not value:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    return [item.strip() for item in items if item and item.strip()]


# The operator console page where each DAG's failures are handled (retry, skip, remove from job queue ...).
_CONSOLE_PAGES = {"crm_sync": "sync", "mailbox_sync": "mailboxes"}


def _console_url(dag_id: str) -> str:
    """The console page for ``dag_id``'s failures (the posting DAGs: Documents to handle), or ``""``."""
    from airflow.sdk.configuration import conf

    page = _CONSOLE_PAGES.get(dag_id) or ("documents" if dag_id.endswith("_background_posting") else "")
    if not page:
        return ""
    base = conf.get("api", "base_url", fallback="http://localhost:8080/").rstrip("/")
    return f"{base}/plugin/dynamics-{page}"  # the console's page in the Airflow UI (react_apps)


def _log_url(dag_id: str, run_id: str, task_id: str | None, map_index: int, try_number: int | None) -> str:
    """The UI page of the task instance's log (or of the run), as the Task SDK builds ``ti.log_url``."""
    from airflow.sdk.configuration import conf

    base = conf.get("api", "base_url", fallback="http://localhost:8080/").rstrip("/")
    url = f"{base}/dags/{quote(dag_id)}/runs/{quote(run_id)}"
    if task_id:
        url += f"/tasks/{quote(task_id)}"
        if map_index >= 0:
            url += f"/mapped/{map_index}"
        if try_number:
            url += f"?try_number={try_number}"
    return url
