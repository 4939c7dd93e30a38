"""The default mappings on the CRONUS data: everything couples, and a second run writes nothing."""

from __future__ import annotations

import pytest

from dynamics_jobqueue.sync.summary import run_summary

FIRST_RUN = {
    "CURRENCY to CRM": {"inserted": 47},
    "SALESPEOPLE from CRM": {"unchanged": 7, "coupled": 7},  # the 7 CRONUS users couple to the salespeople by code
    "UNIT OF MEASURE to CRM": {"inserted": 19},
    "PAYMENT TERMS to CRM": {"inserted": 10},  # ten codes, none the label of a standard option
    "SHIPMENT METHOD to CRM": {"inserted": 13, "unchanged": 1, "coupled": 1},  # FOB is a standard freight term
    # DHL, FedEx and UPS are standard options: coupled, "FedEx" relabelled "FEDEX" (Synch. After Bulk Coupling)
    "SHIPPING AGENT to CRM": {"inserted": 1, "unchanged": 2, "modified": 1, "coupled": 3},
    "CUSTOMER to CRM": {"inserted": 5},
    "CUSTOMER from CRM": {"inserted": 2},  # Northwind and Litware; Proseware is not of type Customer
    "CONTACT to CRM": {"inserted": 5, "skipped": 5},  # the 5 vendor contacts are outside CONTACT
    "CONTACT from CRM": {"inserted": 2, "skipped": 1},  # Dana's parent (Proseware) is not a customer
    "RESOURCE-PRODUCT to CRM": {"inserted": 4},
    "RESOURCE-PRODUCT from CRM": {},  # bidirectional (5334); the CRONUS CRM has no products of its own
    "RESOURCE-PRICE LIST ITEM to CRM": {"inserted": 4},
    "ITEM-PRODUCT to CRM": {"inserted": 20},
    "ITEM-PRODUCT from CRM": {},
    "ITEM-PRICE LIST ITEM to CRM": {"inserted": 20},
}


@pytest.fixture
def first_run(sync):
    results = sync.run(run_id="first")
    assert sync.counts(results) == FIRST_RUN
    return results


def test_customers_become_accounts_with_owner_and_currency_through_couplings(sync, first_run) -> None:
    jim = sync.systemuser("JO@contoso.com")
    adatum = sync.account("10000")
    assert adatum["name"] == "Adatum Corporation"
    assert adatum["address1_city"] == "Cambridge" and adatum["emailaddress1"] == "robert.townes@contoso.com"
    assert adatum["_ownerid_value"] == jim["systemuserid"]  # salesperson JO -> owner, via SALESPEOPLE
    assert adatum["customertypecode"] == 3
    base_currency = sync.only(sync.crm("transactioncurrencies"), isocurrencycode="GBP")
    # currency "" (LCY): no currency is bound, so the organisation's base currency applies
    assert adatum["_transactioncurrencyid_value"] in (None, base_currency["transactioncurrencyid"])
    eur = sync.only(sync.crm("transactioncurrencies"), isocurrencycode="EUR")
    assert eur["currencyname"] == "Euro" and eur["currencysymbol"] == "EUR"
    assert sync.coupled("CUSTOMER") == 7 and sync.coupled("CURRENCY") == 47


def test_payment_terms_and_shipment_methods_become_options_that_customers_carry(sync, first_run) -> None:
    """PAYMENT TERMS, SHIPMENT METHOD, SHIPPING AGENT (CDS Setup Defaults) fill the account's choice columns with
    the codes; CUSTOMER writes each customer's option (Payment Terms Code -> PaymentTermsCodeEnum)."""
    terms = sync.dv.option_set("account", "paymenttermscode")
    assert {1: "Net 30", 2: "2% 10, Net 30", 3: "Net 45", 4: "Net 60"}.items() <= terms.items()
    by_label = {label: value for value, label in terms.items()}
    assert {"30 DAYS", "14 DAYS", "1M(8D)", "CM", "COD"} <= set(by_label)
    assert sync.dv.option_set("account", "address1_freighttermscode")[1] == "FOB"  # coupled, not added twice
    agents = sync.dv.option_set("account", "address1_shippingmethodcode")
    assert sorted(agents.values()).count("DHL") == 1 and "OWNLOG" in agents.values()
    for number in ("10000", "20000", "30000", "40000", "50000"):
        customer, account = sync.customer(number), sync.account(number)
        assert customer["paymentTermsCode"]  # every CRONUS customer has payment terms
        assert account["paymenttermscode"] == by_label[customer["paymentTermsCode"]], number
    coupled = dict(sync.sql("SELECT erp_key, crm_id FROM dynamics.sync_coupling WHERE mapping = 'PAYMENT TERMS'"))
    assert {code: int(value) for code, value in coupled.items()} == {
        label: value for label, value in by_label.items() if value >= 100_000_000
    }


