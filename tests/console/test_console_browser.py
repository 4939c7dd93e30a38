"""Headless Chromium (Debian's, driven by Playwright) through the console's React app inside the Airflow UI.

The Airflow UI itself (``/plugin/dynamics-<page>``, one api-server for the module) renders each page: no iframe, in
its light and dark theme. Each step asserts on what the page shows and on the state store afterwards, and saves a
screenshot under the test's artifact folder (``DYNAMICS_TEST_ARTIFACTS`` when set, else pytest's basetemp; each
path is printed in the test log). A dialog (``alert``) would mean injected script ran: any dialog fails the test.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from console_support import (
    CRM_USER_1,
    CRM_USER_2,
    CUSTOMER_MAPPING,
    HTML_SUBJECT,
    LOG_ENTRY_RUNS,
    SCRIPT_NAME,
    Console,
)

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = os.environ.get("DYNAMICS_CHROMIUM", "/usr/bin/chromium")
pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason=f"no Chromium at {CHROMIUM} (install_system_deps.sh)"),
]

#: (page key, its title) of every console page in the Airflow UI's navigation.
PAGES = [
    ("job-queue", "Job Queue Entries"),
    ("my-job-queue", "My Job Queue"),
    ("documents", "Documents to handle"),
    ("job-queue-log", "Job Queue Log Entries"),
    ("sync", "Integration Sync"),
    ("mailboxes", "Mailboxes"),
    ("trends", "Trends"),
]


def shown(first: int, last: int, total: int) -> str:
    """A table's range line, as the console writes it ("51\u201375 of 600", an en dash)."""
    return f"{first}\u2013{last} of {total}"


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
    """A signed-in browser tab on the Airflow UI: ``open`` a console page, ``shot`` it, read its notice."""

    def __init__(self, page: playwright_api.Page, console: Console, artifacts: Path) -> None:
        self.page = page
        self.console = console
        self.artifacts = artifacts
        self.dialogs: list[str] = []
        page.on("dialog", lambda dialog: (self.dialogs.append(dialog.message), dialog.dismiss()))

    def open(self, key: str, query: str = "") -> playwright_api.Page:
        response = self.page.goto(f"{self.console.base_url}/plugin/dynamics-{key}{query}")
        assert response is not None and response.status == 200, key
        self.page.locator(f'[data-testid=dynamics-console][data-page="{key}"]').wait_for()
        return self.page

    def shot(self, name: str) -> None:
        path = self.artifacts / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        print(f"screenshot: {path}")

    def notice(self) -> str:
        locator = self.page.locator("[data-testid=notice], [data-testid=error]").first
        locator.wait_for()
        return locator.inner_text()

    def close_notice(self) -> None:
        self.page.get_by_role("button", name="Close").first.click()

    def wait_range(self, table: str, text: str) -> None:
        """Wait until the table's range line reads ``text`` (it reads "0 of 0" while the first page loads)."""
        self.page.locator(f"#{table} [data-testid=range]", has_text=text).wait_for()


def _context(browser: playwright_api.Browser, console: Console, theme: str) -> playwright_api.BrowserContext:
    context = browser.new_context(viewport={"width": 1500, "height": 1000}, color_scheme=theme)  # type: ignore[arg-type]
    # The cookie the Airflow UI sets at sign-in, and the UI's own theme choice (next-themes' "theme" key).
    context.add_cookies([{"name": "_token", "value": console.token("admin"), "url": console.base_url}])
    context.add_init_script(f"window.localStorage.setItem('theme', '{theme}')")
    return context


@pytest.fixture
def operator(browser: playwright_api.Browser, console: Console, artifacts: Path) -> Iterator[Operator]:
    context = _context(browser, console, "light")
    user = Operator(context.new_page(), console, artifacts)
    yield user
    assert user.dialogs == [], f"script ran in the page: {user.dialogs}"
    context.close()


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_every_page_renders_inside_the_airflow_ui(
    browser: playwright_api.Browser, console: Console, artifacts: Path, theme: str
) -> None:
    context = _context(browser, console, theme)
    user = Operator(context.new_page(), console, artifacts)
    try:
        for key, title in PAGES:
            page = user.open(key)
            assert page.locator("h1").filter(has_text=title).count() == 1
            assert page.locator("iframe").count() == 0  # rendered by the Airflow UI itself, not framed
            # The Airflow UI's own navigation around it: the link to its Dags list.
            assert page.locator("a[href$='/dags']").count() >= 1
            assert ("dark" in (page.locator("html").get_attribute("class") or "")) is (theme == "dark")
            page.wait_for_load_state("networkidle")
            if key == "trends":  # charts of the last 14 days, every day shown (zero where nothing happened)
                for chart in ("trend-sync", "trend-posting", "trend-mailbox"):
                    page.locator(f"[data-testid={chart}] canvas").wait_for()
                assert page.locator("[data-testid=trend-sync]").inner_text().endswith("12 in the period")
            user.shot(f"page-{key}-{theme}")
        assert user.dialogs == []
    finally:
        context.close()


