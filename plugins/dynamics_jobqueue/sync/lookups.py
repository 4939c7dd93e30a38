"""Resolve lookups through other mappings' couplings, page by page.

A lookup field (Salesperson Code -> ``ownerid``, Currency Code -> ``transactioncurrencyid``, base unit ->
``defaultuomscheduleid``) holds a record of another mapping. To the CRM, its ERP value is that mapping's ERP
business key (or, through an ``erp_via`` hop, its ERP id); the coupling gives the CRM id, optionally followed
by a ``crm_via`` hop. From the CRM the same chain runs backwards. One query per lookup field and page goes to
the state store; via hops read only the distinct values of the page from the API, in ``or`` chunks.

A value whose target is not coupled becomes "dependency not coupled: <MAPPING> has no coupling for <entity>
<key>", which fails that record alone (docs/reference/dynamics-semantics.md: the recommended order exists to avoid
exactly these dependency errors; the record is retried on the next run).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import pandas as pd

from dynamics_jobqueue.sync.computed import ComputeCache
from dynamics_jobqueue.sync.fingerprint import canonical
from dynamics_jobqueue.sync.mapping import Direction, FieldMapping, Lookup, TableMapping, Via
from dynamics_jobqueue.sync.planner import LookupResolution

if TYPE_CHECKING:
    from dynamics_jobqueue.sync.endpoints import CrmEndpoint, Endpoint, ErpEndpoint
    from dynamics_jobqueue.sync.loader import MappingSet
    from dynamics_jobqueue.sync.store import SyncStore


class LookupResolver:
    """Resolves the lookup fields of one page.

    :param store: the run's state store (couplings of the looked-up mappings).
    :param erp: the ERP side (for ``erp_via`` hops). :param crm: the CRM side (for ``crm_via`` hops).
    :param mappings: every mapping, to find the looked-up one.
    """

    def __init__(
        self, store: SyncStore, erp: ErpEndpoint, crm: CrmEndpoint, mappings: MappingSet, integration_user: str
    ) -> None:
        self.store = store
        self.erp = erp
        self.crm = crm
        self.mappings = mappings
        self.integration_user = integration_user
        self.computed = ComputeCache(erp, crm)
        #: rows of via tables read in this run, by table and field, then by value (:meth:`_via_rows`)
        self._via_cache: dict[tuple[Any, ...], dict[Any, list[dict[str, Any]]]] = {}
        self._via_lock = threading.Lock()

    def resolve(self, mapping: TableMapping, flow: Direction, values: pd.DataFrame) -> dict[str, LookupResolution]:
        """Resolve every lookup field that ``flow`` writes.

        :param values: mapped values of the page (:func:`~dynamics_jobqueue.sync.planner.mapped_values`).
        :return: per target field, what each distinct source value resolves to.
        """
        resolutions: dict[str, LookupResolution] = {}
        for f in mapping.fields_for(flow):
            if f.lookup is None and f.compute is None:
                continue
            target = str(f.target(flow))
            distinct = [v for v in pd.unique(values[target].dropna()) if v is not None]
            lcy = self._lcy_currency(f.lookup)
            if not distinct:
                resolutions[target] = LookupResolution(blank=self._blank(flow, lcy))
                continue
            if f.compute is not None:
                computed = self.computed.compute(f.compute, distinct)
                resolutions[target] = LookupResolution(found=computed.found, missing=computed.missing)
                continue
            assert f.lookup is not None
            if flow is Direction.TO_CRM:
                resolution = self._to_crm(mapping, f, f.lookup, distinct)
            else:
                resolution = self._from_crm(mapping, f, f.lookup, distinct)
                if lcy is not None and lcy in resolution.missing:
                    # 5342 GetNavCurrencyCode: the CRM currency of the LCY is a blank Currency Code.
                    del resolution.missing[lcy]
                    resolution.found[lcy] = None
            resolution.blank = self._blank(flow, lcy)
            if f.lookup.on_missing == "fail":
                self._scope_check(flow, f.lookup, resolution)
            resolutions[target] = resolution
        return resolutions

    def _lcy_currency(self, lookup: Lookup | None) -> str | None:
        """The CRM currency of the company's LCY when ``lookup`` goes to transaction currencies, else ``None``.

        Business Central relates a blank Currency Code to the LCY both ways (5342 "CRM Synch. Helper"
        ``FindNewValueForSpecialMapping``: a blank code is the LCY's transaction currency; ``GetNavCurrencyCode``:
        the transaction currency whose ISO code is the LCY code is a blank code). The LCY has no Currency record,
        so it has no CURRENCY coupling; the ``lcy_currency`` computation finds it (``None`` when it cannot).
        """
        if lookup is None or lookup.option or lookup.crm_via is not None:
            return None
        if self.mappings.get(lookup.mapping).crm.entity_set != "transactioncurrencies":
            return None
        found = self.computed.compute("lcy_currency", ["*"]).found.get("*")
        return None if found is None else str(found).lower()

    @staticmethod
    def _blank(flow: Direction, lcy: str | None) -> Any:
        """What a blank source value becomes in ``flow`` (see :attr:`LookupResolution.blank`): to the CRM a blank
        currency is the LCY's transaction currency (``lcy``); other blanks stay blank."""
        return lcy if flow is Direction.TO_CRM else None

    def _scope_check(self, flow: Direction, lookup: Lookup, resolution: LookupResolution) -> None:
        """Tell "not coupled yet" from "never will be": a target outside the looked-up mapping's filter (an
        account that is not a customer, a currency that does not exist) is out of scope, so the record is
        Skipped instead of failing on every run (a known pain of the reference system).

        Only values without a coupling are checked, with one read per lookup field and page.
        """
        unresolved = [v for v in resolution.missing if v not in resolution.out_of_scope and v not in resolution.found]
        if not unresolved:
            return
        if (lookup.erp_via if flow is Direction.TO_CRM else lookup.crm_via) is not None:
            return
        target = self.mappings.get(lookup.mapping)
        endpoint: Endpoint
        if flow is Direction.TO_CRM:
            side, endpoint, field = target.erp, self.erp, target.erp.key
        else:
            side, endpoint, field = target.crm, self.crm, target.crm.id_field
        if field is None:
            return
        rows = endpoint.read_where(
            side.entity_set,
            field,
            unresolved,
            [field],
            base_filter=endpoint.render_filter(side.filter, self.integration_user),
        )
        in_scope = {canonical(r.get(field)) for r in rows}
        for v in unresolved:
            if v not in in_scope:
                resolution.out_of_scope.add(v)
                condition = f" ({side.filter})" if side.filter else ""
                resolution.missing[v] = f"{side.entity_set} {v} is not a record of {target.name}{condition}"

    def crm_bind_set(self, lookup: Lookup) -> str:
        """The entity set a resolved CRM id belongs to (for ``@odata.bind``)."""
        if lookup.crm_via is not None:
            return lookup.crm_via.entity_set
        return self.mappings.get(lookup.mapping).crm.entity_set

    def _via_rows(self, side: str, via: Via, field: str, values: list[Any]) -> list[dict[str, Any]]:
        """The ``via`` table's rows whose ``field`` is one of ``values``, read once per value and run.

        A via table is a small code list (payment terms, say) that every page of a large run asks again for
        the same few codes: remembered for the run, it costs one read instead of one per page (issue 10's
        requests-per-record target). Only rows whose ``field`` equals an asked value are returned, which is
        all the callers match on.
        """
        endpoint = self.erp if side == "erp" else self.crm
        key = (side, via.entity_set, field, via.filter, via.match, via.value)
        with self._via_lock:
            cache = self._via_cache.setdefault(key, {})
            wanted = [v for v in dict.fromkeys(values) if v is not None and v not in cache]
            if wanted:
                rows = endpoint.read_where(
                    via.entity_set, field, wanted, [via.match, via.value], base_filter=via.filter
                )
                for v in wanted:
                    cache[v] = []
                for row in rows:
                    cache.setdefault(canonical(row.get(field)), []).append(row)
            return [row for v in dict.fromkeys(values) if v is not None for row in cache.get(v, [])]

    def _to_crm(self, mapping: TableMapping, f: FieldMapping, lookup: Lookup, values: list[Any]) -> LookupResolution:
        target = self.mappings.get(lookup.mapping)
        result = LookupResolution()
        crm_ids: dict[Any, str | None] = {}
        if lookup.erp_via is not None:
            via = lookup.erp_via
            rows = self._via_rows("erp", via, via.match, values)
            erp_id_of: dict[Any, Any] = {}
            for row in rows:
                erp_id_of.setdefault(canonical(row.get(via.match)), canonical(row.get(via.value)))
            for v in values:
                if v not in erp_id_of:
                    message = (
                        f"{f.erp} {v!r} has no {via.entity_set} row ({via.match} = {v!r}"
                        f"{', ' + via.filter if via.filter else ''}), so it is outside {lookup.mapping}"
                    )
                    if via.on_missing == "skip":
                        result.out_of_scope.add(v)
                    result.missing[v] = message
            couplings = self.store.couplings("erp_id", sorted({str(i) for i in erp_id_of.values() if i}), target.name)
            crm_of_erp = dict(zip(couplings["erp_id"], couplings["crm_id"], strict=True))
            for v, erp_id in erp_id_of.items():
                if v in values:
                    crm_ids[v] = crm_of_erp.get(erp_id)
                    if crm_ids[v] is None:
                        result.missing[v] = (
                            f"dependency not coupled: {target.name} has no coupling for {target.erp.entity_set} "
                            f"{erp_id} ({f.erp} {v!r}); sync {target.name} first or couple the record"
                        )
        else:
            couplings = self.store.couplings("erp_key", [str(v) for v in values], target.name)
            crm_of_key = dict(zip(couplings["erp_key"], couplings["crm_id"], strict=True))
            for v in values:
                crm_ids[v] = crm_of_key.get(str(v))
                if crm_ids[v] is None:
                    result.missing[v] = (
                        f"dependency not coupled: {target.name} has no coupling for {target.erp.entity_set} "
                        f"{target.erp.key} {v!r}; sync {target.name} first or couple the record"
                    )
        coupled = {v: c for v, c in crm_ids.items() if c}
        if lookup.crm_via is not None and coupled:
            via = lookup.crm_via
            rows = self._via_rows("crm", via, via.match, sorted(set(coupled.values())))
            value_of = {canonical(r.get(via.match)): canonical(r.get(via.value)) for r in rows}
            for v, crm_id in coupled.items():
                if crm_id in value_of:
                    result.found[v] = value_of[crm_id]
                else:
                    result.missing[v] = (
                        f"{via.entity_set} has no row with {via.match} = {crm_id} "
                        f"({target.name} record for {f.erp} {v!r}{', ' + via.filter if via.filter else ''})"
                    )
        else:
            # an option mapping's coupling holds the option's value as text; the choice column takes the number
            result.found.update({v: int(c) for v, c in coupled.items()} if lookup.option else coupled)
        return result

    def _from_crm(self, mapping: TableMapping, f: FieldMapping, lookup: Lookup, values: list[Any]) -> LookupResolution:
        target = self.mappings.get(lookup.mapping)
        result = LookupResolution()
        # an option mapping's coupling holds the option's value as text (the CRM value is the number)
        target_crm_of: dict[Any, Any] = {v: _option_text(v) if lookup.option else v for v in values}
        if lookup.crm_via is not None:
            via = lookup.crm_via
            rows = self._via_rows("crm", via, via.value, values)
            target_crm_of = {}
            for row in rows:
                target_crm_of.setdefault(canonical(row.get(via.value)), canonical(row.get(via.match)))
            for v in values:
                if v not in target_crm_of:
                    result.missing[v] = f"{via.entity_set} has no row with {via.value} = {v}"
        couplings = self.store.couplings("crm_id", sorted({str(c) for c in target_crm_of.values() if c}), target.name)
        erp_of_crm = {
            crm_id: (erp_id, erp_key)
            for crm_id, erp_id, erp_key in zip(
                couplings["crm_id"], couplings["erp_id"], couplings["erp_key"], strict=True
            )
        }
        erp_pairs: dict[Any, tuple[str, str | None]] = {}
        for v, crm_id in target_crm_of.items():
            if crm_id in erp_of_crm:
                erp_pairs[v] = erp_of_crm[crm_id]
            elif lookup.option:
                result.missing[v] = (
                    f"{f.crm} {crm_id} must be coupled to a {target.erp.entity_set} record: no {target.name} code "
                    f"is coupled to that option; add the code in Business Central and sync {target.name}, or choose "
                    "another option"
                )
            else:
                result.missing[v] = (
                    f"dependency not coupled: {target.name} has no coupling for {target.crm.entity_set} {crm_id} "
                    f"({f.crm}); sync {target.name} first or couple the record"
                )
        if lookup.erp_via is not None and erp_pairs:
            via = lookup.erp_via
            rows = self._via_rows("erp", via, via.value, sorted({p[0] for p in erp_pairs.values()}))
            match_of: dict[Any, Any] = {}
            for row in rows:
                match_of.setdefault(canonical(row.get(via.value)), canonical(row.get(via.match)))
            for v, (erp_id, _) in erp_pairs.items():
                if erp_id in match_of:
                    result.found[v] = match_of[erp_id]
                else:
                    message = (
                        f"{target.erp.entity_set} {erp_id} has no {via.entity_set} row ({via.value} = {erp_id}"
                        f"{', ' + via.filter if via.filter else ''})"
                    )
                    if via.on_missing == "skip":
                        result.out_of_scope.add(v)
                    result.missing[v] = message
        else:
            for v, (_, erp_key) in erp_pairs.items():
                result.found[v] = erp_key
        return result


def _option_text(value: Any) -> str:
    """An option's value as its coupling keeps it (``"3"``; a choice column read into a float column gives 3.0)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
