"""Entity sets the sandbox serves, with their fields as the real APIs name them.

Business Central field names follow the API v2.0 pages of microsoft/ALAppExtensions (Apps/W1/APIV2);
Dataverse names are the logical names of the Dynamics 365 Sales tables (MicrosoftDocs/powerapps-docs).
Each entity set is stored in its own SQLite table (see :mod:`sandbox.store`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

BC = "bc"
DATAVERSE = "dataverse"

#: Field types. ``code`` is a Business Central Code field: text that BC upper-cases on write.
#: ``datetime`` values are UTC ISO 8601 strings with ``Z``; ``date`` values are ``YYYY-MM-DD``.
FIELD_TYPES = ("string", "code", "int", "decimal", "bool", "guid", "datetime", "date", "enum")

EMPTY_GUID = "00000000-0000-0000-0000-000000000000"


@dataclass(frozen=True)
class Field:
    """One property of an entity type.

    :param name: the property name on the wire.
    :param type: one of :data:`FIELD_TYPES`.
    :param maxlen: maximum text length the real table accepts (BC ``Text[n]``/``Code[n]``, Dataverse
        ``MaxLength``); longer values are refused with the API's validation error.
    :param read_only: server-maintained; values sent by a client are ignored.
    :param enum: the allowed values of an ``enum`` field.
    :param default: value of a new record when the client does not send one.
    :param required: Dataverse ``RequiredLevel`` SystemRequired: a create without a value, or an update to
        null, is refused as the service refuses it.
    :param options: the values of a Dataverse choice (option set) column, from its table's column reference
        (learn.microsoft.com/power-apps/developer/data-platform/reference/entities/<table>, "Choices/Options");
        any other value is refused as Dataverse refuses it (0x8004431a, "... is outside the valid range").
    """

    name: str
    type: str
    maxlen: int | None = None
    read_only: bool = False
    enum: tuple[str, ...] | None = None
    default: object = None
    required: bool = False
    options: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Lookup:
    """A Dataverse single-valued navigation property, written with ``<nav>@odata.bind``.

    :param attribute: the lookup's logical name (``parentcustomerid``); read back as ``_<attribute>_value``.
    :param targets: entity set per navigation property name, e.g. ``{"parentcustomerid_account":
        "accounts", "parentcustomerid_contact": "contacts"}`` for a customer lookup, or
        ``{"ownerid": "systemusers"}`` for a simple one.
    """

    attribute: str
    targets: dict[str, str]

    @property
    def value_field(self) -> str:
        return f"_{self.attribute}_value"


@dataclass(frozen=True)
class EntitySet:
    """An entity set (URL segment) and how it is stored.

    :param api: :data:`BC` or :data:`DATAVERSE`.
    :param name: the URL segment, e.g. ``customers``.
    :param type_name: the OData type name used in messages (``customer``, ``account``).
    :param key: primary key property (``id`` for BC, ``<entity>id`` for Dataverse).
    :param business_key: unique business key (BC ``code``/``number``) or Dataverse alternate key.
    :param modified_field: the server-maintained last-modified property.
    :param fields: properties in the order they are rendered.
    :param lookups: Dataverse lookups by attribute name.
    :param read_only: the set refuses writes (405).
    :param display: the table caption BC uses in messages (``Customer``).
    """

    api: str
    name: str
    type_name: str
    key: str
    business_key: str | None
    modified_field: str
    fields: dict[str, Field]
    lookups: dict[str, Lookup] = field(default_factory=dict)
    read_only: bool = False
    display: str = ""

    @property
    def table(self) -> str:
        return f"{self.api}_{self.name}"

    def field_type(self, name: str) -> str | None:
        """The type of a property, or ``None`` if the set has no such property."""
        spec = self.fields.get(name)
        if spec is not None:
            return spec.type
        for lookup in self.lookups.values():
            if lookup.value_field == name:
                return "guid"
        return None

    def property_names(self) -> list[str]:
        """Every readable property, in rendering order (Dataverse lookups last)."""
        return [*self.fields, *(lookup.value_field for lookup in self.lookups.values())]


def _fields(*specs: Field) -> dict[str, Field]:
    return {spec.name: spec for spec in specs}


def S(name: str, maxlen: int | None = None, default: object = "", **kw: object) -> Field:
    return Field(name, "string", maxlen=maxlen, default=default, **kw)  # type: ignore[arg-type]


def C(name: str, maxlen: int = 20, default: object = "", **kw: object) -> Field:
    return Field(name, "code", maxlen=maxlen, default=default, **kw)  # type: ignore[arg-type]


def N(name: str, default: object = 0, type_: str = "decimal", **kw: object) -> Field:
    return Field(name, type_, default=default, **kw)  # type: ignore[arg-type]


def B(name: str, default: object = False, **kw: object) -> Field:
    return Field(name, "bool", default=default, **kw)  # type: ignore[arg-type]


def G(name: str, default: object = EMPTY_GUID, **kw: object) -> Field:
    return Field(name, "guid", default=default, **kw)  # type: ignore[arg-type]


def E(name: str, values: tuple[str, ...], default: str) -> Field:
    return Field(name, "enum", enum=values, default=default)


def _bc_id() -> Field:
    return Field("id", "guid", read_only=False, default=None)


def _bc_modified() -> Field:
    return Field("lastModifiedDateTime", "datetime", read_only=True)


def _bc(name: str, type_name: str, display: str, business_key: str | None, *specs: Field, **kw: object) -> EntitySet:
    return EntitySet(
        api=BC,
        name=name,
        type_name=type_name,
        key="id",
        business_key=business_key,
        modified_field="lastModifiedDateTime",
        fields=_fields(_bc_id(), *specs, _bc_modified()),
        display=display,
        **kw,  # type: ignore[arg-type]
    )


BC_SETS: dict[str, EntitySet] = {
    s.name: s
    for s in (
        _bc(
            "currencies",
            "currency",
            "Currency",
            "code",
            C("code", 10, default=None),
            S("displayName", 30),
            S("symbol", 10),
            S("amountDecimalPlaces", 5, default="2:2"),
            N("amountRoundingPrecision", default=0.01),
        ),
        _bc(
            # API v2.0 page 30085 "APIV2- Currency Exchange Rates": read-only (InsertAllowed/ModifyAllowed false).
            "currencyExchangeRates",
            "currencyExchangeRate",
            "Currency Exchange Rate",
            None,
            C("currencyCode", 10),
            Field("startingDate", "date", default="0001-01-01"),
            N("exchangeRateAmount"),
            C("relationalCurrencyCode", 10),
            N("relationalExchangeRateAmount"),
            read_only=True,
        ),
        _bc(
            # API v2.0 "companyInformation": one record per company; currencyCode is the LCY code (General
            # Ledger Setup). The real page also allows PATCH; the sandbox serves it read-only.
            "companyInformation",
            "companyInformation",
            "Company Information",
            None,
            S("displayName", 100),
            S("addressLine1", 100),
            S("city", 30),
            C("country", 10),
            C("postalCode", 20),
            C("currencyCode", 10),
            read_only=True,
        ),
        _bc(
            "salespeoplePurchasers",
            "salespersonPurchaser",
            "Salesperson/Purchaser",
            "code",
            C("code", 20, default=None),
            S("displayName", 50),
            S("email", 80),
            S("email2", 80),
            S("phoneNo", 30),
            S("jobTitle", 30),
            N("commissionPercent"),
            B("privacyBlocked"),
            B("blocked"),
        ),
        _bc(
            "unitsOfMeasure",
            "unitOfMeasure",
            "Unit of Measure",
            "code",
            C("code", 10, default=None),
            S("displayName", 50),
            C("internationalStandardCode", 10),
            S("symbol", 10),
        ),
        _bc(
            "paymentTerms",
            "paymentTerm",
            "Payment Terms",
            "code",
            C("code", 10, default=None),
            S("displayName", 100),
            S("dueDateCalculation", 32),
            S("discountDateCalculation", 32),
            N("discountPercent"),
            B("calculateDiscountOnCreditMemos"),
        ),
        _bc(
            "shipmentMethods",
            "shipmentMethod",
            "Shipment Method",
            "code",
            C("code", 10, default=None),
            S("displayName", 100),
        ),
        _bc(
            "itemCategories",
            "itemCategory",
            "Item Category",
            "code",
            C("code", 20, default=None),
            S("displayName", 100),
        ),
        _bc(
            "customers",
            "customer",
            "Customer",
            "number",
            C("number", 20, default=None),
            S("displayName", 100),
            E("type", ("Company", "Person"), "Company"),
            S("addressLine1", 100),
            S("addressLine2", 50),
            S("city", 30),
            S("state", 30),
            C("country", 10),
            C("postalCode", 20),
            S("phoneNumber", 30),
            S("email", 80),
            S("website", 80),
            C("salespersonCode", 20),
            N("balanceDue", read_only=True),
            N("creditLimit"),
            B("taxLiable"),
            G("taxAreaId"),
            S("taxAreaDisplayName", 100, read_only=True),
            S("taxRegistrationNumber", 20),
            G("currencyId"),
            C("currencyCode", 10),
            G("paymentTermsId"),
            G("shipmentMethodId"),
            G("paymentMethodId"),
            E("blocked", (" ", "Ship", "Invoice", "All"), " "),
            C("paymentTermsCode", 10),
            C("shipmentMethodCode", 10),
        ),
        _bc(
            "vendors",
            "vendor",
            "Vendor",
            "number",
            C("number", 20, default=None),
            S("displayName", 100),
            S("addressLine1", 100),
            S("addressLine2", 50),
            S("city", 30),
            S("state", 30),
            C("country", 10),
            C("postalCode", 20),
            S("phoneNumber", 30),
            S("email", 80),
            S("website", 80),
            S("taxRegistrationNumber", 20),
            G("currencyId"),
            C("currencyCode", 10),
            G("paymentTermsId"),
            G("paymentMethodId"),
            B("taxLiable"),
            E("blocked", (" ", "Payment", "All"), " "),
            N("balance", read_only=True),
            C("paymentTermsCode", 10),
        ),
        _bc(
            "contacts",
            "contact",
            "Contact",
            "number",
            C("number", 20, default=None),
            E("type", ("Company", "Person"), "Company"),
            S("displayName", 100),
            S("firstName", 30),
            S("middleName", 30),
            S("lastName", 30),
            S("initials", 30),
            C("companyNumber", 20),
            S("companyName", 100, read_only=True),
            B("privacyBlocked"),
            S("taxRegistrationNumber", 20),
            S("addressLine1", 100),
            S("addressLine2", 50),
            S("city", 30),
            S("state", 30),
            C("country", 10),
            C("postalCode", 20),
            S("phoneNumber", 30),
            S("mobilePhoneNumber", 30),
            S("email", 80),
            S("website", 80),
            C("searchName", 100, read_only=True),
            Field("lastInteractionDate", "date", read_only=True, default="0001-01-01"),
        ),
        _bc(
            "contactsInformation",
            "contactInformation",
            "Contact Business Relation",
            None,
            G("contactId"),
            C("contactNumber", 20),
            S("contactName", 100),
            E("contactType", ("Company", "Person"), "Company"),
            G("relatedId"),
            E("relatedType", ("Customer", "Vendor"), "Customer"),
            read_only=True,
        ),
        _bc(
            "items",
            "item",
            "Item",
            "number",
            C("number", 20, default=None),
            S("displayName", 100),
            S("displayName2", 50),
            E("type", ("Inventory", "Service", "Non-Inventory"), "Inventory"),
            G("itemCategoryId"),
            C("itemCategoryCode", 20),
            B("blocked"),
            S("gtin", 14),
            N("inventory", read_only=True),
            N("unitPrice"),
            B("priceIncludesTax"),
            N("unitCost"),
            G("taxGroupId"),
            C("taxGroupCode", 20),
            G("baseUnitOfMeasureId"),
            C("baseUnitOfMeasureCode", 10),
            C("generalProductPostingGroupCode", 20),
            C("inventoryPostingGroupCode", 20),
            N("grossWeight"),
            N("netWeight"),
            N("unitVolume"),
            C("vendorNumber", 20),
            S("vendorItemNumber", 50),
        ),
    )
}

#: The custom API pages that expose resources and shipping agents (``/api/cronus/integration/v1.0/``): API v2.0
#: has neither (shipping agents: table 291 "Shipping Agent", Code[10], Name Text[50]).
BC_CUSTOM_SETS: dict[str, EntitySet] = {
    "shippingAgents": _bc(
        "shippingAgents",
        "shippingAgent",
        "Shipping Agent",
        "code",
        C("code", 10, default=None),
        S("displayName", 50),
        S("internetAddress", 250),
        S("accountNumber", 30),
    ),
    "resources": _bc(
        "resources",
        "resource",
        "Resource",
        "number",
        C("number", 20, default=None),
        S("displayName", 100),
        E("type", ("Person", "Machine"), "Person"),
        C("baseUnitOfMeasureCode", 10),
        N("unitPrice"),
        N("unitCost"),
        N("directUnitCost"),
        S("jobTitle", 30),
        N("capacity"),
        B("blocked"),
        C("vendorNumber", 20),
    ),
}


def _dv(
    name: str,
    type_name: str,
    key: str,
    business_key: str | None,
    *specs: Field,
    lookups: tuple[Lookup, ...] = (),
) -> EntitySet:
    system = (
        Field("createdon", "datetime", read_only=True),
        Field("modifiedon", "datetime", read_only=True),
        Field("versionnumber", "int", read_only=True),
    )
    audit = (
        Lookup("createdby", {}),
        Lookup("modifiedby", {}),
    )
    return EntitySet(
        api=DATAVERSE,
        name=name,
        type_name=type_name,
        key=key,
        business_key=business_key,
        modified_field="modifiedon",
        fields=_fields(Field(key, "guid", default=None), *specs, *system),
        lookups={lk.attribute: lk for lk in (*lookups, *audit)},
    )


def DS(name: str, maxlen: int | None = None, **kw: object) -> Field:
    """A Dataverse text column (null when not set)."""
    return Field(name, "string", maxlen=maxlen, default=None, **kw)  # type: ignore[arg-type]


def DN(name: str, type_: str = "decimal", default: object = None, **kw: object) -> Field:
    return Field(name, type_, default=default, **kw)  # type: ignore[arg-type]


def DO(name: str, options: tuple[int, ...], default: object = None, **kw: object) -> Field:
    """A Dataverse choice (option set) column: an int that must be one of ``options``."""
    return Field(name, "int", default=default, options=options, **kw)  # type: ignore[arg-type]


def _state(
    default_status: int = 1,
    states: tuple[int, ...] = (0, 1),
    statuses: tuple[int, ...] = (1, 2),
    default_state: int = 0,
) -> tuple[Field, Field]:
    return DO("statecode", states, default_state), DO("statuscode", statuses, default_status)


_ADDRESS1 = (
    DS("address1_line1", 250),
    DS("address1_line2", 250),
    DS("address1_line3", 250),
    DS("address1_postalcode", 20),
    DS("address1_city", 80),
    DS("address1_stateorprovince", 50),
    DS("address1_country", 80),
)

_OWNER = Lookup("ownerid", {"ownerid": "systemusers"})
_CURRENCY = Lookup("transactioncurrencyid", {"transactioncurrencyid": "transactioncurrencies"})

DATAVERSE_SETS: dict[str, EntitySet] = {
    s.name: s
    for s in (
        _dv(
            "transactioncurrencies",
            "transactioncurrency",
            "transactioncurrencyid",
            "isocurrencycode",
            # RequiredLevel and MaxLength of Dataverse's TransactionCurrency reference: all five SystemRequired.
            DS("isocurrencycode", 5, required=True),
            DS("currencyname", 100, required=True),
            DS("currencysymbol", 10, required=True),
            DN("currencyprecision", "int", required=True),
            DN("exchangerate", required=True),
            *_state(),
        ),
        _dv(
            "systemusers",
            "systemuser",
            "systemuserid",
            None,
            DS("fullname", 200, read_only=True),
            DS("firstname", 256),
            DS("lastname", 256),
            DS("internalemailaddress", 100),
            DS("mobilephone", 64),
            DS("domainname", 1024),
            DS("applicationid", 100),
            DN("isdisabled", "bool", False),
            DN("islicensed", "bool", True),
            DN("isintegrationuser", "bool", False),
            DN("accessmode", "int", 0),
            lookups=(Lookup("businessunitid", {"businessunitid": "businessunits"}),),
        ),
        _dv(
            "uomschedules",
            "uomschedule",
            "uomscheduleid",
            "name",
            DS("name", 200),
            DS("baseuomname", 100),
            DS("description", 2000),
            *_state(),
        ),
        _dv(
            "uoms",
            "uom",
            "uomid",
            None,
            DS("name", 100),
            DN("quantity", default=1.0),
            DN("isschedulebaseuom", "bool", False, read_only=True),
            lookups=(
                Lookup("uomscheduleid", {"uomscheduleid": "uomschedules"}),
                Lookup("baseuom", {"baseuom": "uoms"}),
            ),
        ),
        _dv(
            "accounts",
            "account",
            "accountid",
            "accountnumber",
            DS("name", 160),
            DS("accountnumber", 20),
            *_ADDRESS1,
            DS("emailaddress1", 100),
            DS("fax", 50),
            DS("websiteurl", 200),
            DS("telephone1", 50),
            DN("creditlimit"),
            # Relationship Type's choices (Account reference); the three columns below are choice columns whose
            # options a client may add (sandbox.optionsets checks them).
            DO("customertypecode", tuple(range(1, 13))),
            DN("paymenttermscode", "int"),
            DN("address1_shippingmethodcode", "int"),
            DN("address1_freighttermscode", "int"),
            DS("description", 2000),
            *_state(),
            lookups=(
                _OWNER,
                _CURRENCY,
                Lookup("primarycontactid", {"primarycontactid": "contacts"}),
                Lookup("parentaccountid", {"parentaccountid": "accounts"}),
            ),
        ),
        _dv(
            "contacts",
            "contact",
            "contactid",
            None,
            DS("firstname", 50),
            DS("middlename", 50),
            DS("lastname", 50),
            DS("fullname", 160, read_only=True),
            DS("emailaddress1", 100),
            DS("telephone1", 50),
            DS("mobilephone", 50),
            DS("fax", 50),
            DS("websiteurl", 200),
            DS("jobtitle", 100),
            *_ADDRESS1,
            *_state(),
            lookups=(
                _OWNER,
                _CURRENCY,
                Lookup(
                    "parentcustomerid",
                    {"parentcustomerid_account": "accounts", "parentcustomerid_contact": "contacts"},
                ),
            ),
        ),
        _dv(
            "products",
            "product",
            "productid",
            "productnumber",
            DS("productnumber", 100),
            DS("name", 100),
            DS("description", 2000),
            DN("price"),
            DN("standardcost"),
            DN("currentcost"),
            DN("quantityonhand"),
            DN("quantitydecimal", "int", 2),
            # Product reference: Product Type 1 Sales Inventory, 2 Miscellaneous Charges, 3 Services, 4 Flat
            # Fees; Status 0 Active, 1 Retired, 2 Draft, 3 Under Revision (Status Reason 1, 2, 0, 3).
            DO("producttypecode", (1, 2, 3, 4), 1),
            DN("stockweight"),
            DN("stockvolume"),
            DS("vendorname", 100),
            DS("vendorid", 100),
            DS("vendorpartnumber", 100),
            # Created Draft unless the organization creates products Active (sandbox.dataverse.PRODUCT_STATES).
            *_state(statuses=(0, 1, 2, 3), states=(0, 1, 2, 3), default_state=2, default_status=0),
            lookups=(
                _CURRENCY,
                Lookup("defaultuomid", {"defaultuomid": "uoms"}),
                Lookup("defaultuomscheduleid", {"defaultuomscheduleid": "uomschedules"}),
                Lookup("pricelevelid", {"pricelevelid": "pricelevels"}),
            ),
        ),
        _dv(
            # The organization table (one row): the settings the sandbox honours. "Create products in active
            # state" (createproductswithoutparentinactivestate) is false on a fresh installation of Dynamics 365
            # Sales ("Publish, revise, revert, retire, and activate products", Microsoft Learn).
            "organizations",
            "organization",
            "organizationid",
            None,
            DS("name", 160),
            DN("createproductswithoutparentinactivestate", "bool", False),
        ),
        _dv(
            # Price List (pricelevel): Name is SystemRequired, MaxLength 100.
            "pricelevels",
            "pricelevel",
            "pricelevelid",
            None,
            DS("name", 100, required=True),
            *_state(statuses=(100001, 100002)),
            lookups=(_CURRENCY,),
        ),
        _dv(
            # Price List Item (productpricelevel): Pricing Method 1 Currency Amount .. 6 Percent Margin -
            # Standard Cost; Quantity Selling Option 1 No Control, 2 Whole, 3 Whole and Fractional.
            "productpricelevels",
            "productpricelevel",
            "productpricelevelid",
            None,
            DN("amount"),
            DO("pricingmethodcode", (1, 2, 3, 4, 5, 6), 1),
            DO("quantitysellingcode", (1, 2, 3), 1),
            DS("productnumber", 100, read_only=True),
            lookups=(
                _CURRENCY,
                Lookup("pricelevelid", {"pricelevelid": "pricelevels"}),
                Lookup("productid", {"productid": "products"}),
                Lookup("uomid", {"uomid": "uoms"}),
                Lookup("uomscheduleid", {"uomscheduleid": "uomschedules"}),
            ),
        ),
    )
}

#: Sets whose rows Dataverse assigns to an owner (user-owned tables).
DATAVERSE_OWNED = frozenset({"accounts", "contacts"})
#: Products need a unit group and a default unit (Dataverse refuses a product without them).
DATAVERSE_REQUIRED_LOOKUPS: dict[str, tuple[str, ...]] = {
    "products": ("defaultuomscheduleid", "defaultuomid"),
    # Price lists need a currency; price list items a price list, a product and a unit (SystemRequired).
    "pricelevels": ("transactioncurrencyid",),
    "productpricelevels": ("pricelevelid", "productid", "uomid"),
}


def all_sets() -> list[EntitySet]:
    """Every stored entity set of both APIs."""
    return [*BC_SETS.values(), *BC_CUSTOM_SETS.values(), *DATAVERSE_SETS.values()]
