"""Dataverse Web API v9.2 as the sandbox serves it: seed, paging, upsert rules, @odata.bind, change tracking
and the multipart $batch (docs/reference/api-contracts.md, "Dataverse Web API")."""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import UTC, datetime, timedelta


def _id_of(response) -> str:
    match = re.search(r"\(([0-9a-f-]{36})\)$", response.headers["OData-EntityId"])
    assert match, response.headers
    return match.group(1)


def test_crm_seed(dv):
    users = dv.get(
        "systemusers",
        params={
            "$filter": "isdisabled eq false and islicensed eq true and isintegrationuser eq false",
            "$select": "fullname,internalemailaddress",
        },
    ).json()["value"]
    assert [u["internalemailaddress"] for u in users] == [
        "BC@contoso.com",
        "EH@contoso.com",
        "HR@contoso.com",
        "JO@contoso.com",
        "LT@contoso.com",
        "OF@contoso.com",
        "RB@contoso.com",
    ]
    assert len(dv.get("systemusers").json()["value"]) == 11
    gbp = dv.get("transactioncurrencies").json()["value"]
    assert [(c["isocurrencycode"], c["currencyname"]) for c in gbp] == [("GBP", "Pound Sterling")]
    assert len(dv.get("accounts").json()["value"]) == 3
    contacts = dv.get("contacts", params={"$select": "fullname,_parentcustomerid_value"}).json()["value"]
    assert len(contacts) == 3 and all(c["_parentcustomerid_value"] for c in contacts)
    units = dv.get("uoms", params={"$select": "name,isschedulebaseuom"}).json()["value"]
    assert [(u["name"], u["isschedulebaseuom"]) for u in units] == [("Primary Unit", True)]


def test_paging_caps_the_page_size_at_5000_and_refuses_skip(dv):
    rows, pages = dv.all_pages("systemusers", 3, params={"$select": "fullname"})
    assert pages == 4 and len({r["systemuserid"] for r in rows}) == 11
    capped = dv.get("systemusers", headers={"Prefer": "odata.maxpagesize=9000"})
    assert capped.headers["Preference-Applied"] == "odata.maxpagesize=5000"
    skip = dv.get("accounts", params={"$skip": "1"})
    assert skip.status_code == 400
    assert skip.json()["error"]["code"] == "0x80048d19"


def test_create_update_and_server_maintained_columns(dv, dv_api):
    who = dv.get("WhoAmI").json()["UserId"]
    created = dv.post("accounts", json={"name": "Adatum Corporation", "accountnumber": "10000"})
    assert created.status_code == 204
    account_id = _id_of(created)
    represented = dv.post(
        "accounts",
        json={"name": "Trey Research", "accountnumber": "20000", "modifiedon": "2001-01-01T00:00:00Z"},
        headers={"Prefer": "return=representation"},
    )
    assert represented.status_code == 201
    body = represented.json()
    assert body["_createdby_value"] == body["_modifiedby_value"] == body["_ownerid_value"] == who
    assert body["modifiedon"].startswith(str(datetime.now(UTC).year))
    assert body["@odata.etag"] == f'W/"{body["versionnumber"]}"'
    crm_user = dv_api("crm")
    jim = crm_user.get("WhoAmI").json()["UserId"]
    assert crm_user.patch(f"accounts({account_id})", json={"telephone1": "+44 1223 000000"}).status_code == 204
    row = dv.get(f"accounts({account_id})").json()
    assert row["_modifiedby_value"] == jim
    assert row["_createdby_value"] == who
    assert row["telephone1"] == "+44 1223 000000"