def test_accounts_created_in_the_crm_become_customers_and_get_their_number_back(sync, first_run) -> None:
    northwind = sync.only(sync.crm("accounts"), name="Northwind Traders")
    number = northwind["accountnumber"]
    assert number.startswith("CRM") and len(number) == 15  # CRM + 12 characters of the account id
    assert number[3:] == northwind["accountid"].replace("-", "")[:12].upper()
    customer = sync.customer(number)
    assert customer["displayName"] == "Northwind Traders" and customer["city"] == "Reading"
    assert customer["postalCode"] == "RG1 1AA" and customer["country"] == "GB"
    assert not sync.erp("customers", "displayName eq 'Proseware, Inc.'")


def test_contacts_keep_their_parent_company_both_ways(sync, first_run) -> None:
    adatum = sync.account("10000")
    robert = sync.only(sync.crm("contacts"), emailaddress1="robert.townes@contoso.com")
    assert (robert["firstname"], robert["lastname"]) == ("Robert", "Townes")
    assert robert["_parentcustomerid_value"] == adatum["accountid"]
    ana = sync.only(sync.erp("contacts", "type eq 'Person'"), email="ana.bowman@northwind.example")
    northwind = sync.customer(sync.only(sync.crm("accounts"), name="Northwind Traders")["accountnumber"])
    company = sync.only(sync.erp("contactsInformation"), relatedId=northwind["id"], contactType="Company")
    assert ana["companyNumber"] == company["contactNumber"]
    assert (ana["firstName"], ana["lastName"]) == ("Ana", "Bowman")
    assert not [c for c in sync.erp("contacts") if c.get("email") == "dana.birkby@proseware.example"]


def test_products_carry_the_unit_group_and_base_unit(sync, first_run) -> None:
    desk = sync.only(sync.crm("products"), productnumber="1896-S")
    pcs = sync.only(sync.crm("uomschedules"), name="NAV PCS")
    base_unit = sync.only(sync.crm("uoms", f"_uomscheduleid_value eq {pcs['uomscheduleid']}"), isschedulebaseuom=True)
    assert desk["name"] == "ATHENS Desk" and desk["price"] == pytest.approx(649.4)
    assert desk["standardcost"] == pytest.approx(506.6) and desk["producttypecode"] == 1
    assert desk["_defaultuomscheduleid_value"] == pcs["uomscheduleid"]
    assert desk["_defaultuomid_value"] == base_unit["uomid"]
    katherine = sync.only(sync.crm("products"), productnumber="KATHERINE")
    assert katherine["producttypecode"] == 3 and katherine["price"] == pytest.approx(100)
    assert len(sync.crm("products")) == 24


def test_salespeople_sync_only_enabled_licensed_users_and_never_the_integration_user(sync, first_run) -> None:
    rows = sync.sql("SELECT erp_key FROM dynamics.sync_coupling WHERE mapping = 'SALESPEOPLE' ORDER BY erp_key")
    assert [r[0] for r in rows] == ["BC", "EH", "HR", "JO", "LT", "OF", "RB"]
    assert not sync.erp("salespeoplePurchasers", "code eq 'ALEX.FORMER'")
    assert not sync.erp("salespeoplePurchasers", "code eq 'SAM.TRIAL'")
    assert not sync.erp("salespeoplePurchasers", "code eq 'PAT.CONNECTOR'")  # another application's user
    assert not sync.erp("salespeoplePurchasers", "code eq 'BCINTEGRATION'")


def test_a_scheduled_run_on_a_fresh_tenant_pair_creates_nothing(sync) -> None:
    """Synch. Only Coupled Records: a scheduled run couples what matches (the CRONUS users to the salespeople
    by code) and creates nothing on either side; the Full Synch. Review after it creates the rest."""
    tables = [("crm", "transactioncurrencies"), ("crm", "uomschedules"), ("crm", "accounts"), ("crm", "contacts")]
    tables += [("crm", "products"), ("erp", "customers"), ("erp", "contacts"), ("erp", "salespeoplePurchasers")]
    before = {t: len(getattr(sync, side)(t)) for side, t in tables}
    scheduled = sync.counts(sync.run(run_id="scheduled", full_synch_review=False))
    assert not [flow for flow, counts in scheduled.items() if {"inserted", "failed"} & counts.keys()], scheduled
    assert {t: len(getattr(sync, side)(t)) for side, t in tables} == before
    assert sync.coupled("SALESPEOPLE") == 7 and sync.coupled("CUSTOMER") == 0
    review = sync.counts(sync.run(run_id="review", full_sync=True))
    assert review["CUSTOMER to CRM"] == {"inserted": 5} and review["ITEM-PRODUCT to CRM"] == {"inserted": 20}
    assert not [flow for flow, counts in review.items() if "failed" in counts], review
    assert sync.coupled("CUSTOMER") == 7 and sync.coupled("ITEM-PRODUCT") == 20


