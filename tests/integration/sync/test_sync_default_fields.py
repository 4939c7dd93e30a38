"""Fields of Business Central's default CUSTOMER and CONTACT mappings (codeunit 7204 "CDS Setup Defaults") that
API v2.0 exposes: County <-> Address1_StateOrProvince (both tables), Home Page <-> WebSiteUrl (contacts)."""

from __future__ import annotations


def test_county_and_home_page_flow_both_ways(sync) -> None:
    sync.run(run_id="first")
    customer, account = sync.customer("10000"), sync.account("10000")
    robert = sync.only(sync.crm("contacts"), emailaddress1="robert.townes@contoso.com")
    person = sync.only(sync.erp("contacts", "type eq 'Person'"), email="robert.townes@contoso.com")
    assert (customer["state"], account["address1_stateorprovince"]) == ("", None)
    # ERP -> CRM: the customer's County (API v2.0 "state") and the person's Home Page ("website")
    sync.erp_user.update("customers", customer["id"], {"state": "Cambridgeshire"})
    sync.erp_user.update("contacts", person["id"], {"website": "townes.example", "state": "Kent"})
    counts = sync.counts(sync.run("CUSTOMER", "CONTACT", run_id="second"))
    assert counts["CUSTOMER to CRM"] == {"modified": 1} and counts["CONTACT to CRM"] == {"modified": 1}
    assert sync.account("10000")["address1_stateorprovince"] == "Cambridgeshire"
    robert = sync.only(sync.crm("contacts"), contactid=robert["contactid"])
    assert (robert["websiteurl"], robert["address1_stateorprovince"]) == ("townes.example", "Kent")
    # CRM -> ERP, cut to Business Central's County Text[30]
    sync.crm_user.upsert("accounts", account["accountid"], {"address1_stateorprovince": "S" * 40}, mode="update")
    sync.crm_user.upsert("contacts", robert["contactid"], {"websiteurl": "www.townes.example"}, mode="update")
    counts = sync.counts(sync.run("CUSTOMER", "CONTACT", run_id="third"))
    assert counts["CUSTOMER from CRM"] == {"modified": 1} and counts["CONTACT from CRM"] == {"modified": 1}
    assert sync.customer("10000")["state"] == "S" * 30
    assert sync.only(sync.erp("contacts"), id=person["id"])["website"] == "www.townes.example"


def test_blocked_customers_do_not_sync(sync) -> None:
    """Table Filter Blocked = " " (codeunit 7204 "CDS Setup Defaults"): a customer blocked for All, Ship or
    Invoice is not created in the CRM; unblocked, it is."""
    for number, blocked in (("B-ALL", "All"), ("B-SHIP", "Ship"), ("B-OPEN", " ")):
        sync.erp_user.create("customers", {"number": number, "displayName": f"Blocked {blocked}", "blocked": blocked})
    unblocked = {c["number"] for c in sync.erp("customers", "blocked eq ' '")}
    assert len(unblocked) == len(sync.erp("customers")) - 2 == 6
    counts = sync.counts(sync.run(run_id="first"))
    accounts = {a["accountnumber"] for a in sync.crm("accounts")}
    assert unblocked <= accounts and not {"B-ALL", "B-SHIP"} & accounts
    assert sum(counts["CUSTOMER to CRM"].get(k, 0) for k in ("inserted", "coupled")) == len(unblocked)
    blocked = sync.only(sync.erp("customers"), number="B-ALL")
    sync.erp_user.update("customers", blocked["id"], {"blocked": " "})
    counts = sync.counts(sync.run("CUSTOMER", run_id="unblocked"))
    assert counts["CUSTOMER to CRM"] == {"inserted": 1}
    assert sync.account("B-ALL")["name"] == "Blocked All"


def test_contacts_whose_parent_is_a_contact_do_not_sync(sync) -> None:
    """Integration Table Filter ParentCustomerIdType = account (codeunit 7204 "CDS Setup Defaults"): a contact
    whose parent customer is another contact is not read, so it is neither created nor counted."""
    sync.run(run_id="first")
    parent = sync.only(sync.crm("contacts"), emailaddress1="robert.townes@contoso.com")
    account = sync.account("10000")
    sync.crm_user.create(
        "contacts",
        {"lastname": "Child", "parentcustomerid_contact@odata.bind": f"/contacts({parent['contactid']})"},
    )
    employee = {"lastname": "Employee", "parentcustomerid_account@odata.bind": f"/accounts({account['accountid']})"}
    sync.crm_user.create("contacts", employee)
    contact_filter = "statecode eq 0 and parentcustomerid_account/accountid ne null"  # 50_contact.yaml
    in_filter = {c["lastname"] for c in sync.crm("contacts", contact_filter)}
    assert "Employee" in in_filter and "Child" not in in_filter
    assert "Child" in {c["lastname"] for c in sync.crm("contacts", "_parentcustomerid_value ne null")}
    counts = sync.counts(sync.run("CONTACT", run_id="second"))
    assert counts["CONTACT from CRM"] == {"inserted": 1}
    assert [c["lastName"] for c in sync.erp("contacts", "lastName eq 'Employee' or lastName eq 'Child'")] == [
        "Employee"
    ]
