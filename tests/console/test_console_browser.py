"""Headless Chromium (Debian's, driven by Playwright) through every console page and action.

Each step asserts on what the page shows and on the state store afterwards, and saves a screenshot under the
test's artifact folder (``DYNAMICS_TEST_ARTIFACTS`` when set, else pytest's tmp dir). A dialog (``alert``) would
mean injected script ran: any dialog fails the test.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest
from console_support import CRM_USER_1, CRM_USER_2, CUSTOMER_MAPPING, HTML_SUBJECT, SCRIPT_NAME, Console

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = os.environ.get("DYNAMICS_CHROMIUM", "/usr/bin/chromium")
pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason=f"no Chromium at {CHROMIUM} (install_system_deps.sh)"),
]


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screenshots go."""
    configured = os.environ.get("DYNAMICS_TEST_ARTIFACTS")
    folder = Path(configured) / "console" if configured else tmp_path_factory.mktemp("console_screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser() -> Iterator[playwright_api.Browser]:
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield chromium
        chromium.close()


class Operator:
    """A signed-in browser tab: ``open`` a console page, ``shot`` it, ``click`` a button in a row."""

    def __init__(self, page: playwright_api.Page, console: Console, artifacts: Path) -> None:
        self.page = page
        self.console = console
        self.artifacts = artifacts
        self.dialogs: list[str] = []
        page.on("dialog", lambda dialog: (self.dialogs.append(dialog.message), dialog.dismiss()))

    def open(self, path: str) -> playwright_api.Page:
        response = self.page.goto(f"{self.console.console_url}{path}")
        assert response is not None and response.status == 200, path
        return self.page

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(self.artifacts / f"{name}.png"), full_page=True)

    def notice(self) -> str:
        return self.page.locator(".notice, .error").first.inner_text()


@pytest.fixture
def operator(browser: playwright_api.Browser, console: Console, artifacts: Path) -> Iterator[Operator]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    # The cookie the Airflow UI sets at sign-in; the console reads the same one.
    context.add_cookies([{"name": "_token", "value": console.token("admin"), "url": console.base_url}])
    user = Operator(context.new_page(), console, artifacts)
    yield user
    assert user.dialogs == [], f"script ran in the page: {user.dialogs}"
    context.close()


def test_job_queue_entries_and_actions(operator: Operator, console: Console) -> None:
    seed = console.seed
    page = operator.open("/job-queue")
    rows = page.locator("#job-queue-entries tbody tr")
    assert rows.count() >= 3
    assert "Sales Invoice 103001" in page.locator(f'tr[data-entry-id="{seed.ready_entry}"]').inner_text()
    operator.shot("01-job-queue-entries")

    page.locator(f'tr[data-entry-id="{seed.ready_entry}"] button', has_text="Remove from Job Queue").click()
    assert "Sales Invoice 103001 was removed from the job queue." in operator.notice()
    assert page.locator(f'tr[data-entry-id="{seed.ready_entry}"]').count() == 0
    operator.shot("02-removed-from-job-queue")
    assert console.query("SELECT count(*) FROM dynamics.job_queue_entries WHERE id = %s", (seed.ready_entry,)) == [(0,)]

    page = operator.open("/job-queue?mine=true")
    users = page.locator("#job-queue-entries tbody tr td:nth-child(5)").all_inner_texts()
    assert users and set(users) == {"admin"}
    assert page.locator(f'tr[data-entry-id="{seed.other_user_entry}"]').count() == 0
    operator.shot("03-my-job-queue")

    page.locator(f'tr[data-entry-id="{seed.error_entry}"] a', has_text="Show Error").click()
    assert page.locator("#error-message").inner_text() == f"Vendor {SCRIPT_NAME} is blocked for posting."
    assert "Internal_DataNotFound" in page.locator("#log-entries").inner_text()
    operator.shot("04-show-error")


def test_documents_to_handle_retry(operator: Operator, console: Console) -> None:
    entry = console.seed.error_entry
    page = operator.open("/documents")
    row = page.locator(f'tr[data-entry-id="{entry}"]')
    assert "Purchase Invoice 108001" in row.inner_text()
    assert f"Vendor {SCRIPT_NAME} is blocked for posting." in row.inner_text()  # shown as text, not run
    operator.shot("05-documents-to-handle")
    row.locator("button", has_text="Retry").click()
    assert "Purchase Invoice 108001 is Ready and will be posted again." in operator.notice()
    assert page.locator(f'tr[data-entry-id="{entry}"]').count() == 0
    operator.shot("06-documents-retried")
    assert console.query("SELECT status, attempts FROM dynamics.job_queue_entries WHERE id = %s", (entry,)) == [
        ("Ready", 0)
    ]


def test_job_queue_log_entries_filters(operator: Operator) -> None:
    page = operator.open("/log")
    assert page.locator("#log-entries tbody tr").count() == 2
    page.select_option("select[name=status]", "Error")
    page.click("button:has-text('Filter')")
    statuses = page.locator("#log-entries tbody tr td:nth-child(3)").all_inner_texts()
    assert statuses == ["Error"]
    page.fill("input[name=user_id]", "viewer")
    page.click("button:has-text('Filter')")
    assert page.locator("#log-entries tbody tr").inner_text() == "No log entries match."
    operator.shot("07-log-entries-filtered")


