"""Business Central's default mappings as its AL source writes them: the currency's exchange rate and symbol,
"NAV <code>" unit groups, bidirectional products with the vendor's name, price list items and the LCY (codeunits
5334 "CRM Setup Defaults", 5341 "CRM Int. Table. Subscriber", 5342 "CRM Synch. Helper", 7204 "CDS Setup Defaults",
7205 "CDS Int. Table. Subscriber"). Real HTTP to the sandbox, a real state store."""

from __future__ import annotations

import pytest

from dynamics_jobqueue.hooks.errors import ApiError


@pytest.fixture
def review(sync):
    """A Full Synch. Review of every mapping on the CRONUS pair: nothing fails."""
    counts = sync.counts(sync.run(run_id="review", full_sync=True))
    failed = {flow: c for flow, c in counts.items() if "failed" in c}
    assert not failed, failed
    return counts


def test_currencies_get_the_exchange_rate_against_lcy_and_their_symbol(sync, review) -> None:
    eur = sync.only(sync.crm("transactioncurrencies"), isocurrencycode="EUR")
    # CRONUS: 1 EUR = 0.6458 GBP, so 1 GBP = 1/0.6458 EUR (Exchange Rate Amount / Relational Exch. Rate Amount)
    assert eur["exchangerate"] == pytest.approx(1 / 0.6458, abs=1e-9)
    assert eur["currencysymbol"] == "EUR"  # no Symbol in the demo data: the ISO code (7205)
    assert eur["currencyprecision"] == 2 and eur["currencyname"] == "Euro"
    usd = sync.only(sync.erp("currencies"), code="USD")
    sync.erp_user.update("currencies", usd["id"], {"symbol": "$"})
    counts = sync.counts(sync.run("CURRENCY", run_id="symbol", full_synch_review=False))
    assert counts == {"CURRENCY to CRM": {"modified": 1}}
    assert sync.only(sync.crm("transactioncurrencies"), isocurrencycode="USD")["currencysymbol"] == "$"


def test_a_currency_without_exchange_rate_fails_with_business_centrals_message(sync, review) -> None:
    sync.erp_user.create("currencies", {"code": "XTS", "displayName": "Testing currency"})
    counts = sync.counts(sync.run("CURRENCY", run_id="no-rate", full_sync=True))
    assert counts["CURRENCY to CRM"]["failed"] == 1
    [error] = [e for e in sync.record_errors("CURRENCY") if e["source_key"] == "XTS"]
    assert error["message"] == (
        "Cannot create or update the currency XTS in Dataverse, because there is no exchange rate defined for it."
    )
    assert not sync.crm("transactioncurrencies", "isocurrencycode eq 'XTS'")


def test_dataverse_refuses_a_currency_without_exchange_rate(sync) -> None:
    with pytest.raises(ApiError) as refused:
        sync.crm_user.create(
            "transactioncurrencies",
            {"isocurrencycode": "XTS", "currencyname": "Testing", "currencysymbol": "XTS", "currencyprecision": 2},
        )
    assert refused.value.status == 400 and "exchangerate" in str(refused.value)


def test_unit_groups_are_named_and_matched_as_business_central_names_them(sync) -> None:
    """A tenant that already ran Business Central's integration has "NAV PCS": it is coupled, not duplicated."""
    existing = sync.crm_user.create("uomschedules", {"name": "NAV PCS", "baseuomname": "PCS"})
    counts = sync.counts(sync.run("UNIT OF MEASURE", run_id="units", full_sync=True))
    assert counts == {"UNIT OF MEASURE to CRM": {"inserted": 18, "modified": 1, "coupled": 1}}
    groups = sync.crm("uomschedules", "startswith(name,'NAV ')")
    assert len(groups) == 19 and len(sync.crm("uomschedules", "name eq 'NAV PCS'")) == 1
    assert not sync.crm("uomschedules", "name eq 'PCS'")
    [(crm_id,)] = sync.sql(
        "SELECT crm_id FROM dynamics.sync_coupling WHERE mapping = 'UNIT OF MEASURE' AND erp_key = 'PCS'"
    )
    assert crm_id == existing.lower()
    assert sync.only(groups, name="NAV PCS")["description"] == "Piece"


