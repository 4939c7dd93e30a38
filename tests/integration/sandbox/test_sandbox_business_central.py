"""Business Central API v2.0 as the sandbox serves it: CRONUS seed, paging, $filter/$select/$orderby, ETags,
business rules and the JSON $batch (docs/reference/api-contracts.md, "Business Central API v2.0")."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

COMPANY_ID = "c0c05000-0000-4000-8000-000000000001"


def test_cronus_seed_is_served(bc, bc_api):
    customers = bc.get("customers", params={"$select": "number,displayName,salespersonCode"}).json()["value"]
    assert [(c["number"], c["displayName"]) for c in customers] == [
        ("10000", "Adatum Corporation"),
        ("20000", "Trey Research"),
        ("30000", "School of Fine Art"),
        ("40000", "Alpine Ski House"),
        ("50000", "Relecloud"),
    ]
    assert {c["salespersonCode"] for c in customers} == {"JO"}
    counts = {
        name: len(bc.get(name).json()["value"])
        for name in (
            "currencies",
            "salespeoplePurchasers",
            "unitsOfMeasure",
            "customers",
            "vendors",
            "contacts",
            "items",
        )
    }
    assert counts == {
        "currencies": 47,
        "salespeoplePurchasers": 7,
        "unitsOfMeasure": 19,
        "customers": 5,
        "vendors": 5,
        "contacts": 20,
        "items": 20,
    }
    resources = bc_api(api="cronus/integration/v1.0").get("resources").json()["value"]
    assert [r["number"] for r in resources] == ["KATHERINE", "LINA", "MARTY", "TERRY"]
    assert resources[0]["baseUnitOfMeasureCode"] == "HOUR"
    assert resources[0]["unitPrice"] == 100


def test_exchange_rates_and_company_information_are_served_read_only(bc):
    """API v2.0 currencyExchangeRates (page 30085, read-only) carries the CRONUS rates; companyInformation the
    LCY code."""
    rates = bc.get("currencyExchangeRates", params={"$filter": "currencyCode eq 'EUR'"}).json()["value"]
    assert [(r["exchangeRateAmount"], r["relationalExchangeRateAmount"]) for r in rates] == [(1, 0.6458)]
    assert rates[0]["startingDate"].endswith("-01-01")
    assert len(bc.get("currencyExchangeRates").json()["value"]) == 47
    assert bc.get("companyInformation").json()["value"][0]["currencyCode"] == "GBP"
    refused = bc.post("currencyExchangeRates", json={"currencyCode": "EUR", "exchangeRateAmount": 1})
    assert refused.status_code == 405


def test_seeded_contacts_are_numbered_as_bc_creates_them(bc):
    contacts = {c["number"]: c for c in bc.get("contacts").json()["value"]}
    adatum, robert = contacts["CT000001"], contacts["CT000002"]
    assert (adatum["type"], adatum["displayName"], adatum["companyNumber"]) == (
        "Company",
        "Adatum Corporation",
        "CT000001",
    )
    assert robert["type"] == "Person"
    assert (robert["firstName"], robert["lastName"]) == ("Robert", "Townes")
    assert (robert["companyNumber"], robert["companyName"]) == ("CT000001", "Adatum Corporation")
    assert robert["email"] == "robert.townes@contoso.com"
    assert contacts["CT000011"]["displayName"] == "Fabrikam, Inc."


def test_paging_with_maxpagesize_follows_next_links(bc):
    first = bc.get("currencies", headers={"Prefer": "odata.maxpagesize=10"})
    assert first.headers["Preference-Applied"] == "odata.maxpagesize=10"
    next_link = first.json()["@odata.nextLink"]
    assert next_link.startswith(bc.root + "currencies?") and "$skiptoken=" in next_link
    rows, pages = bc.all_pages("currencies", 10)
    assert pages == 5
    assert len(rows) == 47 == len({r["id"] for r in rows})
    assert all("@odata.etag" in r for r in rows)


def test_top_limits_the_total_and_orderby_pages_in_order(bc):
    top = bc.get("customers", params={"$top": "2"}).json()
    assert len(top["value"]) == 2 and "@odata.nextLink" not in top
    rows, pages = bc.all_pages("items", 6, params={"$orderby": "unitPrice desc", "$select": "number,unitPrice"})
    prices = [r["unitPrice"] for r in rows]
    assert pages == 4 and len(rows) == 20
    assert prices == sorted(prices, reverse=True)


def test_filter_on_last_modified_date_time_returns_later_changes(bc):
    watermark = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    time.sleep(0.01)
    adatum = bc.get("customers", params={"$filter": "number eq '10000'"}).json()["value"][0]
    changed = bc.patch(
        f"customers({adatum['id']})",
        json={"phoneNumber": "+44 1223 000000", "lastModifiedDateTime": "2000-01-01T00:00:00Z"},
        headers={"If-Match": adatum["@odata.etag"]},
    ).json()
    assert changed["lastModifiedDateTime"] > watermark  # the server sets it and ignores the client's value
    later = bc.get("customers", params={"$filter": f"lastModifiedDateTime gt {watermark}"}).json()["value"]
    # The company contact follows the customer (CustCont-Update), so it changed too; customers only here.
    assert [c["number"] for c in later] == ["10000"]
    assert (
        bc.get("customers", params={"$filter": f"lastModifiedDateTime gt {changed['lastModifiedDateTime']}"}).json()[
            "value"
        ]
        == []
    )


@pytest.mark.parametrize(
    ("expression", "numbers"),
    [
        ("salespersonCode eq 'JO' and startswith(displayName,'a')", ["10000", "40000"]),
        ("country ne 'GB'", ["30000", "40000"]),
        ("not (country eq 'GB') and city eq 'munchen'", ["40000"]),
        ("contains(addressLine1,'road') or postalCode eq 'GU2 7YQ'", ["10000", "50000"]),
        ("creditLimit ge 0 and blocked eq ' ' and taxLiable eq false", ["10000", "20000", "30000", "40000", "50000"]),
        ("currencyId eq 00000000-0000-0000-0000-000000000000 and number gt '30000'", ["40000", "50000"]),
        ("displayName eq 'O''Brien Ltd'", []),
    ],
)
def test_filter_expressions(bc, expression, numbers):
    response = bc.get("customers", params={"$filter": expression, "$select": "number"})
    assert response.status_code == 200, response.text
    assert [c["number"] for c in response.json()["value"]] == numbers


def test_invalid_filter_and_unknown_properties_answer_400(bc):
    syntax = bc.get("customers", params={"$filter": "displayName eq"})
    unknown = bc.get("customers", params={"$filter": "nonsense eq 1"})
    types = bc.get("customers", params={"$filter": "number eq 10000"})
    select = bc.get("customers", params={"$select": "number,nonsense"})
    for response in (syntax, unknown, types, select):
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] == "BadRequest"
        assert "CorrelationId:" in error["message"]


def test_select_returns_only_the_chosen_fields(bc):
    rows = bc.get("items", params={"$select": "number,unitPrice", "$top": "1"}).json()["value"]
    assert set(rows[0]) == {"@odata.etag", "number", "unitPrice"}
    assert rows[0] == {"@odata.etag": rows[0]["@odata.etag"], "number": "1896-S", "unitPrice": 649.4}


def test_patch_and_delete_need_a_current_if_match(bc):
    item = bc.get("items", params={"$filter": "number eq '1896-S'"}).json()["value"][0]
    missing = bc.patch(f"items({item['id']})", json={"unitPrice": 700})
    assert missing.status_code == 400
    assert missing.json()["error"]["code"] == "BadRequest_InvalidToken"
    updated = bc.patch(f"items({item['id']})", json={"unitPrice": 700}, headers={"If-Match": item["@odata.etag"]})
    assert updated.status_code == 200
    assert updated.json()["unitPrice"] == 700
    assert updated.json()["@odata.etag"] != item["@odata.etag"]
    assert updated.headers["ETag"] == updated.json()["@odata.etag"]
    stale = bc.patch(f"items({item['id']})", json={"unitPrice": 710}, headers={"If-Match": item["@odata.etag"]})
    assert stale.status_code == 409
    assert stale.json()["error"]["code"] == "Request_EntityChanged"
    star = bc.patch(f"items({item['id']})", json={"unitPrice": 720}, headers={"If-Match": "*"})
    assert star.status_code == 200 and star.json()["unitPrice"] == 720
    assert bc.delete(f"items({item['id']})").status_code == 400
    assert bc.delete(f"items({item['id']})", headers={"If-Match": item["@odata.etag"]}).status_code == 409
    assert bc.delete(f"items({item['id']})", headers={"If-Match": star.json()["@odata.etag"]}).status_code == 204
    gone = bc.get(f"items({item['id']})")
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "BadRequest_NotFound"


def test_create_follows_business_central_insert_rules(bc):
    created = bc.post(
        "customers", json={"displayName": "Contoso Pharmaceuticals", "currencyCode": "eur", "city": "Leeds"}
    )
    assert created.status_code == 201, created.text
    customer = created.json()
    assert customer["number"] == "C00010"  # number series
    assert customer["currencyCode"] == "EUR"  # Code fields are upper-cased
    euro = bc.get("currencies", params={"$filter": "code eq 'EUR'"}).json()["value"][0]
    assert customer["currencyId"] == euro["id"]
    assert created.headers["Location"] == f"{bc.root}customers({customer['id']})"
    contact = bc.get("contacts", params={"$filter": "displayName eq 'Contoso Pharmaceuticals'"}).json()["value"]
    assert [(c["type"], c["city"]) for c in contact] == [("Company", "Leeds")]
    renamed = bc.patch(
        f"customers({customer['id']})", json={"displayName": "Contoso Pharma"}, headers={"If-Match": "*"}
    ).json()
    assert renamed["displayName"] == "Contoso Pharma"
    company = bc.get(f"contacts({contact[0]['id']})").json()
    assert company["displayName"] == "Contoso Pharma"


def test_create_is_refused_for_duplicates_and_broken_relations(bc):
    duplicate = bc.post("customers", json={"number": "10000", "displayName": "Another Adatum"})
    assert duplicate.status_code == 400
    assert duplicate.json()["error"]["code"] == "Internal_EntityWithSameKeyExists"
    currency = bc.post("customers", json={"displayName": "X", "currencyCode": "XXX"})
    assert currency.status_code == 400 and "Currency" in currency.json()["error"]["message"]
    too_long = bc.post("customers", json={"displayName": "x" * 101})
    assert too_long.json()["error"]["code"] == "Application_StringExceededLength"
    unknown = bc.post("customers", json={"displayName": "X", "colour": "red"})
    assert unknown.status_code == 400 and "colour" in unknown.json()["error"]["message"]
    missing = bc.get("customers(00000000-0000-4000-8000-000000000999)")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "BadRequest_NotFound"
    assert bc.get("customers", params={"$filter": "displayName eq 'X'"}).json()["value"] == []


def _batch_url(bc) -> str:
    return bc.root.split("companies(")[0] + "$batch"


def _create(op_id: str, body: dict) -> dict:
    return {
        "id": op_id,
        "method": "POST",
        "url": f"companies({COMPANY_ID})/customers",
        "headers": {"Content-Type": "application/json"},
        "body": body,
    }


def test_json_batch_runs_every_operation(bc):
    adatum = bc.get("customers", params={"$filter": "number eq '10000'"}).json()["value"][0]
    answer = bc.post(
        _batch_url(bc),
        json={
            "requests": [
                _create("1", {"displayName": "Batch One"}),
                _create("2", {"number": "10000", "displayName": "duplicate"}),
                {
                    "id": "3",
                    "method": "PATCH",
                    "url": f"companies({COMPANY_ID})/customers({adatum['id']})",
                    "headers": {"Content-Type": "application/json", "If-Match": adatum["@odata.etag"]},
                    "body": {"website": "www.adatum.example"},
                },
                {"id": "4", "method": "GET", "url": f"companies({COMPANY_ID})/customers?$filter=number eq '10000'"},
            ]
        },
    )
    assert answer.status_code == 200
    responses = {r["id"]: r for r in answer.json()["responses"]}
    assert [responses[i]["status"] for i in "1234"] == [201, 400, 200, 200]
    assert responses["2"]["body"]["error"]["code"] == "Internal_EntityWithSameKeyExists"
    assert responses["4"]["body"]["value"][0]["website"] == "www.adatum.example"
    assert len(bc.get("customers", params={"$filter": "displayName eq 'Batch One'"}).json()["value"]) == 1


def test_json_batch_with_isolation_snapshot_is_all_or_nothing(bc):
    answer = bc.post(
        _batch_url(bc),
        headers={"Isolation": "snapshot"},
        json={"requests": [_create("a", {"displayName": "Snapshot One"}), _create("b", {"number": "10000"})]},
    )
    statuses = {r["id"]: r["status"] for r in answer.json()["responses"]}
    assert statuses["b"] == 400
    # reported with its own status, as Microsoft's example shows, yet rolled back with the rest
    assert statuses["a"] == 201
    assert bc.get("customers", params={"$filter": "displayName eq 'Snapshot One'"}).json()["value"] == []
    assert len(bc.get("contacts").json()["value"]) == 20  # the rolled-back customer's company contact too


def test_json_batch_answers_operations_without_id_with_id_null(bc):
    """Microsoft's example in "Using OData transactional $batch requests" sends no ids and gets ``"id": null``."""
    answer = bc.post(
        _batch_url(bc),
        json={"requests": [{"method": "GET", "url": "companies"}, {"method": "GET", "url": "companies"}]},
    )
    assert [(r["id"], r["status"]) for r in answer.json()["responses"]] == [(None, 200), (None, 200)]