def test_integration_sync_errors_and_couplings(operator: Operator, console: Console) -> None:
    failing, skipped = console.seed.error_source_ids
    page = operator.open(f"/sync?mapping={CUSTOMER_MAPPING}")
    assert page.locator("#sync-runs tbody tr").count() == 2
    assert page.locator("#runs-chart rect").count() >= 8
    assert SCRIPT_NAME in page.locator(f'tr[data-source-id="{failing}"]').inner_text()
    operator.shot("08-integration-sync")

    def error_state(source_id: str) -> tuple[int, bool]:
        rows = console.query(
            "SELECT error_count, skipped FROM dynamics.sync_record_error WHERE source_id = %s", (source_id,)
        )
        return rows[0][0], rows[0][1]

    page.locator(f'tr[data-source-id="{failing}"] button', has_text="Skip").click()
    assert "is skipped" in operator.notice()
    assert error_state(failing)[1] is True
    page.locator(f'tr[data-source-id="{failing}"] button', has_text="Un-skip").click()
    assert "is no longer skipped" in operator.notice()
    assert error_state(failing) == (0, False)
    page.locator(f'tr[data-source-id="{skipped}"] button', has_text="Retry").click()
    assert "will be retried on the next run" in operator.notice()
    assert error_state(skipped) == (0, False)
    operator.shot("09-sync-errors-actions")

    erp_id = console.seed.coupling_erp_ids[0]
    page.fill("input[name=search]", "20000")
    page.click("button:has-text('Show')")
    assert page.locator("#couplings tbody tr").count() == 1
    page.locator(f'tr[data-erp-id="{erp_id}"] button', has_text="Uncouple").click()
    assert "is no longer coupled" in operator.notice()
    assert console.query("SELECT count(*) FROM dynamics.sync_coupling WHERE erp_id = %s", (erp_id,)) == [(0,)]
    (erp_id, number), (crm_id, account_number) = console.seed.customers[2], console.seed.accounts[2]
    page.fill("#couple-form input[name=erp_id]", erp_id)
    page.fill("#couple-form input[name=crm_id]", crm_id)
    page.click("#couple-form button")
    assert "is coupled to" in operator.notice()
    coupled = console.query("SELECT crm_id, erp_key, crm_key FROM dynamics.sync_coupling WHERE erp_id = %s", (erp_id,))
    assert coupled == [(crm_id, number, account_number)]
    operator.shot("10-couplings")


def test_mailboxes_actions(operator: Operator, console: Console) -> None:
    sales, support = console.seed.mailbox_ids
    page = operator.open("/mailboxes")
    assert page.locator(f"#mailbox-{sales} .subject").first.inner_text() == HTML_SUBJECT
    operator.shot("11-mailboxes")

    console.query("UPDATE dynamics.mailbox_workload SET next_sync_at = now() + interval '1 day' RETURNING 1")
    page.locator(f"#mailbox-{sales} button", has_text="Sync now").click()
    assert "workloads of mailbox" in operator.notice()
    due = console.query(
        "SELECT count(*) FROM dynamics.mailbox_workload WHERE mailbox_id = %s AND next_sync_at <= now()", (sales,)
    )
    assert due == [(3,)]

    # Remap the support mailbox to the sales mailbox's user: refused until confirmed explicitly.
    page.fill(f"#mailbox-{support} input[name=crm_user_id]", str(CRM_USER_1))
    page.locator(f"#mailbox-{support} button", has_text="Remap").click()
    assert "already has mailbox sales@cronus.example" in page.locator("#remap-conflict").inner_text()
    operator.shot("12-remap-confirmation")
    mapped = "SELECT mailbox_id, crm_user_id FROM dynamics.mailbox ORDER BY mailbox_id"
    assert console.query(mapped) == [(sales, CRM_USER_1), (support, CRM_USER_2)]
    page.click("#confirm-remap")
    assert f"is mapped to CRM user {CRM_USER_1}" in operator.notice()
    assert console.query(mapped) == [(sales, None), (support, CRM_USER_1)]
    operator.shot("13-remapped")

    # Test & Enable queues a mailbox_sync DAG run (the request itself talks to no mail server) and links to it.
    page.locator(f"#mailbox-{sales} button", has_text="Test & Enable").click()
    assert "DAG run manual__" in operator.notice() and "of mailbox_sync is queued." in operator.notice()
    link = page.locator("#dag-run-link")
    href = link.get_attribute("href")
    assert href is not None and href.startswith(f"{console.base_url}/dags/mailbox_sync/runs/manual__")
    run_id = unquote(href.rsplit("/", 1)[1])
    run = console.dag_run("mailbox_sync", run_id)
    assert run["conf"] == {"test_and_enable": [sales]}
    assert (run["triggered_by"], run["triggering_user_name"]) == ("ui", "admin")
    operator.shot("14-test-and-enable")
    link.click()  # the Airflow UI's page of the run, in the whole window (not inside the console's frame)
    page.wait_for_url(href)
    page.get_by_text(run_id).first.wait_for()
    operator.shot("14b-test-and-enable-dag-run")


def test_console_inside_the_airflow_ui(operator: Operator, console: Console) -> None:
    # The external view: the Airflow UI's own page frames the console, signed in with the same cookie.
    operator.page.goto(f"{console.base_url}/plugin/dynamics-job-queue")
    frame = operator.page.frame_locator("iframe")
    assert frame.locator("h1").inner_text() == "Job Queue Entries"
    assert frame.locator("#job-queue-entries tbody tr").count() >= 1
    operator.shot("15-inside-the-airflow-ui")
