"""Computed fields: values Business Central's integration subscribers write beyond the field mappings.

Business Central writes some Dataverse columns in code rather than through Integration Field Mappings (codeunit
5341 "CRM Int. Table. Subscriber" with codeunit 5342 "CRM Synch. Helper"). A mapping file names such a field with
``compute`` and the name of one of the computations below; the value flows to the CRM only::

    - {erp: code, crm: exchangerate, compute: exchange_rate}
    - {crm: pricelevelid, compute: default_price_list}

=================== ========================================================================================
``exchange_rate``   the currency's exchange rate against LCY (source: the currency code): the Exchange Rate
                    Amount / Relational Exch. Rate Amount of its latest ``currencyExchangeRates`` row (table 330
                    "Currency Exchange Rate" ``GetCurrentCurrencyFactor``, used by 5342
                    ``GetCRMLCYToFCYExchangeRate`` when the CRM's base currency is the LCY); no row fails the
                    record with Business Central's message (5341 ``CurrencyExchangeRateMissingErr``)
``vendor_name``     the vendor's name (source: the vendor number), read from ``vendors`` (5342
                    ``UpdateCRMProductVendorNameIfChanged``); blank when there is no such vendor
``lcy_currency``    binds the CRM transaction currency whose ISO code is the company's LCY
                    (``companyInformation.currencyCode``; 5341 ``UpdateCRMProductAfterTransferRecordFields``)
``default_price_list`` binds the default price list "Business Central Default Price List" in the LCY currency,
                    created when absent (5342 ``FindCRMDefaultPriceList`` / ``CreateCRMDefaultPriceList``)
=================== ========================================================================================

A computation that binds a record (``bind_set``) is written with ``@odata.bind`` and read back as
``_<attribute>_value``, as a lookup is. Results are kept for the run (:class:`ComputeCache`), so a page costs at
most one read per computation and distinct source value.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dynamics_jobqueue.hooks.errors import ConflictError

if TYPE_CHECKING:
    from dynamics_jobqueue.sync.endpoints import CrmEndpoint, ErpEndpoint

#: Dataverse's currency service name in Business Central's messages (codeunit 5344 "CRM Product Name"
#: ``CDSServiceName``).
CDS_SERVICE_NAME = "Dataverse"
#: Business Central's message when a currency has no exchange rate (5341 ``CurrencyExchangeRateMissingErr``).
EXCHANGE_RATE_MISSING = (
    "Cannot create or update the currency {code} in {service}, because there is no exchange rate defined for it."
)
#: Name of the default price list (5342 ``DefaultNAVPriceListNameTxt`` '%1 Default Price List' with
#: ``PRODUCTNAME.Short()``).
DEFAULT_PRICE_LIST_NAME = "Business Central Default Price List"
#: Namespace of the id of the default price list the sync creates (uuid5 of its name and currency).
PRICE_LIST_NAMESPACE = uuid.UUID("0d6f8a52-3f0e-4f7c-9d7a-6c2b9e0f4a13")
#: Digits Dataverse keeps of ``transactioncurrency.exchangerate`` (its Precision is 10).
EXCHANGE_RATE_DIGITS = 10


@dataclass(frozen=True)
class Computation:
    """One computation: its name, whether it reads a source field, and the entity set of a bound record."""

    name: str
    needs_source: bool
    bind_set: str | None = None


COMPUTATIONS: dict[str, Computation] = {
    c.name: c
    for c in (
        Computation("exchange_rate", needs_source=True),
        Computation("vendor_name", needs_source=True),
        Computation("lcy_currency", needs_source=False, bind_set="transactioncurrencies"),
        Computation("default_price_list", needs_source=False, bind_set="pricelevels"),
    )
}

#: The source value of a computation that reads no field (every record gets the same result).
NO_SOURCE = "*"


@dataclass
class ComputeResult:
    """Per distinct source value: the computed value, or why it cannot be computed (the record fails)."""

    found: dict[Any, Any] = field(default_factory=dict)
    missing: dict[Any, str] = field(default_factory=dict)


class ComputeCache:
    """Computes values, keeping the ones that need no source for the run (the LCY, the default price list).

    :param erp: the ERP side. :param crm: the CRM side.
    """

    def __init__(self, erp: ErpEndpoint, crm: CrmEndpoint) -> None:
        self.erp = erp
        self.crm = crm
        self._fixed: dict[str, Any] = {}
        self._lock = threading.Lock()

    def compute(self, name: str, values: list[Any]) -> ComputeResult:
        """Compute ``name`` for the distinct source ``values`` of one page.

        :raises KeyError: for an unknown computation (mapping validation prevents it).
        """
        if name == "exchange_rate":
            return self._exchange_rates(values)
        if name == "vendor_name":
            return self._vendor_names(values)
        with self._lock:
            if name not in self._fixed:
                self._fixed[name] = self._lcy_currency() if name == "lcy_currency" else self._default_price_list()
        value, problem = self._fixed[name]
        if problem:
            return ComputeResult(missing={v: problem for v in values})
        return ComputeResult(found={v: value for v in values})

    def _exchange_rates(self, codes: list[Any]) -> ComputeResult:
        rows = self.erp.read_where(
            "currencyExchangeRates",
            "currencyCode",
            codes,
            ["currencyCode", "startingDate", "exchangeRateAmount", "relationalExchangeRateAmount"],
        )
        latest: dict[str, dict[str, Any]] = {}
        for row in rows:
            code = str(row.get("currencyCode") or "")
            if code not in latest or str(row.get("startingDate")) > str(latest[code].get("startingDate")):
                latest[code] = row
        result = ComputeResult()
        for code in codes:
            found = latest.get(str(code))
            relational = float(found.get("relationalExchangeRateAmount") or 0) if found else 0.0
            rate = float(found.get("exchangeRateAmount") or 0) / relational if found and relational else 0.0
            if rate == 0:
                result.missing[code] = EXCHANGE_RATE_MISSING.format(code=code, service=CDS_SERVICE_NAME)
            else:
                result.found[code] = round(rate, EXCHANGE_RATE_DIGITS)
        return result

    def _vendor_names(self, numbers: list[Any]) -> ComputeResult:
        rows = self.erp.read_where("vendors", "number", numbers, ["number", "displayName"])
        names = {str(r.get("number")): r.get("displayName") for r in rows}
        return ComputeResult(found={n: names.get(str(n)) for n in numbers})

    def _lcy_code(self) -> str:
        info = next(iter(self.erp.hook.iter_pages("companyInformation", select=["currencyCode"])), [])
        return str(info[0].get("currencyCode") or "") if info else ""

    def _lcy_currency(self) -> tuple[str | None, str | None]:
        code = self._lcy_code()
        if not code:
            return None, "the company's LCY code (companyInformation currencyCode) is blank"
        rows = self.crm.read_where(
            "transactioncurrencies", "isocurrencycode", [code], ["transactioncurrencyid", "isocurrencycode"]
        )
        if not rows:
            # Business Central creates it here (5342 FindNAVLocalCurrencyInCRM); the organisation's base currency
            # is the LCY in every tenant this project knows, so a missing one is a setup error worth naming.
            # The message is 5342's DynamicsCRMTransactionCurrencyRecordNotFoundErr.
            return None, f"Cannot find the currency with the value '{code}' in {CDS_SERVICE_NAME}."
        return str(rows[0]["transactioncurrencyid"]).lower(), None

    def _default_price_list(self) -> tuple[str | None, str | None]:
        currency, problem = self._lcy_currency()
        if problem:
            return None, problem
        rows = self.crm.read_where(
            "pricelevels", "name", [DEFAULT_PRICE_LIST_NAME], ["pricelevelid", "name", "_transactioncurrencyid_value"]
        )
        for row in rows:
            if str(row.get("_transactioncurrencyid_value") or "").lower() == currency:
                return str(row["pricelevelid"]).lower(), None
        # 5342 CreateCRMDefaultPriceList: a list of that name in another currency gets a twin named with the LCY.
        name = DEFAULT_PRICE_LIST_NAME if not rows else f"Business Central {self._lcy_code()} Default Price List"
        if rows:
            named = self.crm.read_where(
                "pricelevels", "name", [name], ["pricelevelid", "name", "_transactioncurrencyid_value"]
            )
            if named:
                return str(named[0]["pricelevelid"]).lower(), None
        # Created with an id derived from the name, so that two mappings running at once (RESOURCE-PRODUCT and
        # ITEM-PRODUCT are independent tasks) or a run repeated after a crash make one price list, not two.
        price_list_id = str(uuid.uuid5(PRICE_LIST_NAMESPACE, f"{name}:{currency}"))
        with contextlib.suppress(ConflictError):  # the other task created it first
            self.crm.hook.upsert(
                "pricelevels",
                price_list_id,
                {"name": name, "transactioncurrencyid@odata.bind": f"/transactioncurrencies({currency})"},
                mode="create",
            )
        return price_list_id, None