def test_products_carry_vendor_price_list_item_and_lcy_and_names_come_back(sync, review) -> None:
    desk = sync.only(sync.crm("products"), productnumber="1896-S")
    vendor = sync.only(sync.erp("vendors"), number="30000")
    assert (desk["vendorid"], desk["vendorname"]) == ("30000", vendor["displayName"])
    gbp = sync.only(sync.crm("transactioncurrencies"), isocurrencycode="GBP")
    price_list = sync.only(sync.crm("pricelevels"), name="Business Central Default Price List")
    assert price_list["_transactioncurrencyid_value"] == gbp["transactioncurrencyid"]
    assert desk["_transactioncurrencyid_value"] == gbp["transactioncurrencyid"]
    assert desk["_pricelevelid_value"] == price_list["pricelevelid"]
    [item_price] = sync.crm("productpricelevels", f"_productid_value eq {desk['productid']}")
    assert item_price["_pricelevelid_value"] == price_list["pricelevelid"]
    assert item_price["amount"] == pytest.approx(649.4)
    assert item_price["_uomid_value"] == desk["_defaultuomid_value"]
    assert item_price["_uomscheduleid_value"] == desk["_defaultuomscheduleid_value"]
    assert len(sync.crm("productpricelevels")) == 24 and len(sync.crm("pricelevels")) == 1

    item = sync.only(sync.erp("items"), number="1896-S")
    sync.erp_user.update("items", item["id"], {"vendorItemNumber": "ATH-DESK-01", "unitPrice": 700})
    resource = sync.only(sync.erp("resources"), number="KATHERINE")
    sync.erp_user.update("resources", resource["id"], {"capacity": -8, "vendorNumber": "20000"})
    lamp = sync.only(sync.crm("products"), productnumber="1900-S")
    sync.crm_user.upsert("products", lamp["productid"], {"name": "PARIS Guest Chair (CRM)"}, mode="update")
    counts = sync.counts(sync.run(run_id="both-ways", full_synch_review=False))
    written = {flow: (c.get("modified", 0), c.get("inserted", 0), c.get("failed", 0)) for flow, c in counts.items()}
    assert written["ITEM-PRODUCT to CRM"] == (1, 0, 0) and written["ITEM-PRODUCT from CRM"] == (1, 0, 0)
    assert written["RESOURCE-PRODUCT to CRM"] == (1, 0, 0)
    assert written["ITEM-PRICE LIST ITEM to CRM"] == (1, 0, 0)

    desk = sync.only(sync.crm("products"), productnumber="1896-S")
    assert desk["vendorpartnumber"] == "ATH-DESK-01" and desk["price"] == pytest.approx(700)
    assert sync.crm("productpricelevels", f"_productid_value eq {desk['productid']}")[0]["amount"] == 700
    katherine = sync.only(sync.crm("products"), productnumber="KATHERINE")
    assert katherine["quantityonhand"] == 0  # capacity -8: negative is written as 0 (5342)
    vendor = sync.only(sync.erp("vendors"), number="20000")
    assert (katherine["vendorid"], katherine["vendorname"]) == ("20000", vendor["displayName"])
    assert sync.only(sync.erp("items"), number="1900-S")["displayName"] == "PARIS Guest Chair (CRM)"


def test_products_are_set_active_after_insert_as_business_central_does(sync, review) -> None:
    """Dataverse creates a product Draft (the sandbox's organization does not create products Active); 5341
    UpdateCRMProductAfterInsertRecord sets it Active (statecode 0, statuscode 1) after the insert, and an update
    sets a product of an unblocked item Active again (5341 UpdateCRMProductAfterTransferRecordFields)."""
    [organization] = sync.crm("organizations")
    assert organization["createproductswithoutparentinactivestate"] is False
    products = sync.crm("products")
    assert len(products) == 24
    assert {(p["statecode"], p["statuscode"]) for p in products} == {(0, 1)}

    lamp = sync.only(products, productnumber="1900-S")
    sync.crm_user.upsert("products", lamp["productid"], {"statecode": 2, "statuscode": 0}, mode="update")
    item = sync.only(sync.erp("items"), number="1900-S")
    sync.erp_user.update("items", item["id"], {"unitPrice": 199})
    counts = sync.counts(sync.run("ITEM-PRODUCT", run_id="draft-again", full_synch_review=False))
    assert counts["ITEM-PRODUCT to CRM"] == {"modified": 1}
    lamp = sync.only(sync.crm("products"), productnumber="1900-S")
    assert (lamp["statecode"], lamp["statuscode"], lamp["price"]) == (0, 1, 199)


def test_only_active_products_come_back(sync, review) -> None:
    lamp = sync.only(sync.crm("products"), productnumber="1900-S")
    sync.crm_user.upsert("products", lamp["productid"], {"name": "Retired chair", "statecode": 1}, mode="update")
    counts = sync.counts(sync.run("ITEM-PRODUCT", run_id="retired", full_synch_review=False))
    back = counts.get("ITEM-PRODUCT from CRM", {})
    assert not {"modified", "inserted"} & back.keys()
    assert sync.only(sync.erp("items"), number="1900-S")["displayName"] != "Retired chair"


