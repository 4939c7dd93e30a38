"""Crash safety: a worker killed between the writes and the commit leaves nothing the next run cannot finish
without duplicates; throttling (429 with Retry-After) changes nothing but the time taken."""

from __future__ import annotations

from collections import Counter

import pytest


def crash(sync, mapping: str, point: str = "to_crm.batch.answered") -> None:
    sync.crash(mapping, point=point)


def twins(records, field: str) -> dict:
    return {value: n for value, n in Counter(r.get(field) for r in records).items() if n > 1}


def test_a_crash_after_the_crm_writes_is_completed_by_the_next_run_without_twins(sync) -> None:
    sync.run("CURRENCY", "SALESPEOPLE", run_id="first")
    crash(sync, "CUSTOMER")
    assert sync.coupled("CUSTOMER") == 0  # the accounts were written, the couplings never committed
    assert sync.account("10000")["name"] == "Adatum Corporation"
    assert sync.sql("SELECT status FROM dynamics.sync_job WHERE run_id = 'crashed'") == [("running",)]

    counts = sync.counts(sync.run("CUSTOMER", run_id="rerun"))
    # Found by the alternate key their pending couplings name, and coupled before the run: nothing to write.
    assert counts["CUSTOMER to CRM"] == {}
    assert counts["CUSTOMER from CRM"] == {"inserted": 2}
    assert twins(sync.crm("accounts"), "accountnumber") == {}
    assert sync.coupled("CUSTOMER") == 7
    assert sync.sql("SELECT status FROM dynamics.sync_job WHERE run_id = 'crashed'") == [("interrupted",)]
    assert all(not c for c in sync.counts(sync.run("CUSTOMER", run_id="third")).values())


def test_a_crash_after_the_erp_creates_couples_the_new_records_on_both_sides(sync) -> None:
    sync.run("CURRENCY", "SALESPEOPLE", run_id="first")
    crash(sync, "CUSTOMER", "from_crm.batch.answered")  # the ERP->CRM page committed, then the CRM->ERP creates
    northwind = [c for c in sync.erp("customers") if c["displayName"] == "Northwind Traders"]
    assert len(northwind) == 1 and sync.coupled("CUSTOMER") == 5

    counts = sync.counts(sync.run("CUSTOMER", run_id="rerun"))
    # The two customers created before the crash are found by the keys their pending couplings name, coupled
    # to their accounts and get their number written back, instead of being created again on either side.
    assert counts == {"CUSTOMER to CRM": {}, "CUSTOMER from CRM": {}}
    assert twins(sync.erp("customers"), "displayName") == {}
    assert twins(sync.crm("accounts"), "name") == {}
    account = sync.only(sync.crm("accounts"), name="Northwind Traders")
    assert account["accountnumber"] == northwind[0]["number"]
    assert sync.coupled("CUSTOMER") == 7
    assert all(not c for c in sync.counts(sync.run("CUSTOMER", run_id="third")).values())


def test_a_crash_while_creating_contacts_without_an_alternate_key_leaves_no_twins(sync) -> None:
    sync.run("CURRENCY", "SALESPEOPLE", "CUSTOMER", run_id="first")
    crash(sync, "CONTACT")
    counts = sync.counts(sync.run("CONTACT", run_id="rerun"))
    assert counts["CONTACT to CRM"] == {"skipped": 5}  # the contacts' derived ids found, coupled: no write
    assert twins(sync.crm("contacts"), "emailaddress1") == {}
    assert len(sync.crm("contacts")) == 8


def snapshot(sync) -> dict:
    """Both sides' business content, without ids or timestamps (which differ between two runs)."""
    accounts = {a["name"]: (a.get("accountnumber") or "")[:3] + str(a["address1_city"]) for a in sync.crm("accounts")}
    contacts = sorted((c["fullname"], c.get("emailaddress1")) for c in sync.crm("contacts"))
    products = sorted((p["productnumber"], p["name"], p["price"], p["producttypecode"]) for p in sync.crm("products"))
    currencies = sorted(c["isocurrencycode"] for c in sync.crm("transactioncurrencies"))
    groups = sorted(u["name"] for u in sync.crm("uomschedules"))
    customers = sorted((c["number"][:3], c["displayName"], c["city"]) for c in sync.erp("customers"))
    people = sorted((c["displayName"], c["email"]) for c in sync.erp("contacts", "type eq 'Person'"))
    couplings = sync.sql("SELECT mapping, count(*) FROM dynamics.sync_coupling GROUP BY mapping ORDER BY mapping")
    return {
        "accounts": accounts,
        "contacts": contacts,
        "products": products,
        "currencies": currencies,
        "groups": groups,
        "customers": customers,
        "people": people,
        "couplings": couplings,
    }


@pytest.mark.timeout(300)
def test_thirty_percent_429s_give_the_same_end_state_as_a_clean_run(sync) -> None:
    sync.reset_stats()
    clean = sync.run(run_id="clean")
    clean_requests = sync.sandbox.admin("stats")["requests"]
    expected = snapshot(sync)
    sync.sandbox.reset()
    sync.sql(
        "TRUNCATE dynamics.sync_coupling, dynamics.sync_watermark, dynamics.sync_record_error,"
        " dynamics.sync_staging, dynamics.sync_pending_create, dynamics.settings"
    )
    sync.sandbox.admin("faults", {"rate_429": 0.3, "retry_after_s": 0, "seed": 7})
    sync.reset_stats()
    throttled = sync.run(run_id="throttled")
    stats = sync.sandbox.admin("stats")
    sync.sandbox.admin("faults", {})
    assert sync.counts(throttled) == sync.counts(clean)
    assert snapshot(sync) == expected
    # About 30% of the requests were answered 429 and sent again after Retry-After.
    assert stats["requests"] > 1.2 * clean_requests
