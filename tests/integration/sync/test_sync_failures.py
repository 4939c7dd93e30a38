"""Failures: dependencies not coupled, record isolation, retries, Skipped, deletions, matching, systemic errors."""

from __future__ import annotations

import json

import psycopg
import pytest

from dynamics_jobqueue.hooks.errors import AuthenticationError
from dynamics_jobqueue.sync.runner import SyncSystemicError
from dynamics_jobqueue.sync.store import MappingBusyError


def test_a_record_whose_dependency_is_not_coupled_fails_alone_and_syncs_on_a_later_run(sync) -> None:
    sync.run("CURRENCY", run_id="first")
    created = sync.erp_user.create("customers", {"number": "60000", "displayName": "No Salesperson Ltd"})
    result = sync.run("CUSTOMER", run_id="second")["CUSTOMER"]
    assert sync.counts({"CUSTOMER": result})["CUSTOMER to CRM"] == {"inserted": 1, "failed": 5}
    assert sync.account("60000")["name"] == "No Salesperson Ltd"  # the record without the dependency synced
    failure = next(f for f in result.passes[0].failures if f.source_key == "10000")
    assert failure.kind == "dependency"
    assert failure.message == (
        "dependency not coupled: SALESPEOPLE has no coupling for salespeoplePurchasers code 'JO'; "
        "sync SALESPEOPLE first or couple the record"
    )
    assert "dependency not coupled" in result.describe()
    assert created["id"] not in {e["source_id"] for e in sync.record_errors("CUSTOMER")}
    # The failed records are behind the watermark now; they are read again by id once the dependency is there.
    sync.run("SALESPEOPLE", run_id="third")
    counts = sync.counts(sync.run("CUSTOMER", run_id="fourth"))
    assert counts["CUSTOMER to CRM"] == {"inserted": 5}
    assert sync.record_errors("CUSTOMER") == []
    jim = sync.systemuser("JO@contoso.com")
    assert sync.account("10000")["_ownerid_value"] == jim["systemuserid"]


def test_a_failed_record_retried_in_a_full_sync_is_counted_once(sync) -> None:
    # A full sync compares every record: the retried records (read by id first) are read again among all the
    # customers and must not be counted a second time (seen before: "inserted 5, unchanged 8").
    sync.run("CURRENCY", run_id="first")
    sync.erp_user.create("customers", {"number": "60000", "displayName": "No Salesperson Ltd"})
    assert sync.counts(sync.run("CUSTOMER", run_id="second"))["CUSTOMER to CRM"] == {"inserted": 1, "failed": 5}
    sync.run("SALESPEOPLE", run_id="third")
    counts = sync.counts(sync.run("CUSTOMER", run_id="fourth", full_sync=True))
    # 5 retried and inserted; unchanged: 60000 and the two customers created from accounts in "second"
    assert counts["CUSTOMER to CRM"] == {"inserted": 5, "unchanged": 3}
    rows = sync.sql(
        "SELECT direction, inserted, unchanged, failed, status FROM dynamics.sync_job WHERE run_id = 'fourth' "
        "ORDER BY id"
    )
    assert rows[0] == ("to_crm", 5, 3, 0, "success")


def test_one_bad_record_never_blocks_the_others_and_its_error_is_kept_with_the_apis_message(sync) -> None:
    sync.edit_mapping("40_customer.yaml", lambda m: m["fields"][5].pop("transform"))  # city: no truncation
    sync.run(run_id="first")
    trey, adatum = sync.account("20000"), sync.account("10000")
    sync.crm_user.upsert("accounts", trey["accountid"], {"address1_city": "L" * 40}, mode="update")
    sync.crm_user.upsert("accounts", adatum["accountid"], {"address1_city": "Ely"}, mode="update")
    result = sync.run("CUSTOMER", run_id="second")["CUSTOMER"]
    assert sync.counts({"CUSTOMER": result})["CUSTOMER from CRM"] == {"modified": 1, "failed": 1}
    assert sync.customer("10000")["city"] == "Ely"
    (error,) = sync.record_errors("CUSTOMER")
    assert error["direction"] == "from_crm" and error["source_id"] == trey["accountid"]
    erp_id = sync.customer("20000")["id"]
    assert error["kind"] == "record" and error["destination_id"] == erp_id
    assert error["message"].startswith(f"PATCH customers({erp_id}): HTTP 400 Application_StringExceededLength: ")
    assert "less than or equal to 30 characters" in error["message"]
    assert "CorrelationId" not in error["message"]  # kept in the detail only, so repeats compare equal
    rows = sync.sql("SELECT status, failed, message FROM dynamics.sync_job WHERE run_id = 'second' ORDER BY id")
    assert [r[:2] for r in rows] == [("success", 0), ("failed", 1)]
    assert trey["accountid"] in rows[1][2]