def test_job_queue_entries_and_actions(operator: Operator, console: Console) -> None:
    seed = console.seed
    page = operator.open("job-queue")
    row = page.locator(f'tr[data-entry-id="{seed.ready_entry}"]')
    assert "Sales Invoice 103001" in row.inner_text()
    operator.wait_range("job-queue-entries", shown(1, 3, 3))
    operator.shot("01-job-queue-entries")

    row.get_by_role("button", name="Remove from Job Queue").click()
    row.get_by_role("button", name="Yes, remove from job queue").click()
    assert "Sales Invoice 103001 was removed from the job queue." in operator.notice()
    page.locator(f'tr[data-entry-id="{seed.ready_entry}"]').wait_for(state="detached")
    operator.shot("02-removed-from-job-queue")
    assert console.query("SELECT count(*) FROM dynamics.job_queue_entries WHERE id = %s", (seed.ready_entry,)) == [(0,)]

    page = operator.open("my-job-queue")
    page.locator(f'tr[data-entry-id="{seed.error_entry}"]').wait_for()
    assert page.locator(f'tr[data-entry-id="{seed.other_user_entry}"]').count() == 0
    operator.shot("03-my-job-queue")

    page.locator(f'tr[data-entry-id="{seed.error_entry}"]').get_by_role("button", name="Show Error").click()
    page.locator("#error-message").wait_for()
    assert page.locator("#error-message").inner_text() == f"Vendor {SCRIPT_NAME} is blocked for posting."
    assert "Internal_DataNotFound" in page.locator("#log-entries").inner_text()
    # The attempt links to the drain's DAG run and to its task log (of that try) in the Airflow UI.
    run_id, try_number = LOG_ENTRY_RUNS["Error"]
    run = f"/dags/purchase_background_posting/runs/{quote(run_id, safe='')}"
    links = page.locator("#log-entries a[data-testid=run-link]")
    assert [links.nth(i).get_attribute("href") for i in range(links.count())] == [
        run,
        f"{run}/tasks/drain?try_number={try_number}",
    ]
    operator.shot("04-show-error")


def test_documents_to_handle_retry(operator: Operator, console: Console) -> None:
    entry = console.seed.error_entry
    page = operator.open("documents")
    row = page.locator(f'tr[data-entry-id="{entry}"]')
    assert "Purchase Invoice 108001" in row.inner_text()
    assert f"Vendor {SCRIPT_NAME} is blocked for posting." in row.inner_text()  # shown as text, not run
    operator.shot("05-documents-to-handle")
    row.get_by_role("button", name="Retry").click()
    assert "Purchase Invoice 108001 is Ready and will be posted again." in operator.notice()
    page.locator(f'tr[data-entry-id="{entry}"]').wait_for(state="detached")
    operator.shot("06-documents-retried")
    assert console.query("SELECT status, attempts FROM dynamics.job_queue_entries WHERE id = %s", (entry,)) == [
        ("Ready", 0)
    ]