def test_a_second_run_without_changes_writes_nothing(sync, wide_overlap, first_run) -> None:
    sync.reset_stats()
    again = sync.run(run_id="second")
    # Every ERP record of the first run is read again (wide_overlap: all of them lie in the watermark's overlap),
    # and none is processed or counted again, not even the out-of-scope ones Skipped the first time.
    assert sync.counts(again) == {name: {} for name in FIRST_RUN}
    writes = {route: n for route, n in sync.stats().items() if not route.startswith("GET")}
    assert writes == {}
    summary = run_summary(sync.state, "second")
    assert summary["mapping"].tolist() == [
        "CURRENCY",
        "SALESPEOPLE",
        "UNIT OF MEASURE",
        "PAYMENT TERMS",
        "SHIPMENT METHOD",
        "SHIPPING AGENT",
        "CUSTOMER",
        "CONTACT",
        "RESOURCE-PRODUCT",
        "RESOURCE-PRICE LIST ITEM",
        "ITEM-PRODUCT",
        "ITEM-PRICE LIST ITEM",
    ]
    assert int(summary[["inserted", "modified", "failed"]].to_numpy().sum()) == 0
    # Every job of the run did nothing (BC's HaveJobsBeenIdle: no record inserted, modified, deleted or failed).
    jobs = sync.sql("SELECT status, idle FROM dynamics.sync_job WHERE run_id = 'second'")
    assert len(jobs) == 16 and set(jobs) == {("success", True)}  # 12 mappings, 4 of them both ways
    assert all(result.idle for result in again.values())


def test_the_run_summary_has_one_row_per_mapping_in_run_order(sync, first_run) -> None:
    summary = run_summary(sync.state)  # the latest run
    assert list(summary.columns) == [
        "mapping",
        "direction",
        "inserted",
        "modified",
        "deleted",
        "unchanged",
        "skipped",
        "failed",
        "coupled",
        "uncoupled",
    ]
    rows = summary.set_index("mapping")
    assert rows.loc["CUSTOMER", "direction"] == "both" and rows.loc["CUSTOMER", "inserted"] == 7
    assert rows.loc["SALESPEOPLE", "direction"] == "from CRM" and rows.loc["SALESPEOPLE", "unchanged"] == 7
    # the seven users were coupled to the CRONUS salespeople by match (BC's Coupled counter), none created
    assert rows.loc["SALESPEOPLE", "coupled"] == 7 and rows.loc["SALESPEOPLE", "inserted"] == 0
    assert rows.loc["CONTACT", "skipped"] == 6 and int(summary["failed"].sum()) == 0
    assert run_summary(sync.state, "no-such-run").empty


def test_match_based_coupling_never_creates_salespeople(sync) -> None:
    """BC never creates a salesperson when coupling by match (codeunit 5360 "CDS Int. Table Couple",
    ShouldCreateNewRecordsInCaseOfNoMatch answers false for SALESPEOPLE); the Full Synch. Review does (table 5373
    recommends Full Synchronization for SALESPEOPLE). Disabled, unlicensed and integration users never sync."""
    user = {"firstname": "Nina", "lastname": "North", "isdisabled": False, "islicensed": True}
    sync.dv.create("systemusers", {**user, "internalemailaddress": "NN@contoso.com", "domainname": "NN@contoso.com"})
    for email, extra in (
        ("OFF@contoso.com", {"isdisabled": True}),
        ("UNLIC@contoso.com", {"islicensed": False}),
        ("INTEG@contoso.com", {"isintegrationuser": True}),
    ):
        sync.dv.create("systemusers", {**user, "internalemailaddress": email, "domainname": email, **extra})
    scheduled = sync.counts(sync.run("SALESPEOPLE", run_id="scheduled", full_synch_review=False))
    assert scheduled == {"SALESPEOPLE from CRM": {"unchanged": 7, "coupled": 7, "skipped": 1}}
    assert not sync.erp("salespeoplePurchasers", "code eq 'NN'") and sync.coupled("SALESPEOPLE") == 7
    review = sync.counts(sync.run("SALESPEOPLE", run_id="review", full_sync=True))
    assert review == {"SALESPEOPLE from CRM": {"inserted": 1, "unchanged": 7}}
    (nina,) = sync.erp("salespeoplePurchasers", "code eq 'NN'")
    assert (nina["displayName"], nina["email"]) == ("Nina North", "NN@contoso.com")
    for code in ("OFF", "UNLIC", "INTEG"):
        assert not sync.erp("salespeoplePurchasers", f"code eq '{code}'")