def test_two_tasks_at_once_make_one_default_price_list(sync) -> None:
    """RESOURCE-PRODUCT and ITEM-PRODUCT are independent tasks: both may look for the price list at once."""
    from concurrent.futures import ThreadPoolExecutor

    from dynamics_jobqueue.hooks.business_central import BusinessCentralHook
    from dynamics_jobqueue.hooks.dataverse import DataverseHook
    from dynamics_jobqueue.sync.computed import ComputeCache
    from dynamics_jobqueue.sync.endpoints import CrmEndpoint, ErpEndpoint

    def price_list(_: int) -> str:
        cache = ComputeCache(ErpEndpoint(BusinessCentralHook()), CrmEndpoint(DataverseHook()))
        return cache.compute("default_price_list", ["*"]).found["*"]

    with ThreadPoolExecutor(4) as pool:
        ids = set(pool.map(price_list, range(4)))
    assert len(ids) == 1
    [only] = sync.crm("pricelevels")
    assert only["pricelevelid"] == ids.pop() and only["name"] == "Business Central Default Price List"


def test_an_accounts_currency_payment_terms_and_freight_terms_come_back(sync, review) -> None:
    """7204 ResetCustomerAccountMapping maps Currency Code, Payment Terms Code and Shipment Method Code both
    ways: from the CRM the option is turned into the code coupled to it (5342 ConvertOptionToTable), the
    transaction currency into the coupled currency's code, and the LCY's transaction currency and a blank
    option into blank codes (5342 GetNavCurrencyCode); a blank Currency Code goes to the CRM as the LCY."""
    options = dict(
        sync.sql(
            "SELECT mapping || ':' || erp_key, crm_id FROM dynamics.sync_coupling "
            "WHERE mapping IN ('PAYMENT TERMS', 'SHIPMENT METHOD')"
        )
    )
    account = sync.account("20000")
    gbp = sync.only(sync.crm("transactioncurrencies"), isocurrencycode="GBP")
    assert account["_transactioncurrencyid_value"] == gbp["transactioncurrencyid"]  # blank code = the LCY
    assert account["paymenttermscode"] == int(options["PAYMENT TERMS:14 DAYS"])
    eur = sync.only(sync.crm("transactioncurrencies"), isocurrencycode="EUR")
    sync.crm_user.upsert(
        "accounts",
        account["accountid"],
        {
            "transactioncurrencyid@odata.bind": f"/transactioncurrencies({eur['transactioncurrencyid']})",
            "paymenttermscode": int(options["PAYMENT TERMS:CM"]),
            "address1_freighttermscode": int(options["SHIPMENT METHOD:PICKUP"]),
        },
        mode="update",
    )
    counts = sync.counts(sync.run("CUSTOMER", run_id="terms-back", full_synch_review=False))
    assert counts["CUSTOMER from CRM"] == {"modified": 1}
    customer = sync.customer("20000")
    assert (customer["currencyCode"], customer["paymentTermsCode"], customer["shipmentMethodCode"]) == (
        "EUR",
        "CM",
        "PICKUP",
    )

    sync.crm_user.upsert(
        "accounts",
        account["accountid"],
        {
            "transactioncurrencyid@odata.bind": f"/transactioncurrencies({gbp['transactioncurrencyid']})",
            "paymenttermscode": None,
        },
        mode="update",
    )
    counts = sync.counts(sync.run("CUSTOMER", run_id="lcy-back", full_synch_review=False))
    assert counts["CUSTOMER from CRM"] == {"modified": 1}
    customer = sync.customer("20000")
    assert (customer["currencyCode"], customer["paymentTermsCode"], customer["shipmentMethodCode"]) == (
        "",
        "",
        "PICKUP",
    )
    assert customer["paymentTermsId"] == "00000000-0000-0000-0000-000000000000"

    sync.erp_user.update("customers", customer["id"], {"currencyCode": "EUR"})
    sync.counts(sync.run("CUSTOMER", run_id="eur-out", full_synch_review=False))
    assert sync.account("20000")["_transactioncurrencyid_value"] == eur["transactioncurrencyid"]
    sync.erp_user.update("customers", customer["id"], {"currencyCode": ""})
    counts = sync.counts(sync.run("CUSTOMER", run_id="lcy-out", full_synch_review=False))
    assert counts["CUSTOMER to CRM"] == {"modified": 1}
    assert sync.account("20000")["_transactioncurrencyid_value"] == gbp["transactioncurrencyid"]

    # An option no code is coupled to fails the customer, as 5342 ConvertOptionToTable does.
    sync.crm_user.upsert("accounts", account["accountid"], {"paymenttermscode": 1}, mode="update")  # "Net 30"
    assert "1" not in {v for k, v in options.items() if k.startswith("PAYMENT TERMS:")}
    counts = sync.counts(sync.run("CUSTOMER", run_id="uncoupled-option", full_synch_review=False))
    assert counts["CUSTOMER from CRM"] == {"failed": 1}
    [error] = [e for e in sync.record_errors("CUSTOMER") if e["direction"] == "from_crm"]
    assert error["message"].startswith("paymenttermscode 1 must be coupled to a paymentTerms record")