def test_job_queue_log_entries_filters(operator: Operator) -> None:
    page = operator.open("job-queue-log")
    operator.wait_range("log", shown(1, 2, 2))
    # Each attempt links to the task log of the drain that ran it; a posting task's extra link (?run_id=) lists
    # the attempts of its DAG run only.
    run_id, try_number = LOG_ENTRY_RUNS["Success"]
    task_log = f"/dags/sales_background_posting/runs/{quote(run_id, safe='')}/tasks/drain?try_number={try_number}"
    page.locator(f"#log a[data-testid=run-link][href='{task_log}']").wait_for()
    page = operator.open("job-queue-log", f"?run_id={quote(run_id, safe='')}")
    operator.wait_range("log", shown(1, 1, 1))
    assert page.locator("#log tbody [data-status]").all_inner_texts() == ["Success"]
    assert f"Attempts of DAG run {run_id}" in page.locator("[data-testid=dynamics-console]").inner_text()
    operator.shot("07a-log-entries-of-a-dag-run")
    page = operator.open("job-queue-log")
    operator.wait_range("log", shown(1, 2, 2))
    page.select_option("select[name=status]", "Error")
    page.locator("#log [data-testid=range]", has_text=shown(1, 1, 1)).wait_for()
    assert page.locator("#log tbody [data-status]").all_inner_texts() == ["Error"]
    page.fill("input[name=user_id]", "viewer")
    page.locator("#log tbody", has_text="No log entries match.").wait_for()
    operator.shot("07-log-entries-filtered")


def test_integration_sync_errors_couplings_and_paging(operator: Operator, console: Console) -> None:
    failing, skipped = console.seed.error_source_ids
    page = operator.open("sync", f"?mapping={CUSTOMER_MAPPING}")
    page.locator(f'tr[data-source-id="{failing}"]').wait_for()
    operator.wait_range("sync-runs", shown(1, 2, 2))
    assert SCRIPT_NAME in page.locator(f'tr[data-source-id="{failing}"]').inner_text()
    reason = page.locator(f'tr[data-source-id="{skipped}"] [data-testid=skipped-reason]').inner_text()
    assert "Skipped after failing 2 times; last error: Customer 10000: the account name is too long" in reason
    # Links both ways: a run links to its DAG run and its mapping's task log in the Airflow UI.
    assert (
        page.locator("#sync-runs a[data-testid=run-link]").first.get_attribute("href")
        == "/dags/crm_sync/runs/manual__1"
    )
    operator.shot("08-integration-sync")

    def error_state(source_id: str) -> tuple[int, bool]:
        rows = console.query(
            "SELECT error_count, skipped FROM dynamics.sync_record_error WHERE source_id = %s", (source_id,)
        )
        return rows[0][0], rows[0][1]

    page.locator(f'tr[data-source-id="{failing}"]').get_by_role("button", name="Skip").click()
    assert "is skipped" in operator.notice()
    assert error_state(failing)[1] is True
    operator.close_notice()
    page.locator(f'tr[data-source-id="{failing}"]').get_by_role("button", name="Un-skip").click()
    assert "is no longer skipped" in operator.notice()
    assert error_state(failing) == (0, False)
    operator.close_notice()
    page.locator(f'tr[data-source-id="{skipped}"]').get_by_role("button", name="Retry").click()
    assert "will be retried on the next run" in operator.notice()
    assert error_state(skipped) == (0, False)
    operator.shot("09-sync-errors-actions")
    operator.close_notice()

    erp_id = console.seed.coupling_erp_ids[0]
    page.fill("input[name=search]", "20000")
    page.locator("#couplings [data-testid=range]", has_text=shown(1, 1, 1)).wait_for()
    row = page.locator(f'tr[data-erp-id="{erp_id}"]')
    row.get_by_role("button", name="Uncouple").click()
    assert console.query("SELECT count(*) FROM dynamics.sync_coupling WHERE erp_id = %s", (erp_id,)) == [(1,)]
    row.get_by_role("button", name="Yes, uncouple").click()
    assert "is no longer coupled" in operator.notice()
    assert console.query("SELECT count(*) FROM dynamics.sync_coupling WHERE erp_id = %s", (erp_id,)) == [(0,)]
    operator.close_notice()
    (erp_id, number), (crm_id, account_number) = console.seed.customers[2], console.seed.accounts[2]
    page.select_option("select[name=couple-mapping]", CUSTOMER_MAPPING)
    page.fill("#couple-form input[name=erp_id]", erp_id)
    page.fill("#couple-form input[name=crm_id]", crm_id)
    page.locator("#couple-form").get_by_role("button", name="Couple").click()
    assert "is coupled to CRM record" in operator.notice()
    coupled = console.query("SELECT crm_id, erp_key, crm_key FROM dynamics.sync_coupling WHERE erp_id = %s", (erp_id,))
    assert coupled == [(crm_id, number, account_number)]
    operator.shot("10-couplings")

    # Paging past 500 rows: 600 couplings of one mapping, 500 per page, the second page shows the rest.
    console.query(
        "INSERT INTO dynamics.sync_coupling (mapping, erp_id, crm_id, erp_key)"
        " SELECT 'PAGING', gen_random_uuid()::text, gen_random_uuid()::text, lpad(n::text, 4, '0')"
        " FROM generate_series(1, 600) n RETURNING 1"
    )
    page = operator.open("sync", "?mapping=PAGING")
    page.locator("#couplings [data-testid=range]", has_text=shown(1, 25, 600)).wait_for()
    page.locator("#couplings select[aria-label='Rows per page']").select_option("500")
    page.locator("#couplings [data-testid=range]", has_text=shown(1, 500, 600)).wait_for()
    first_key = page.locator("#couplings tbody tr").first.locator("td").nth(1)
    page.locator("#couplings th[data-sort=erp_key]").click()  # sorted by ERP key, ascending
    page.locator("#couplings th[data-sort=erp_key]", has_text="▲").wait_for()
    page.locator("#couplings tbody tr").first.locator("td", has_text="0001").wait_for()
    page.locator("#couplings").get_by_role("button", name="Next").click()
    page.locator("#couplings [data-testid=range]", has_text=shown(501, 600, 600)).wait_for()
    page.locator("#couplings tbody tr").first.locator("td", has_text="0501").wait_for()
    assert page.locator("#couplings tbody tr").count() == 100
    page.locator("#couplings th[data-sort=erp_key]").click()  # descending, back to the first page
    page.locator("#couplings [data-testid=range]", has_text=shown(1, 500, 600)).wait_for()
    page.locator("#couplings tbody tr").first.locator("td", has_text="0600").wait_for()
    assert first_key.inner_text() == "0600"
    operator.shot("10b-couplings-paged-past-500")