def test_json_batch_refuses_more_than_100_operations(bc):
    answer = bc.post(
        _batch_url(bc), json={"requests": [{"id": str(i), "method": "GET", "url": "companies"} for i in range(101)]}
    )
    assert answer.status_code == 400
    assert "100" in answer.json()["error"]["message"]


def test_payment_terms_shipment_methods_and_shipping_agents(sandbox) -> None:
    # API v2.0 paymentTerms and shipmentMethods; shipping agents through the custom API route (not in API v2.0)
    from dynamics_jobqueue.hooks.business_central import BusinessCentralHook

    hook = BusinessCentralHook()
    terms = {t["code"]: t for page in hook.query("paymentTerms") for t in page.records}
    assert terms["30 DAYS"]["displayName"] == "Net 30 days" and len(terms) == 10
    methods = [m["code"] for page in hook.query("shipmentMethods") for m in page.records]
    assert "FOB" in methods and len(methods) == 14
    agents = {a["code"]: a["displayName"] for page in hook.query("shippingAgents") for a in page.records}
    assert agents["DHL"] == "DHL Systems, Inc." and len(agents) == 4
    adatum = next(c for page in hook.query("customers", filter="number eq '10000'") for c in page.records)
    assert adatum["paymentTermsId"] == terms[adatum["paymentTermsCode"]]["id"]