def test_the_same_error_marks_a_record_skipped_after_the_configured_count(sync) -> None:
    sync.edit_mapping("40_customer.yaml", lambda m: m.update(skip_after_same_error=3))
    sync.run("CURRENCY", run_id="first")
    for run in range(1, 4):
        sync.run("CUSTOMER", run_id=f"run{run}")
        errors = sync.record_errors("CUSTOMER")
        assert {e["error_count"] for e in errors} == {run}
        assert {e["skipped"] for e in errors} == {run == 3}
    # Skipped records are not tried again (records stamped within a second of a run's start are read again by
    # the next run, the watermark rule's overlap, and counted Skipped, never failed).
    assert set(sync.counts(sync.run("CUSTOMER", run_id="run4"))["CUSTOMER to CRM"]) <= {"skipped"}
    assert {e["error_count"] for e in sync.record_errors("CUSTOMER")} == {3}


@pytest.mark.parametrize(
    ("rule", "expected"),
    [("none", {"failed": 1}), ("remove_coupling", {"uncoupled": 1}), ("restore", {"inserted": 1})],
)
def test_a_coupled_record_deleted_on_the_other_side_follows_the_deletion_rule(sync, rule, expected) -> None:
    sync.edit_mapping("10_currency.yaml", lambda m: m.update(resolve_deletion_conflicts=rule))
    sync.run("CURRENCY", run_id="first")
    eur = sync.only(sync.crm("transactioncurrencies"), isocurrencycode="EUR")
    sync.dv.delete("transactioncurrencies", eur["transactioncurrencyid"])
    currency = sync.only(sync.erp("currencies"), code="EUR")
    sync.erp_user.update("currencies", currency["id"], {"displayName": "Euro (EMU)"})
    result = sync.run("CURRENCY", run_id="second")["CURRENCY"]
    assert sync.counts({"CURRENCY": result})["CURRENCY to CRM"] == expected
    remaining = [c for c in sync.crm("transactioncurrencies") if c["isocurrencycode"] == "EUR"]
    if rule == "none":
        failure = result.passes[0].failures[0]
        assert failure.kind == "deleted" and "no longer exists" in failure.message
        assert "resolve_deletion_conflicts" in failure.message and not remaining
    elif rule == "remove_coupling":
        assert sync.coupled("CURRENCY") == 46 and not remaining
    else:
        assert remaining[0]["transactioncurrencyid"] == eur["transactioncurrencyid"]  # the same id again
        assert remaining[0]["currencyname"] == "Euro (EMU)"


def test_match_based_coupling_couples_an_existing_crm_record_instead_of_creating_a_twin(sync) -> None:
    existing = sync.crm_user.create("accounts", {"name": "Adatum (typed in the CRM)", "accountnumber": "10000"})
    counts = sync.counts(sync.run("CURRENCY", "SALESPEOPLE", "CUSTOMER", run_id="first"))
    assert counts["CUSTOMER to CRM"] == {"inserted": 4, "modified": 1, "coupled": 1}
    account = sync.account("10000")  # exactly one
    assert account["accountid"] == existing and account["name"] == "Adatum Corporation"


def test_synch_only_coupled_records_skips_what_matches_nothing(sync) -> None:
    sync.edit_mapping("10_currency.yaml", lambda m: m.update(synch_only_coupled_records=True))
    sync.crm_user.create(
        "transactioncurrencies",
        {
            "isocurrencycode": "EUR",
            "currencyname": "Euro",
            "currencysymbol": "€",
            "currencyprecision": 2,
            "exchangerate": 1.1,
        },
    )
    counts = sync.counts(sync.run("CURRENCY", run_id="first", full_synch_review=False))
    assert counts["CURRENCY to CRM"] == {"modified": 1, "skipped": 46, "coupled": 1}
    assert sync.coupled("CURRENCY") == 1
    assert len(sync.crm("transactioncurrencies")) == 2  # GBP and EUR: nothing created


def test_wrong_credentials_stop_the_run_at_once_with_a_clear_error(sync, monkeypatch) -> None:
    conn = sync.sandbox.connections()["dataverse_default"]
    conn["password"] = "not-the-secret"
    monkeypatch.setenv("AIRFLOW_CONN_DATAVERSE_DEFAULT", json.dumps(conn))
    with pytest.raises(SyncSystemicError) as caught:
        sync.run("CURRENCY", run_id="first")
    assert isinstance(caught.value.error, AuthenticationError)
    assert "invalid_client" in str(caught.value) and "CURRENCY: stopped on AuthenticationError" in str(caught.value)
    assert sync.coupled("CURRENCY") == 0


def test_two_runs_of_one_mapping_never_overlap(sync, postgres_server, state_database) -> None:
    with psycopg.connect(postgres_server.conninfo(state_database), autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(hashtextextended('dynamics.sync:' || 'CURRENCY', 0))")
        with pytest.raises(MappingBusyError, match="another run of CURRENCY is in progress"):
            sync.run("CURRENCY", run_id="first")
    assert sync.counts(sync.run("CURRENCY", run_id="second"))["CURRENCY to CRM"] == {"inserted": 47}
