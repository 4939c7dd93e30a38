"""Incremental runs: only records changed since the watermark are read, and only changed values are written."""

from __future__ import annotations

import logging

import pytest


@pytest.fixture
def synced(sync):
    sync.run(run_id="first")
    sync.reset_stats()
    return sync


def test_an_erp_edit_is_the_only_write_of_the_next_run(wide_overlap, synced) -> None:
    adatum = synced.customer("10000")
    synced.erp_user.update("customers", adatum["id"], {"displayName": "Adatum Corporation Ltd", "city": "Ely"})
    synced.reset_stats()
    results = synced.run(run_id="second")
    counts = synced.counts(results)
    assert counts["CUSTOMER to CRM"] == {"modified": 1}
    # BC renames the customer's contacts too, so CONTACT sees a changed person whose mapped values are the same.
    # Every other record of the first run is read again (wide_overlap) and neither processed nor counted.
    others = {name: c for name, c in counts.items() if name != "CUSTOMER to CRM" and set(c) - {"unchanged"}}
    assert others == {}
    account = synced.account("10000")
    assert (account["name"], account["address1_city"]) == ("Adatum Corporation Ltd", "Ely")
    writes = {route: n for route, n in synced.stats().items() if not route.startswith("GET")}
    assert writes == {"POST dataverse/$batch": 1}


def test_a_crm_edit_flows_to_the_erp_and_does_not_come_back(synced) -> None:
    account = synced.account("20000")
    synced.crm_user.upsert("accounts", account["accountid"], {"telephone1": "+44 20 7946 0000"}, mode="update")
    counts = synced.counts(synced.run(run_id="second"))
    assert counts["CUSTOMER from CRM"] == {"modified": 1} and counts["CUSTOMER to CRM"] == {}
    assert synced.customer("20000")["phoneNumber"] == "+44 20 7946 0000"
    # The ERP record the sync just wrote is an echo: the next run neither writes nor counts it.
    assert all(not c for c in synced.counts(synced.run(run_id="third")).values())


def test_changes_made_by_the_integration_user_in_the_crm_are_ignored(synced) -> None:
    account = synced.account("30000")
    synced.dv.upsert("accounts", account["accountid"], {"telephone1": "0000"}, mode="update")
    counts = synced.counts(synced.run("CUSTOMER", run_id="second"))
    assert counts == {"CUSTOMER to CRM": {}, "CUSTOMER from CRM": {}}
    assert synced.customer("30000")["phoneNumber"] != "0000"


def test_an_edit_of_an_unmapped_field_is_unchanged_without_a_write(synced) -> None:
    adatum = synced.customer("10000")
    synced.erp_user.update("customers", adatum["id"], {"taxRegistrationNumber": "GB123456789"})
    synced.reset_stats()
    counts = synced.counts(synced.run("CUSTOMER", run_id="second"))
    assert counts["CUSTOMER to CRM"] == {"unchanged": 1}
    assert not [route for route in synced.stats() if not route.startswith("GET")]


def test_full_sync_reads_everything_and_still_writes_nothing_unchanged(synced) -> None:
    counts = synced.counts(synced.run("CURRENCY", "CUSTOMER", run_id="full", full_sync=True))
    assert counts["CURRENCY to CRM"] == {"unchanged": 47}
    assert counts["CUSTOMER to CRM"] == {"unchanged": 7}
    # Every account was last written by the sync (Northwind's and Litware's numbers were written back), so no
    # CRM record is a candidate: its values came from the ERP.
    assert counts["CUSTOMER from CRM"] == {}
    assert not [route for route in synced.stats() if not route.startswith("GET")]


def test_a_new_record_on_each_side_is_inserted_and_coupled(synced) -> None:
    created = synced.erp_user.create("customers", {"number": "60000", "displayName": "Fabrikam", "city": "Hull"})
    synced.crm_user.create("accounts", {"name": "Woodgrove Bank", "address1_city": "York", "customertypecode": 3})
    counts = synced.counts(synced.run("CUSTOMER", run_id="second"))
    assert counts == {"CUSTOMER to CRM": {"inserted": 1}, "CUSTOMER from CRM": {"inserted": 1}}
    assert synced.account("60000")["name"] == "Fabrikam"
    woodgrove = synced.only(synced.crm("accounts"), name="Woodgrove Bank")
    assert synced.customer(woodgrove["accountnumber"])["city"] == "York"
    assert created["id"] in {r[0] for r in synced.sql("SELECT erp_id FROM dynamics.sync_coupling")}


def test_task_logs_show_progress_per_page(synced, caplog) -> None:
    caplog.set_level(logging.INFO, logger="dynamics_jobqueue.sync.runner")
    synced.run("CURRENCY", run_id="again", full_sync=True)
    assert "CURRENCY to CRM: page 1, 47/47 records" in caplog.text
    assert "CURRENCY to CRM: inserted 0, modified 0, deleted 0, unchanged 47, skipped 0, failed 0" in caplog.text