def test_mailboxes_actions(operator: Operator, console: Console) -> None:
    sales, support = console.seed.mailbox_ids
    page = operator.open("mailboxes")
    page.locator("#mailbox-messages .subject").first.wait_for()
    assert page.locator("#mailbox-messages .subject").first.inner_text() == HTML_SUBJECT
    assert "Not run" in page.locator(f"#mailbox-{sales}").inner_text()
    operator.shot("11-mailboxes")

    console.query("UPDATE dynamics.mailbox_workload SET next_sync_at = now() + interval '1 day' RETURNING 1")
    page.locator(f"#mailbox-{sales}").get_by_role("button", name="Sync now").click()
    assert "workloads of mailbox" in operator.notice()
    due = console.query(
        "SELECT count(*) FROM dynamics.mailbox_workload WHERE mailbox_id = %s AND next_sync_at <= now()", (sales,)
    )
    assert due == [(3,)]
    operator.close_notice()

    # Remap the support mailbox to the sales mailbox's user, picked from the CRM users: refused until confirmed.
    box = page.locator(f"#mailbox-{support}")
    box.locator("input[name=crm-user-search]").fill("JO@")
    box.locator(f"select[name=crm_user_id] option[value='{CRM_USER_1}']").wait_for(state="attached")
    box.locator("select[name=crm_user_id]").select_option(str(CRM_USER_1))
    box.get_by_role("button", name="Remap", exact=True).click()
    assert "already has mailbox sales@cronus.example" in box.locator("#remap-conflict").inner_text()
    operator.shot("12-remap-confirmation")
    mapped = "SELECT mailbox_id, crm_user_id FROM dynamics.mailbox ORDER BY mailbox_id"
    assert console.query(mapped) == [(sales, CRM_USER_1), (support, CRM_USER_2)]
    assert "request its approval below" in operator.notice()
    operator.close_notice()
    # Confirmed, the remap waits for approval as a required action (mailbox_remap_approval): nothing changes yet,
    # and the mailbox shows the pending request with a link to the task's Required Actions tab.
    box.get_by_role("button", name="Request approval").click()
    assert "waits for approval in Required Actions" in operator.notice()
    assert console.query(mapped) == [(sales, CRM_USER_1), (support, CRM_USER_2)]
    [(status, requested_by, run_id)] = console.query(
        "SELECT status, requested_by, dag_run_id FROM dynamics.mailbox_remap_request"
    )
    assert (status, requested_by) == ("pending", "admin")
    request = box.locator("[data-testid=remap-request][data-request-status=pending]")
    assert "Pending approval" in request.inner_text() and "requested by admin" in request.inner_text()
    assert request.locator("[data-testid=required-action-link]").get_attribute("href") == (
        f"/dags/mailbox_remap_approval/runs/{quote(run_id, safe='')}/tasks/approve_remap/required_actions"
    )
    operator.shot("13-remap-awaiting-approval")
    operator.close_notice()

    # Test & Enable queues a mailbox_sync DAG run (the request itself talks to no mail server) and links to it.
    page.locator(f"#mailbox-{sales}").get_by_role("button", name="Test & Enable").click()
    assert "of mailbox_sync is queued." in operator.notice()
    link = page.locator("[data-testid=dag-run-link]")
    href = link.get_attribute("href")
    assert href is not None and href.startswith("/dags/mailbox_sync/runs/manual__")
    run_id = href.rsplit("/", 1)[1].replace("%3A", ":").replace("%2B", "+")
    run = console.dag_run("mailbox_sync", run_id)
    assert run["conf"] == {"test_and_enable": [sales]}
    assert (run["triggered_by"], run["triggering_user_name"]) == ("rest_api", "admin")
    operator.shot("14-test-and-enable")
    link.click()  # the Airflow UI's page of the run, in the same single-page app
    page.wait_for_url(f"**{href}")
    page.get_by_text(run_id).first.wait_for()
    operator.shot("14b-test-and-enable-dag-run")


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_mailboxes_show_a_pending_and_a_decided_remap_request(
    browser: playwright_api.Browser, console: Console, artifacts: Path, theme: str
) -> None:
    """Each mailbox shows its latest remap request: the support mailbox's waits for approval (who asked, when,
    the link to the approval task's Required Actions tab), the sales mailbox's was rejected (by whom, when)."""
    from dynamics_jobqueue.mailbox import records

    sales, support = console.seed.mailbox_ids
    pending = records.request_remap(
        console.store, support, CRM_USER_1, reason="CRM user 1 already has mailbox sales", requested_by="operator"
    )
    records.set_remap_run(console.store, pending, f"manual__pending-{theme}")
    rejected = records.request_remap(
        console.store, sales, CRM_USER_2, reason="CRM user 2 already has mailbox support", requested_by="admin"
    )
    records.set_remap_run(console.store, rejected, f"manual__rejected-{theme}")
    records.decide_remap(console.store, rejected, approved=False, decided_by="operator")

    context = _context(browser, console, theme)
    user = Operator(context.new_page(), console, artifacts)
    try:
        page = user.open("mailboxes")
        waiting = page.locator(f"#mailbox-{support} [data-testid=remap-request]")
        waiting.wait_for()
        assert waiting.get_attribute("data-request-status") == "pending"
        text = waiting.inner_text()
        assert f"Remap to CRM user {CRM_USER_1}, requested by operator on " in text
        assert "Waiting for approval in Airflow's Required Actions" in text
        assert waiting.locator("[data-testid=required-action-link]").get_attribute("href") == (
            f"/dags/mailbox_remap_approval/runs/manual__pending-{theme}/tasks/approve_remap/required_actions"
        )
        decided = page.locator(f"#mailbox-{sales} [data-testid=remap-request]")
        assert decided.get_attribute("data-request-status") == "rejected"
        assert "requested by admin" in decided.inner_text()
        assert (
            decided.locator("[data-testid=remap-decision]")
            .inner_text()
            .startswith("Rejected (nothing changed) by operator on ")
        )
        assert decided.locator("[data-testid=required-action-link]").count() == 0
        user.shot(f"13c-remap-requests-{theme}")
        assert user.dialogs == []
    finally:
        context.close()


def test_viewer_sees_no_actions(browser: playwright_api.Browser, console: Console, artifacts: Path) -> None:
    context = browser.new_context(viewport={"width": 1500, "height": 1000})
    context.add_cookies([{"name": "_token", "value": console.token("viewer"), "url": console.base_url}])
    user = Operator(context.new_page(), console, artifacts)
    try:
        page = user.open("sync")
        page.locator("text=(read only)").wait_for()
        assert page.locator("#couple-form").count() == 0
        assert page.get_by_role("button", name="Uncouple").count() == 0
        user.shot("15-viewer-read-only")
    finally:
        context.close()
