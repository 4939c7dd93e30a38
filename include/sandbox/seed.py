"""Seeding a fresh sandbox from the CRONUS demo data (``include/demo_data/cronus``).

Business Central gets every master record of the demo files, created through the same insert rules
the API runs (so customers and vendors get their company contacts, numbered ``CT000001..`` in
creation order, as BC's marketing setup does). Dataverse gets what an organisation has before the
first synchronisation: the CRONUS salespeople as users (plus one disabled and one unlicensed user),
the integration user, the base currency GBP, the default unit group, and three accounts and three
contacts that exist only in the CRM (invented names, see the README).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sandbox.api import Caller
from sandbox.auth import CRM_USER_EMAIL, INTEGRATION_USER_EMAIL, systemuser_id
from sandbox.business_central import stable_id
from sandbox.dataverse import BUSINESS_UNIT_ID, ORGANIZATION_ID
from sandbox.schema import BC_CUSTOM_SETS, BC_SETS, DATAVERSE_SETS

if TYPE_CHECKING:
    from sandbox.business_central import BusinessCentral
    from sandbox.dataverse import Dataverse
    from sandbox.store import Store

DEMO_DATA = Path(__file__).resolve().parents[1] / "demo_data" / "cronus"

#: CRM-only rows (invented; they exist so that CRM->ERP synchronisation has something to create).
CRM_ONLY_ACCOUNTS = (
    {"name": "Northwind Traders", "city": "Reading", "postalcode": "RG1 1AA", "customertypecode": 3},
    {"name": "Litware, Inc.", "city": "Bristol", "postalcode": "BS1 4DJ", "customertypecode": 3},
    {"name": "Proseware, Inc.", "city": "Leeds", "postalcode": "LS1 5AB", "customertypecode": 1},
)
CRM_ONLY_CONTACTS = (
    ("Ana", "Bowman", "ana.bowman@northwind.example", 0),
    ("Chris", "Preston", "chris.preston@litware.example", 1),
    ("Dana", "Birkby", "dana.birkby@proseware.example", 2),
)
#: Extra CRM users, so that the SALESPEOPLE filter (isdisabled false, islicensed true, isintegrationuser false)
#: matters: a former employee, an unlicensed trial user, and another application's licensed integration user.
EXTRA_USERS = (
    ("Alex", "Former", "alex.former@cronus.example", True, True, False),
    ("Sam", "Trial", "sam.trial@cronus.example", False, False, False),
    ("Pat", "Connector", "pat.connector@cronus.example", False, True, True),
)


def _load(name: str) -> list[dict[str, Any]]:
    return json.loads((DEMO_DATA / f"{name}.json").read_text(encoding="utf-8"))


def seed(store: Store, bc: BusinessCentral, dataverse: Dataverse) -> None:
    """Fill an empty store with the CRONUS data of both systems (one transaction)."""
    bc.seeding = dataverse.seeding = True
    try:
        with store.transaction() as db:
            _seed_bc(db, bc)
            _seed_dataverse(db, dataverse)
    finally:
        bc.seeding = dataverse.seeding = False


#: The LCY of CRONUS UK Ltd. (General Ledger Setup, see SOURCE.md).
LCY_CODE = "GBP"


def _insert_read_only(db: Any, bc: BusinessCentral, set_name: str, key: str, values: dict[str, Any]) -> None:
    """A row of a set the API serves read-only, written as Business Central itself would."""
    entity = BC_SETS[set_name]
    body = {**{n: s.default for n, s in entity.fields.items()}, **values, "id": stable_id(set_name, key)}
    bc._write(db, entity, body, None)


#: The CRONUS payment terms, shipment methods and shipping agents (Code, Description/Name).
PAYMENT_TERMS = {
    "10 DAYS": "Net 10 days",
    "14 DAYS": "Net 14 days",
    "1M(8D)": "1 Month/2% 8 days",
    "21 DAYS": "Net 21 days",
    "2 DAYS": "Net 2 days",
    "30 DAYS": "Net 30 days",
    "60 DAYS": "Net 60 days",
    "7 DAYS": "Net 7 days",
    "CM": "Current Month",
    "COD": "Cash on delivery",
}
SHIPMENT_METHODS = {
    "CFR": "Cost and Freight",
    "CIF": "Cost Insurance and Freight",
    "CIP": "Carriage and Insurance Paid",
    "CPT": "Carriage Paid to",
    "DAF": "Delivered at Frontier",
    "DDP": "Delivered Duty Paid",
    "DDU": "Delivered Duty Unpaid",
    "DEQ": "Delivered ex Quay",
    "DES": "Delivered ex Ship",
    "EXW": "Ex Warehouse",
    "FAS": "Free Alongside Ship",
    "FCA": "Free Carrier",
    "FOB": "Free on Board",
    "PICKUP": "Pickup at Location",
}
SHIPPING_AGENTS = {
    "DHL": "DHL Systems, Inc.",
    "FEDEX": "Federal Express Corporation",
    "OWNLOG": "Own Logistics",
    "UPS": "UPS Worldwide Shipping",
}


def _seed_bc(db: Any, bc: BusinessCentral) -> None:
    for code, description in PAYMENT_TERMS.items():
        days = description.removeprefix("Net ").removesuffix(" days")
        bc.create(
            db,
            BC_SETS["paymentTerms"],
            {"code": code, "displayName": description, "dueDateCalculation": f"{days}D" if days.isdigit() else ""},
        )
    for code, description in SHIPMENT_METHODS.items():
        bc.create(db, BC_SETS["shipmentMethods"], {"code": code, "displayName": description})
    for code, name in SHIPPING_AGENTS.items():
        bc.create(db, BC_CUSTOM_SETS["shippingAgents"], {"code": code, "displayName": name})
    _insert_read_only(
        db,
        bc,
        "companyInformation",
        "CRONUS UK Ltd.",
        {"displayName": "CRONUS UK Ltd.", "country": "GB", "currencyCode": LCY_CODE},
    )
    # The demo's starting date formula <CY-3Y+1D> relative to the work date (today): 1 January, two years ago.
    starting = f"{datetime.now(UTC).year - 2}-01-01"
    for c in _load("currencies"):
        bc.create(
            db,
            BC_SETS["currencies"],
            {
                "code": c["code"],
                "displayName": c["description"][:30],
                "amountDecimalPlaces": c["amount_decimal_places"],
                "amountRoundingPrecision": c["amount_rounding_precision"],
            },
        )
        rate = c.get("exchange_rate")
        if rate:
            _insert_read_only(
                db,
                bc,
                "currencyExchangeRates",
                f"{c['code']}:{starting}",
                {
                    "currencyCode": c["code"],
                    "startingDate": starting,
                    "exchangeRateAmount": rate["exchange_rate_amount"],
                    "relationalExchangeRateAmount": rate["relational_exch_rate_amount"],
                },
            )
    for s in _load("salespeople"):
        bc.create(
            db,
            BC_SETS["salespeoplePurchasers"],
            {
                "code": s["code"],
                "displayName": s["name"],
                "email": s["email"],
                "commissionPercent": s["commission_percent"],
            },
        )
    for u in _load("units_of_measure"):
        bc.create(
            db,
            BC_SETS["unitsOfMeasure"],
            {
                "code": u["code"],
                "displayName": u["description"],
                "internationalStandardCode": u["international_standard_code"],
            },
        )
    for category in _load("item_categories"):
        bc.create(db, BC_SETS["itemCategories"], {"code": category["code"], "displayName": category["description"]})
    contacts = _load("contacts")
    for link, set_name in (("Customer", "customers"), ("Vendor", "vendors")):
        for card in _load(set_name):
            payload = {
                "number": card["number"],
                "displayName": card["name"],
                "addressLine1": card.get("address", ""),
                "addressLine2": card.get("address2", ""),
                "city": card.get("city", ""),
                "state": card.get("county", ""),
                "country": card.get("country_region_code", ""),
                "postalCode": card.get("postal_code", ""),
                "email": card.get("email", ""),
                "paymentTermsCode": card.get("payment_terms_code", ""),
            }
            if set_name == "customers":
                payload["salespersonCode"] = card.get("salesperson_code", "")
                payload["creditLimit"] = card.get("credit_limit_lcy", 0)
            bc.create(db, BC_SETS[set_name], payload)
            company = bc.store.find(BC_SETS["contactsInformation"], "relatedId", stable_id(set_name, card["number"]))
            assert company is not None
            for person in contacts:
                if person["company_link"] == link and person["company_number"] == card["number"]:
                    bc.create(
                        db,
                        BC_SETS["contacts"],
                        {
                            "type": "Person",
                            "displayName": person["name"],
                            "companyNumber": company.body["contactNumber"],
                            "email": card.get("email", ""),
                            "addressLine1": card.get("address", ""),
                            "addressLine2": card.get("address2", ""),
                            "city": card.get("city", ""),
                            "state": card.get("county", ""),
                            "country": card.get("country_region_code", ""),
                            "postalCode": card.get("postal_code", ""),
                        },
                    )
    for item in _load("items"):
        bc.create(
            db,
            BC_SETS["items"],
            {
                "number": item["number"],
                "displayName": item["description"],
                "type": item["type"],
                "itemCategoryCode": item.get("item_category_code", ""),
                "unitPrice": item["unit_price"],
                "unitCost": item["unit_cost"],
                "baseUnitOfMeasureCode": item["base_unit_of_measure"],
                "generalProductPostingGroupCode": item["gen_prod_posting_group"],
                "inventoryPostingGroupCode": item["inventory_posting_group"],
                "grossWeight": item["gross_weight"],
                "netWeight": item["net_weight"],
                "unitVolume": item["unit_volume"],
                "vendorNumber": item.get("vendor_number", ""),
                "vendorItemNumber": item.get("vendor_item_number", ""),
            },
        )
    for resource in _load("resources"):
        bc.create(
            db,
            BC_CUSTOM_SETS["resources"],
            {
                "number": resource["number"],
                "displayName": resource["name"],
                "type": resource["type"],
                "baseUnitOfMeasureCode": resource["base_unit_of_measure"],
                "unitPrice": resource["unit_price"],
                "unitCost": resource["unit_cost"],
                "directUnitCost": resource["direct_unit_cost"],
                "jobTitle": resource["job_title"],
            },
        )


def _seed_dataverse(db: Any, dv: Dataverse) -> None:
    integration = Caller("integration-app", systemuser_id(INTEGRATION_USER_EMAIL))
    users = DATAVERSE_SETS["systemusers"]

    def user(first: str, last: str, email: str, disabled: bool, licensed: bool, **extra: Any) -> None:
        payload = {
            "firstname": first,
            "lastname": last,
            "internalemailaddress": email,
            "domainname": email,
            "isdisabled": disabled,
            "islicensed": licensed,
            **extra,
        }
        row = dv.create(db, users, payload, integration, record_id=systemuser_id(email))
        row.body["_businessunitid_value"] = BUSINESS_UNIT_ID
        row.body["__lookup_types"]["businessunitid"] = "businessunit"
        dv.store.update(db, users, row.id, None, row.version, row.modified, row.body)

    user(
        "#",
        "Business Central Integration",
        INTEGRATION_USER_EMAIL,
        False,
        False,
        applicationid="integration-app",
        accessmode=4,
    )
    for s in _load("salespeople"):
        first, _, last = s["name"].partition(" ")
        user(first, last, s["email"], False, True)
    for first, last, email, disabled, licensed, integration_user in EXTRA_USERS:
        user(first, last, email, disabled, licensed, isintegrationuser=integration_user)
    assert dv.store.get(users, systemuser_id(CRM_USER_EMAIL)) is not None

    # The organization as a fresh installation of Dynamics 365 Sales has it: products are created Draft.
    dv.create(
        db,
        DATAVERSE_SETS["organizations"],
        {"name": "CRONUS", "createproductswithoutparentinactivestate": False},
        integration,
        record_id=ORGANIZATION_ID,
    )
    dv.create(
        db,
        DATAVERSE_SETS["transactioncurrencies"],
        {
            "isocurrencycode": "GBP",
            "currencyname": "Pound Sterling",
            "currencysymbol": "£",
            "currencyprecision": 2,
            "exchangerate": 1.0,
        },
        integration,
    )
    dv.create(
        db,
        DATAVERSE_SETS["uomschedules"],
        {"name": "Default Unit", "baseuomname": "Primary Unit", "description": "Default Unit"},
        integration,
    )
    crm_user = Caller("crm-user-app", systemuser_id(CRM_USER_EMAIL))
    account_ids = []
    for account in CRM_ONLY_ACCOUNTS:
        row = dv.create(
            db,
            DATAVERSE_SETS["accounts"],
            {
                "name": account["name"],
                "address1_city": account["city"],
                "address1_postalcode": account["postalcode"],
                "address1_country": "GB",
                "customertypecode": account["customertypecode"],
            },
            crm_user,
        )
        account_ids.append(row.id)
    for first, last, email, account_index in CRM_ONLY_CONTACTS:
        dv.create(
            db,
            DATAVERSE_SETS["contacts"],
            {
                "firstname": first,
                "lastname": last,
                "emailaddress1": email,
                "parentcustomerid_account@odata.bind": f"/accounts({account_ids[account_index]})",
            },
            crm_user,
        )