def test_filter_on_modifiedon_and_other_columns(dv):
    watermark = (datetime.now(UTC) - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    everything = dv.get("accounts", params={"$filter": f"modifiedon ge {watermark}"}).json()["value"]
    assert len(everything) == 3  # the seed was written moments ago
    future = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert dv.get("accounts", params={"$filter": f"modifiedon gt {future}"}).json()["value"] == []
    customers = dv.get(
        "accounts", params={"$filter": "statecode eq 0 and customertypecode eq 3", "$orderby": "name desc"}
    ).json()["value"]
    assert [a["name"] for a in customers] == ["Northwind Traders", "Litware, Inc."]
    assert dv.get("accounts", params={"$filter": "accountnumber eq null"}).json()["value"] != []


def test_filter_on_a_lookups_target_table(dv):
    """``parentcustomerid_account/accountid`` is the parent customer when it is an account, else null."""
    account = dv.get("accounts", params={"$top": "1"}).json()["value"][0]["accountid"]
    parent = _id_of(
        dv.post("contacts", json={"lastname": "Parent", "parentcustomerid_account@odata.bind": f"/accounts({account})"})
    )
    dv.post("contacts", json={"lastname": "Nested", "parentcustomerid_contact@odata.bind": f"/contacts({parent})"})
    by_account = dv.get("contacts", params={"$filter": "parentcustomerid_account/accountid ne null"}).json()["value"]
    by_contact = dv.get("contacts", params={"$filter": "parentcustomerid_contact/contactid ne null"}).json()["value"]
    assert "Parent" in {c["lastname"] for c in by_account} and "Nested" not in {c["lastname"] for c in by_account}
    assert [c["lastname"] for c in by_contact] == ["Nested"]
    exact = dv.get("contacts", params={"$filter": f"parentcustomerid_account/accountid eq {account}"}).json()["value"]
    assert "Parent" in {c["lastname"] for c in exact}
    for path in ("parentcustomerid_account/name", "parentcustomerid_lead/leadid", "ownerid/a/b"):
        refused = dv.get("contacts", params={"$filter": f"{path} ne null"})
        assert refused.status_code == 400, path


def test_upsert_by_id_and_alternate_key(dv):
    new_id = str(uuid.uuid4())
    created = dv.patch(f"accounts({new_id})", json={"name": "Upserted"})
    assert created.status_code == 204 and _id_of(created) == new_id
    updated = dv.patch(f"accounts({new_id})", json={"name": "Upserted again"})
    assert updated.status_code == 204
    assert dv.get(f"accounts({new_id})").json()["name"] == "Upserted again"
    by_key = dv.patch("accounts(accountnumber='30000')", json={"name": "School of Fine Art"})
    assert by_key.status_code == 204
    row = dv.get("accounts(accountnumber='30000')").json()
    assert (row["name"], row["accountnumber"]) == ("School of Fine Art", "30000")
    again = dv.patch("accounts(accountnumber='30000')", json={"telephone1": "1"})
    assert _id_of(again) == row["accountid"]


def test_if_match_and_if_none_match_rules(dv):
    update_only = dv.patch("accounts(accountnumber='40000')", json={"name": "x"}, headers={"If-Match": "*"})
    assert update_only.status_code == 404
    assert update_only.json()["error"]["code"] == "0x80040217"
    assert dv.get("accounts(accountnumber='40000')").status_code == 404
    create_only = dv.patch("accounts(accountnumber='40000')", json={"name": "Alpine"}, headers={"If-None-Match": "*"})
    assert create_only.status_code == 204
    again = dv.patch("accounts(accountnumber='40000')", json={"name": "Alpine 2"}, headers={"If-None-Match": "*"})
    assert again.status_code == 412
    row = dv.get("accounts(accountnumber='40000')").json()
    assert row["name"] == "Alpine"
    current = dv.patch(
        "accounts(accountnumber='40000')", json={"name": "Alpine Ski House"}, headers={"If-Match": row["@odata.etag"]}
    )
    assert current.status_code == 204
    stale = dv.patch("accounts(accountnumber='40000')", json={"name": "lost"}, headers={"If-Match": row["@odata.etag"]})
    assert stale.status_code == 412
    assert dv.get("accounts(accountnumber='40000')").json()["name"] == "Alpine Ski House"
    duplicate = dv.post("accounts", json={"name": "dup", "accountnumber": "40000"})
    assert duplicate.status_code == 412
    assert duplicate.json()["error"]["code"] == "0x80060892"


def test_system_required_columns_are_refused_when_missing(dv):
    """TransactionCurrency's currencyname, currencyprecision, currencysymbol, exchangerate and isocurrencycode are
    SystemRequired (Dataverse table reference): a create without one, or an update to null, fails."""
    euro = {
        "isocurrencycode": "EUR",
        "currencyname": "Euro",
        "currencysymbol": "€",
        "currencyprecision": 2,
        "exchangerate": 1.15,
    }
    for missing in euro:
        refused = dv.post("transactioncurrencies", json={k: v for k, v in euro.items() if k != missing})
        assert refused.status_code == 400, missing
        assert refused.json()["error"] == {
            "code": "0x80040203",
            "message": f"Required field '{missing}' is missing for 'transactioncurrency'.",
        }
    created = dv.post("transactioncurrencies", json=euro)
    assert created.status_code == 204
    cleared = dv.patch(f"transactioncurrencies({_id_of(created)})", json={"currencysymbol": None})
    assert cleared.status_code == 400 and cleared.json()["error"]["code"] == "0x80040203"


def test_odata_bind_writes_and_reads_lookups(dv):
    account_id = _id_of(dv.post("accounts", json={"name": "Relecloud", "accountnumber": "50000"}))
    contact = dv.post(
        "contacts",
        json={
            "firstname": "Jesse",
            "lastname": "Homer",
            "parentcustomerid_account@odata.bind": f"/accounts({account_id})",
        },
        headers={"Prefer": 'return=representation,odata.include-annotations="*"'},
    ).json()
    assert contact["fullname"] == "Jesse Homer"
    assert contact["_parentcustomerid_value"] == account_id
    assert contact["_parentcustomerid_value@Microsoft.Dynamics.CRM.lookuplogicalname"] == "account"
    by_key = dv.patch(
        f"contacts({contact['contactid']})",
        json={"parentcustomerid_account@odata.bind": "/accounts(accountnumber='50000')"},
    )
    assert by_key.status_code == 204
    missing = dv.post(
        "contacts",
        json={"lastname": "Nobody", "parentcustomerid_account@odata.bind": f"/accounts({uuid.uuid4()})"},
    )
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "0x80040217"
    assert (
        "Does Not Exist" in missing.json()["error"]["message"] or "Do Not Exist" in missing.json()["error"]["message"]
    )
    wrong_nav = dv.post("contacts", json={"lastname": "X", "parentcustomer@odata.bind": f"/accounts({account_id})"})
    assert wrong_nav.status_code == 400
    direct = dv.post("contacts", json={"lastname": "X", "_parentcustomerid_value": account_id})
    assert direct.status_code == 400


def test_too_long_text_and_unknown_choice_values_are_refused_as_dataverse_refuses_them(dv):
    """MaxLength and choice (option set) values of the Product reference: name is at most 100 characters,
    producttypecode is 1, 2, 3 or 4. Dataverse answers 400 with its error codes and messages."""
    schedule = dv.post(
        "uomschedules", json={"name": "NAV BOX", "baseuomname": "BOX"}, headers={"Prefer": "return=representation"}
    ).json()
    unit = dv.get("uoms", params={"$filter": f"_uomscheduleid_value eq {schedule['uomscheduleid']}"}).json()["value"]
    product = {
        "productnumber": "LONG-1",
        "defaultuomscheduleid@odata.bind": f"/uomschedules({schedule['uomscheduleid']})",
        "defaultuomid@odata.bind": f"/uoms({unit[0]['uomid']})",
    }
    too_long = dv.post("products", json={**product, "name": "x" * 101})
    assert too_long.status_code == 400
    assert too_long.json()["error"] == {
        "code": "0x80044331",
        "message": "A validation error occurred. The length of the 'name' attribute of the 'product' entity "
        "exceeded the maximum allowed length of '100'.",
    }
    bad_choice = dv.post("products", json={**product, "name": "Box", "producttypecode": 9})
    assert bad_choice.status_code == 400
    assert bad_choice.json()["error"] == {
        "code": "0x8004431a",
        "message": "A validation error occurred. The value 9 of 'producttypecode' on record of type 'product' is "
        "outside the valid range. Accepted Values: 1,2,3,4",
    }
    account = dv.post("accounts", json={"name": "Fabrikam", "customertypecode": 3})
    assert account.status_code == 204
    refused = dv.patch(f"accounts({_id_of(account)})", json={"customertypecode": 13})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "0x8004431a"
    assert dv.post("products", json={**product, "name": "x" * 100, "producttypecode": 4}).status_code == 204


def test_unit_groups_and_products(dv):
    schedule = dv.post(
        "uomschedules", json={"name": "PCS", "baseuomname": "PCS"}, headers={"Prefer": "return=representation"}
    ).json()
    units = dv.get("uoms", params={"$filter": f"_uomscheduleid_value eq {schedule['uomscheduleid']}"}).json()["value"]
    assert [(u["name"], u["quantity"], u["isschedulebaseuom"]) for u in units] == [("PCS", 1.0, True)]
    without_unit = dv.post("products", json={"name": "ATHENS Desk", "productnumber": "1896-S"})
    assert without_unit.status_code == 400
    product = dv.post(
        "products",
        json={
            "name": "ATHENS Desk",
            "productnumber": "1896-S",
            "price": 649.4,
            "producttypecode": 1,
            "defaultuomscheduleid@odata.bind": f"/uomschedules({schedule['uomscheduleid']})",
            "defaultuomid@odata.bind": f"/uoms({units[0]['uomid']})",
        },
        headers={"Prefer": "return=representation"},
    )
    assert product.status_code == 201, product.text
    assert product.json()["_defaultuomid_value"] == units[0]["uomid"]
    assert product.json()["_transactioncurrencyid_value"] is not None  # the organisation's base currency


def test_products_are_created_draft_unless_the_organization_creates_them_active(dv):
    """ "Publish, revise, revert, retire, and activate products" (Microsoft Learn): a product is Draft when
    created, unless Organization.CreateProductsWithoutParentInActiveState is true (false on a fresh install).
    statecode is not valid for create (a client's value is ignored), a statuscode must belong to the state
    (0x80048408), and an update of statecode alone gets that state's default statuscode ("Behavior of
    specialized update operations"). Product states: Active 0/1, Retired 1/2, Draft 2/0, Under Revision 3/3."""
    schedule = dv.post(
        "uomschedules", json={"name": "NAV SET", "baseuomname": "SET"}, headers={"Prefer": "return=representation"}
    ).json()
    unit = dv.get("uoms", params={"$filter": f"_uomscheduleid_value eq {schedule['uomscheduleid']}"}).json()["value"]
    product = {
        "name": "Desk set",
        "defaultuomscheduleid@odata.bind": f"/uomschedules({schedule['uomscheduleid']})",
        "defaultuomid@odata.bind": f"/uoms({unit[0]['uomid']})",
    }
    [organization] = dv.get("organizations").json()["value"]
    assert organization["createproductswithoutparentinactivestate"] is False

    def state(response) -> tuple[int, int]:
        body = dv.get(f"products({_id_of(response)})", params={"$select": "statecode,statuscode"}).json()
        return body["statecode"], body["statuscode"]

    draft = dv.post("products", json={**product, "productnumber": "SET-1", "statecode": 0})
    assert draft.status_code == 204 and state(draft) == (2, 0)
    wrong = dv.post("products", json={**product, "productnumber": "SET-2", "statuscode": 1})
    assert wrong.status_code == 400
    assert wrong.json()["error"]["code"] == "0x80048408"
    assert wrong.json()["error"]["message"].startswith("1 is not a valid status code for state code ProductState.Draft")
    published = dv.patch(f"products({_id_of(draft)})", json={"statecode": 0}, headers={"If-Match": "*"})
    assert published.status_code == 204 and state(draft) == (0, 1)
    mismatch = dv.patch(f"products({_id_of(draft)})", json={"statecode": 1, "statuscode": 1})
    assert mismatch.status_code == 400 and mismatch.json()["error"]["code"] == "0x80048408"
    assert dv.patch(f"products({_id_of(draft)})", json={"statecode": 1, "statuscode": 2}).status_code == 204
    assert state(draft) == (1, 2)

    organization_id = organization["organizationid"]
    dv.patch(f"organizations({organization_id})", json={"createproductswithoutparentinactivestate": True})
    active = dv.post("products", json={**product, "productnumber": "SET-3"})
    assert active.status_code == 204 and state(active) == (0, 1)


def test_change_tracking_reports_changes_and_deletions(dv):
    initial = dv.get("accounts", headers={"Prefer": "odata.track-changes"}, params={"$select": "name"})
    assert initial.headers["Preference-Applied"] == "odata.track-changes"
    body = initial.json()
    assert len(body["value"]) == 3
    delta_link = body["@odata.deltaLink"]
    assert "$deltatoken=" in delta_link
    northwind = next(a for a in body["value"] if a["name"] == "Northwind Traders")
    proseware = next(a for a in body["value"] if a["name"] == "Proseware, Inc.")
    new_id = _id_of(dv.post("accounts", json={"name": "Fabrikam, Inc."}))
    dv.patch(f"accounts({northwind['accountid']})", json={"name": "Northwind Traders Ltd"})
    assert dv.delete(f"accounts({proseware['accountid']})").status_code == 204
    delta = dv.get(delta_link).json()
    changed = {row["accountid"]: row["name"] for row in delta["value"] if "accountid" in row}
    deleted = [row for row in delta["value"] if "reason" in row]
    assert changed == {new_id: "Fabrikam, Inc.", northwind["accountid"]: "Northwind Traders Ltd"}
    assert deleted == [
        {
            "@odata.context": f"{dv.root}$metadata#accounts/$deletedEntity",
            "id": proseware["accountid"],
            "reason": "deleted",
        }
    ]
    assert dv.get(delta["@odata.deltaLink"]).json()["value"] == []


def test_change_tracking_pages_and_refuses_query_options(dv):
    initial = dv.get("systemusers", headers={"Prefer": "odata.track-changes,odata.maxpagesize=4"})
    body = initial.json()
    assert len(body["value"]) == 4 and "@odata.nextLink" in body and "@odata.deltaLink" not in body
    while "@odata.nextLink" in body:
        body = dv.get(body["@odata.nextLink"], headers={"Prefer": "odata.maxpagesize=4"}).json()
    delta_link = body["@odata.deltaLink"]
    for i in range(5):
        dv.post("systemusers", json={"firstname": "Temp", "lastname": str(i)})
    first = dv.get(delta_link, headers={"Prefer": "odata.maxpagesize=3"}).json()
    assert len(first["value"]) == 3 and "@odata.nextLink" in first
    second = dv.get(first["@odata.nextLink"], headers={"Prefer": "odata.maxpagesize=3"}).json()
    assert len(second["value"]) == 2 and "@odata.deltaLink" in second
    for option, value in (("$filter", "name eq 'x'"), ("$orderby", "name"), ("$top", "1")):
        refused = dv.get("accounts", headers={"Prefer": "odata.track-changes"}, params={option: value})
        assert refused.status_code == 400, option


def _part(method: str, url: str, body: dict | None = None, content_id: int | None = None) -> str:
    head = "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
    if content_id is not None:
        head += f"Content-ID: {content_id}\r\n"
    request = f"{method} {url} HTTP/1.1\r\n"
    if body is not None:
        request += "Content-Type: application/json; type=entry\r\n\r\n" + json.dumps(body)
    else:
        request += "Accept: application/json\r\n"
    return head + "\r\n" + request + "\r\n"


def _batch(dv, items: list, prefer: str | None = None):
    boundary = f"batch_{uuid.uuid4()}"
    chunks = []
    for item in items:
        if isinstance(item, list):
            changeset = f"changeset_{uuid.uuid4()}"
            inner = "".join(f"--{changeset}\r\n{part}" for part in item) + f"--{changeset}--\r\n"
            chunks.append(f"--{boundary}\r\nContent-Type: multipart/mixed; boundary={changeset}\r\n\r\n{inner}")
        else:
            chunks.append(f"--{boundary}\r\n{item}")
    headers = {"Content-Type": f"multipart/mixed; boundary={boundary}"}
    if prefer:
        headers["Prefer"] = prefer
    return dv.post("$batch", data=("".join(chunks) + f"--{boundary}--\r\n").encode(), headers=headers)


def _statuses(response, outer: int = 200) -> list[int]:
    assert response.status_code == outer, response.text
    assert response.headers["Content-Type"].startswith("multipart/mixed; boundary=batchresponse_")
    return [int(s) for s in re.findall(r"^HTTP/1\.1 (\d{3}) ", response.text, re.MULTILINE)]


def test_batch_with_an_atomic_change_set_and_content_id_references(dv):
    answer = _batch(
        dv,
        [
            _part("POST", f"{dv.root}accounts", {"name": "Batch Account", "accountnumber": "B1"}),
            [
                _part("POST", "/api/data/v9.2/accounts", {"name": "Parent", "accountnumber": "B2"}, 1),
                _part("POST", "contacts", {"lastname": "Child", "parentcustomerid_account@odata.bind": "$1"}, 2),
            ],
            _part("GET", "accounts?$select=name&$filter=startswith(accountnumber,'B')"),
        ],
    )
    assert _statuses(answer) == [204, 204, 204, 200]
    assert "Content-ID: 2" in answer.text
    child = dv.get("contacts", params={"$filter": "lastname eq 'Child'"}).json()["value"][0]
    parent = dv.get("accounts(accountnumber='B2')").json()
    assert child["_parentcustomerid_value"] == parent["accountid"]
    assert '"name":"Batch Account"' in answer.text


def test_failed_change_set_rolls_back_and_stops_the_batch(dv):
    answer = _batch(
        dv,
        [
            [
                _part("POST", "accounts", {"name": "Rolled back", "accountnumber": "R1"}, 1),
                _part("POST", "accounts", {"name": "Clash", "accountnumber": "R1"}, 2),
            ],
            _part("POST", "accounts", {"name": "Never run", "accountnumber": "R2"}),
        ],
    )
    # stopped at the failure: the batch answers 400 as a whole ("Handling errors", Execute batch operations)
    assert _statuses(answer, outer=400) == [412]
    assert dv.get("accounts", params={"$filter": "startswith(accountnumber,'R')"}).json()["value"] == []


def test_continue_on_error_runs_every_part(dv):
    answer = _batch(
        dv,
        [
            _part("PATCH", "accounts(accountnumber='C1')", {"name": "x"}),
            _part("POST", "accounts", {"name": "One", "accountnumber": "C2"}),
            _part("DELETE", f"accounts({uuid.uuid4()})"),
            _part("POST", "accounts", {"name": "Two", "accountnumber": "C3"}),
        ],
        prefer="odata.continue-on-error",
    )
    assert _statuses(answer) == [204, 204, 404, 204]
    assert answer.headers["Preference-Applied"] == "odata.continue-on-error"
    stopped = _batch(dv, [_part("DELETE", f"accounts({uuid.uuid4()})"), _part("POST", "accounts", {"name": "Three"})])
    assert _statuses(stopped, outer=400) == [404]


def test_batch_of_1000_requests_is_fast_and_1001_is_refused(dv):
    started = time.monotonic()
    answer = _batch(
        dv, [_part("POST", "accounts", {"name": f"N{i}", "accountnumber": f"N{i:04d}"}) for i in range(1000)]
    )
    elapsed = time.monotonic() - started
    assert _statuses(answer) == [204] * 1000
    assert elapsed < 3, elapsed  # about 0.3 s on a 2-core machine; generous for loaded CI hosts
    refused = _batch(dv, [_part("GET", "accounts") for _ in range(1001)])
    assert refused.status_code == 400


def test_choice_columns_read_insert_and_update_options_and_rows_accept_only_them(sandbox) -> None:
    # "Insert, update, delete, and order global option sets" / InsertOptionValue, UpdateOptionValue actions
    from dynamics_jobqueue.hooks.dataverse import DataverseHook
    from dynamics_jobqueue.hooks.errors import ApiError

    hook = DataverseHook()
    assert hook.option_set("account", "paymenttermscode") == {1: "Net 30", 2: "2% 10, Net 30", 3: "Net 45", 4: "Net 60"}
    value = hook.insert_option_value("account", "paymenttermscode", "30 DAYS")
    assert value == 100_000_000
    assert hook.insert_option_value("account", "paymenttermscode", "14 DAYS") == 100_000_001
    hook.update_option_value("account", "paymenttermscode", value, "30 DAYS NET")
    assert hook.option_set("account", "paymenttermscode")[value] == "30 DAYS NET"
    created = hook.create("accounts", {"name": "Option Ltd", "paymenttermscode": value})
    assert hook.get("accounts", created)["paymenttermscode"] == value
    try:
        hook.create("accounts", {"name": "Bad Option Ltd", "paymenttermscode": 5})
    except ApiError as exc:
        assert "The value 5 of 'paymenttermscode' on record of type 'account' is outside the valid range" in str(exc)
        assert "Accepted Values: 1,2,3,4,100000000,100000001" in str(exc)
    else:
        raise AssertionError("an option outside the choice column was accepted")
