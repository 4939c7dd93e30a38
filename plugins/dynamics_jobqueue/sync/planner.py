"""Plan one page of a mapping run: what happens to each candidate record. Pure pandas, no I/O.

One pass of a run moves records one way (:attr:`Direction.TO_CRM`: source ERP, destination CRM, or
:attr:`Direction.FROM_CRM`). For a page of source records the runner gathers, from the state store and the
APIs, the couplings, the record error state, the resolved lookups and (ERP->CRM pass of a bidirectional
mapping) the CRM records changed since the last sync; :func:`plan_page` then decides per record, following
docs/reference/dynamics-semantics.md section 1, "One run of one mapping":

========== ==============================================================================================
IGNORE     already handled in this run, or an echo of the sync's own write (the source has not changed since
           the coupling's last synced modified-on); not counted
SKIP       marked Skipped after repeated errors, out of the mapping's scope (a lookup's ``on_missing: skip``),
           or uncoupled while *Synch. Only Coupled Records* finds no match
FAIL       a lookup target is not coupled ("dependency not coupled"), or an update conflict with resolution
           ``none`` (or ``ask`` with no user's choice yet): both sides changed and a *bidirectional* field would
           change (BC's rule and message)
UNCHANGED  coupled and the mapped values equal what the destination holds (by fingerprint; no read)
UPDATE     coupled and the mapped values differ
INSERT     not coupled: match-based coupling first, then create and couple (or COUPLE under only-coupled)
COUPLE     not coupled under *Synch. Only Coupled Records*: couple if a match exists, else SKIP (also SKIP
           when a lookup target is not coupled: the record waits for the Full Synch. Review)
DEFER      update conflict resolved ``take_crm_data``: nothing is written to the CRM, the CRM->ERP pass wins
========== ==============================================================================================
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import pandas as pd

from dynamics_jobqueue.sync.computed import NO_SOURCE
from dynamics_jobqueue.sync.fingerprint import canonical, canonical_frame, fingerprint_rows
from dynamics_jobqueue.sync.mapping import Direction, FieldMapping, TableMapping, UpdateConflictResolution
from dynamics_jobqueue.sync.transformations import apply_all

#: Column of a source frame holding the record's change marker: the ERP's lastModifiedDateTime (UTC
#: ``Timestamp``) or the CRM's versionnumber (int).
MODIFIED = "_modified"
#: Column of a counterpart frame holding the CRM record's modifiedon, for messages.
MODIFIED_ON = "_modifiedon"
#: Reason of an UNCHANGED record whose two sides both changed, to the same values.
BOTH_SAME = "both sides hold the same values"
#: Reason of an IGNOREd record that has not changed since its last sync (the sync's own write echoed back).
NOT_MODIFIED = "not modified since its last sync"
#: Reason of an IGNOREd pair of a full sync whose CRM side alone changed since the last sync.
CRM_SIDE_CHANGED = "only the CRM side changed since the last sync: the CRM->ERP pass brings its change"
#: Reason of a SKIP for a record marked Skipped (its error state stays until reset).
MARKED_SKIPPED = "marked Skipped after repeated errors; reset it to sync again"


class Action(StrEnum):
    """What a plan does with one record (see the module docstring)."""

    IGNORE = "ignore"
    SKIP = "skip"
    FAIL = "fail"
    UNCHANGED = "unchanged"
    UPDATE = "update"
    INSERT = "insert"
    COUPLE = "couple"
    DEFER = "defer"


class ErrorKind(StrEnum):
    """Why a record failed; conflicts keep the other side's record for the next run's check."""

    RECORD = "record"
    DEPENDENCY = "dependency"
    CONFLICT = "conflict"
    DELETED = "deleted"


def lookup_value_field(f: FieldMapping, flow: Direction) -> str | None:
    """The source field of ``f`` in ``flow``; CRM lookups are read as ``_<attribute>_value``."""
    source = f.source(flow)
    if source is not None and flow is Direction.FROM_CRM and f.lookup is not None and not f.lookup.option:
        return f"_{source}_value"
    return source


def mapped_values(mapping: TableMapping, flow: Direction, records: pd.DataFrame) -> pd.DataFrame:
    """The values ``flow`` would write, computed from source records: one column per target field.

    Constants are filled in and transformations applied; lookup and computed columns still hold the *source*
    value (a salesperson code, a CRM GUID, a currency code), which :func:`apply_lookups` replaces.

    :param records: source records, one row per record (index: source id).
    :return: canonical values, index aligned with ``records``.
    """
    columns: dict[str, pd.Series] = {}
    for f in mapping.fields_for(flow):
        target = f.target(flow)
        assert target is not None
        if f.has_constant:
            columns[target] = pd.Series([f.constant] * len(records), index=records.index, dtype=object)
            continue
        if f.compute is not None and f.erp is None:
            columns[target] = pd.Series([NO_SOURCE] * len(records), index=records.index, dtype=object)
            continue
        source = lookup_value_field(f, flow)
        series = records[source] if source in records.columns else pd.Series(None, index=records.index)
        columns[target] = apply_all(series.astype(object), f.transformations(flow), records)
    return canonical_frame(pd.DataFrame(columns, index=records.index))


def current_values(mapping: TableMapping, flow: Direction, records: pd.DataFrame) -> pd.DataFrame:
    """The values of ``flow``'s target fields as the destination holds them, read from destination records.

    The counterpart of :func:`mapped_values`: equal frames mean that writing would change nothing.

    :param records: records of the destination side of ``flow`` (CRM records for ``TO_CRM``).
    """
    columns: dict[str, pd.Series] = {}
    for f in mapping.fields_for(flow):
        target = f.target(flow)
        assert target is not None
        name = f"_{target}_value" if flow is Direction.TO_CRM and f.binds else target
        columns[target] = (
            records[name].astype(object) if name in records.columns else pd.Series(None, index=records.index)
        )
    return canonical_frame(pd.DataFrame(columns, index=records.index))


def hash_columns(mapping: TableMapping, flow: Direction) -> list[str]:
    """The target fields a fingerprint covers: every field written in ``flow`` except insert-only ones."""
    return [str(f.target(flow)) for f in mapping.fields_for(flow) if not f.insert_only]


@dataclass
class LookupResolution:
    """What the state store and the APIs answered for one lookup field on one page.

    :param found: source value -> destination value (a CRM GUID to bind, or an ERP code).
    :param out_of_scope: source values whose via hop found no row while ``on_missing`` is ``skip``.
    :param missing: source value -> why it could not be resolved ("dependency not coupled: ...").
    :param blank: the destination value of a blank source value (``None``: blank, i.e. left out to the CRM);
        e.g. the CRM currency of the LCY for a blank Currency Code (:class:`.lookups.LookupResolver`).
    """

    found: dict[Any, Any] = field(default_factory=dict)
    out_of_scope: set[Any] = field(default_factory=set)
    missing: dict[Any, str] = field(default_factory=dict)
    blank: Any = None


def apply_lookups(
    mapping: TableMapping, flow: Direction, values: pd.DataFrame, resolutions: dict[str, LookupResolution]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Replace lookup source values by their destination values.

    A blank value becomes the resolution's :attr:`LookupResolution.blank` (left out when that is ``None``).

    :param resolutions: per target field of a lookup, the :class:`LookupResolution` of this page.
    :return: ``(values, problems)``: resolved values, and per failing record ``action`` (``skip``/``fail``)
        and ``reason`` (a record out of scope is skipped even when another lookup also failed).
    """
    values = values.copy()
    problem_action = pd.Series(None, index=values.index, dtype=object)
    problem_reason = pd.Series(None, index=values.index, dtype=object)
    for f in mapping.fields_for(flow):
        if f.lookup is None and f.compute is None:
            continue
        target = str(f.target(flow))
        resolution = resolutions.get(target, LookupResolution())
        # a blank is None, or NaN in a numeric column (a choice column read from the CRM)
        column = values[target].astype(object).where(values[target].notna(), None)
        resolved = pd.Series(
            [resolution.found.get(v) if v is not None else resolution.blank for v in column],
            index=column.index,
            dtype=object,
        )
        skip = column.map(lambda v, r=resolution: v is not None and v in r.out_of_scope)
        missing = column.map(lambda v, r=resolution: v is not None and v not in r.found and v not in r.out_of_scope)
        on_missing = f.lookup.on_missing if f.lookup is not None else "fail"
        if flow is Direction.FROM_CRM and f.lookup is not None and f.lookup.option and on_missing == "clear":
            # An option no code is coupled to fails the record, as in Business Central (5342 "CRM Synch. Helper"
            # ConvertOptionToTable: "%1 %2 must be coupled to a %3 record."); clearing the code would lose it.
            on_missing = "fail"
        looked_up = f.lookup.mapping if f.lookup is not None else str(f.compute)
        if on_missing == "skip":
            skip |= missing
        elif on_missing == "fail":
            reasons = column[missing].map(lambda v, r=resolution: r.missing.get(v) or f"{v!r} not found")
            unset = missing & problem_action.isna()
            problem_action[unset] = Action.FAIL.value
            problem_reason[unset] = reasons[unset]
        problem_action[skip] = Action.SKIP.value
        problem_reason[skip] = column[skip].map(
            lambda v, r=resolution, m=looked_up: r.missing.get(v) or f"{v!r} is outside the {m} mapping"
        )
        values[target] = resolved
    problems = pd.DataFrame({"action": problem_action, "reason": problem_reason}).dropna(subset=["action"])
    return values, problems


@dataclass
class PageInput:
    """Everything :func:`plan_page` needs for one page; index of every frame is the source record id.

    :param source: source records with :data:`MODIFIED`.
    :param values: resolved mapped values (:func:`mapped_values` + :func:`apply_lookups`).
    :param problems: lookup problems (``action``, ``reason``).
    :param couplings: coupled records: ``dest_id``, ``source_synced_at`` (source change marker last synced),
        ``dest_synced_at`` (destination change marker last read, blank after the sync wrote it), ``dest_hash``
        (fingerprint of the destination's values of this flow's fields). Markers compare with :data:`MODIFIED`
        of the same side (timestamps for the ERP, versions for the CRM).
    :param record_state: ``skipped`` and ``handled`` (already processed in this run) flags.
    :param counterpart: ERP->CRM pass of a bidirectional mapping only: the CRM records changed since the last
        sync by someone other than the integration user, indexed by CRM id, with :data:`MODIFIED` and the
        current values of the ``TO_CRM`` target fields (:func:`current_values`), and :data:`MODIFIED_ON`.
    :param deferred: ERP->CRM pass only: records left to the write-back after the CRM->ERP pass (pairs created
        from the CRM that still owe the CRM their to-CRM fields), IGNOREd here.
    :param owed: ERP->CRM pass only: pairs created from the CRM that still owe the CRM their to-CRM fields
        (``write_back_pending``), whether or not they are deferred.
    :param choices: ERP->CRM pass of a mapping resolving update conflicts by ``ask``: per source id, the user's
        choice not applied yet (``resolution``: ``send_erp_data`` or ``take_crm_data``, ``chosen_by``).
    """

    source: pd.DataFrame
    values: pd.DataFrame
    problems: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["action", "reason"]))
    couplings: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=["dest_id", "source_synced_at", "dest_synced_at", "dest_hash"])
    )
    record_state: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["skipped", "handled"]))
    counterpart: pd.DataFrame | None = None
    deferred: pd.Series | None = None
    owed: pd.Series | None = None
    choices: pd.DataFrame | None = None


def plan_page(
    mapping: TableMapping, flow: Direction, page: PageInput, *, ignore_echoes: bool = True, write_back: bool = False
) -> pd.DataFrame:
    """Decide the :class:`Action` of every record of a page.

    :param mapping: the table mapping. :param flow: ``TO_CRM`` or ``FROM_CRM``.
    :param ignore_echoes: treat records not modified since their last sync as echoes (off when the runner
        deliberately replays records: a full sync, or the write-back of fields of records it has just created).
    :param write_back: the page writes back the to-CRM fields of pairs just created from the CRM.
    :return: a frame indexed like ``page.source`` with ``action``, ``reason``, ``kind`` (an
        :class:`ErrorKind` for FAIL), ``dest_id``, ``hash`` (fingerprint of the mapped values), and for the
        ERP->CRM pass of a bidirectional mapping ``dest_changed`` (the CRM side changed too), ``consumed``
        (the CRM->ERP pass must leave the pair alone), ``detail`` (of a conflict: JSON list of
        ``{"field", "erp_field", "erp", "crm"}``, both values of every field that differs) and ``chosen``
        (a user's choice of :attr:`PageInput.choices` was applied).
    """
    index = page.source.index
    columns = hash_columns(mapping, flow)
    couplings = page.couplings.reindex(index)
    state = page.record_state.reindex(index)
    dest_id = couplings["dest_id"].astype(object)
    coupled = dest_id.notna()
    fingerprint = fingerprint_rows(page.values.reindex(index), columns)

    action = pd.Series(None, index=index, dtype=object)
    reason = pd.Series("", index=index, dtype=object)
    kind = pd.Series(None, index=index, dtype=object)
    dest_changed = pd.Series(False, index=index, dtype=bool)
    consumed = pd.Series(False, index=index, dtype=bool)
    detail = pd.Series(None, index=index, dtype=object)
    chosen = pd.Series(False, index=index, dtype=bool)

    def decide(mask: pd.Series, what: Action, why: Any = "") -> None:
        todo = mask & action.isna()
        action[todo] = what.value
        if isinstance(why, pd.Series):
            reason[todo] = why[todo]
        else:
            reason[todo] = why

    decide(state["handled"].astype("boolean").fillna(False).astype(bool), Action.IGNORE, "already handled in this run")
    if page.deferred is not None:
        deferred = page.deferred.reindex(index).astype("boolean").fillna(False).astype(bool)
        decide(deferred, Action.IGNORE, "its to-CRM fields are written back after the CRM->ERP pass")
    synced_at = couplings["source_synced_at"]
    # The source has not changed since the pair's last sync (its marker is the one the sync last wrote or read).
    echo = (coupled & synced_at.notna() & (page.source[MODIFIED] <= synced_at).fillna(False)).astype(bool)
    if ignore_echoes:
        decide(echo, Action.IGNORE, NOT_MODIFIED)
    skipped = state["skipped"].astype("boolean").fillna(False).astype(bool)
    decide(skipped, Action.SKIP, MARKED_SKIPPED)
    if not page.problems.empty:
        problems = page.problems.reindex(index)
        if mapping.synch_only_coupled_records:
            # BC leaves uncoupled records alone under Synch. Only Coupled Records: one whose lookup target is not
            # coupled yet waits (Skipped) for the Full Synch. Review instead of failing on every scheduled run.
            waits = (problems["action"] == Action.FAIL.value).fillna(False).astype(bool) & ~coupled
            decide(waits, Action.SKIP, "not coupled (synch_only_coupled_records); " + problems["reason"].fillna(""))
        for what in (Action.SKIP, Action.FAIL):
            mask = problems["action"] == what.value
            if what is Action.FAIL:
                kind[mask & action.isna()] = ErrorKind.DEPENDENCY.value
            decide(mask.fillna(False).astype(bool), what, problems["reason"].fillna(""))

    same = coupled & (fingerprint == couplings["dest_hash"])
    decide(same, Action.UNCHANGED)

    if page.counterpart is not None and flow is Direction.TO_CRM:
        counterpart = page.counterpart.reindex(dest_id.where(coupled, None).tolist())
        counterpart.index = index
        counterpart = mask_omitted_lookups(mapping, counterpart, page.values.reindex(index))
        owed = pd.Series(False, index=index, dtype=bool)
        if page.owed is not None:
            owed = page.owed.reindex(index).astype("boolean").fillna(False).astype(bool)
            counterpart = fill_owed_fields(mapping, counterpart, page.values.reindex(index), owed)
        present = counterpart[MODIFIED].notna()
        dest_synced = couplings["dest_synced_at"]
        newer = (counterpart[MODIFIED] > dest_synced).fillna(False).astype(bool)
        crm_changed = present & (dest_synced.isna() | newer)
        dest_changed = (crm_changed & coupled).astype(bool)
        if not write_back:
            # A full sync reads every ERP record, changed or not. One unchanged since the pair's last sync while
            # the CRM record changed is no update conflict and must not overwrite the CRM's edit: the CRM->ERP
            # pass of the same run brings that edit to the ERP (an update conflict is both sides changing).
            decide(dest_changed & echo, Action.IGNORE, CRM_SIDE_CHANGED)
        # Compare with the CRM record as it is whenever it was read (changed since the last sync, or every
        # record of a full sync): equal values are Unchanged whatever the stored fingerprint says (it may hold
        # a default the CRM filled in, which masking leaves out).
        compared = present & coupled & action.isna()
        equal = pd.Series(False, index=index)
        if compared.any():
            equal[compared] = fingerprint_rows(counterpart[compared], columns) == fingerprint[compared]
            # A pair owing its write-back is written even when both sides agree: the CRM still lacks the
            # to-CRM fields (the equality above counts them as delivered).
            decide(equal & ~owed, Action.UNCHANGED, BOTH_SAME)
            decide(equal & owed, Action.UPDATE, "the to-CRM fields owed since the create are written back")
            consumed |= equal & owed & (action == Action.UPDATE.value)
        both = dest_changed & action.isna()
        if both.any():
            # BC (codeunit 5345 "Integration Rec. Synch. Invoke", SynchRecord): both sides changed is a conflict only
            # when a *bidirectional* field would change; otherwise the ERP's values are written (BC's ForceModify)
            # and the CRM's changes of other fields flow back in the CRM->ERP pass.
            bidirectional = bidirectional_columns(mapping)
            first_differing = {
                rid: differing[0]
                for rid in index[both & ~equal]
                if (differing := differing_columns(bidirectional, page.values.loc[rid], counterpart.loc[rid]))
            }
            conflict = pd.Series(False, index=index)
            conflict[list(first_differing)] = True
            rule = mapping.resolve_update_conflicts
            if rule is UpdateConflictResolution.ASK:
                # A user's choice (an answered required action) settles the conflict like the rule it names;
                # without one the record fails and the run asks (dynamics_jobqueue.operators.conflicts).
                choices = page.choices if page.choices is not None else pd.DataFrame(columns=["resolution"])
                choice = choices.reindex(index)
                by = choice.get("chosen_by", pd.Series(None, index=index)).fillna("?")
                for value, what, verb in (
                    (UpdateConflictResolution.SEND_ERP_DATA, Action.UPDATE, "ERP data sent"),
                    (UpdateConflictResolution.TAKE_CRM_DATA, Action.DEFER, "CRM data taken"),
                ):
                    mask = conflict & (choice["resolution"] == value.value).fillna(False).astype(bool)
                    decide(mask, what, "conflict resolved by " + by + f": {verb} ({value.value})")
                    chosen |= mask
                    if value is UpdateConflictResolution.SEND_ERP_DATA:
                        consumed |= mask
                conflict &= ~chosen
            if rule in (UpdateConflictResolution.NONE, UpdateConflictResolution.ASK):
                messages = {
                    rid: conflict_message(
                        mapping,
                        page.source.loc[rid],
                        page.values.loc[rid],
                        counterpart.loc[rid],
                        dest_id[rid],
                        first_differing[rid],
                    )
                    for rid in index[conflict]
                }
                for rid in index[conflict]:
                    detail[rid] = conflict_detail(mapping, page.values.loc[rid], counterpart.loc[rid])
                kind[conflict] = ErrorKind.CONFLICT.value
                decide(conflict, Action.FAIL, pd.Series(messages, index=index[conflict]).reindex(index))
                consumed |= conflict
            elif rule is UpdateConflictResolution.SEND_ERP_DATA:
                decide(conflict, Action.UPDATE, "conflict resolved: ERP data sent (send_erp_data)")
                consumed |= conflict
            elif rule is UpdateConflictResolution.TAKE_CRM_DATA:
                decide(conflict, Action.DEFER, "conflict resolved: CRM data taken (take_crm_data)")
        consumed |= dest_changed & skipped

    decide(coupled, Action.UPDATE)
    not_coupled = ~coupled
    decide(not_coupled, Action.COUPLE if mapping.synch_only_coupled_records else Action.INSERT)

    plan = pd.DataFrame(
        {"action": action, "reason": reason, "kind": kind, "dest_id": dest_id, "hash": fingerprint}, index=index
    )
    if page.counterpart is not None and flow is Direction.TO_CRM:
        plan["dest_changed"] = dest_changed
        plan["consumed"] = consumed
        plan["detail"] = detail
        plan["chosen"] = chosen
    return plan


#: BC's message for an update conflict (codeunit 5345 "Integration Rec. Synch. Invoke", label
#: SourceAndDestinationConflictErr): %1 source table, %2 destination table, %3 source field, %4 destination field.
BC_CONFLICT = (
    "Cannot update a record in the {dest_table} table. The mapping between {source_field} field on the "
    "{source_table} table and the {dest_field} field on the {dest_table} table is bi-directional, and one or both "
    "values have changed since the last synchronization."
)


def bidirectional_columns(mapping: TableMapping) -> list[str]:
    """The CRM fields of the ERP->CRM pass whose field pair flows both ways (the only ones that can conflict)."""
    return [
        str(f.target(Direction.TO_CRM))
        for f in mapping.fields_for(Direction.TO_CRM)
        if f.direction is Direction.BIDIRECTIONAL and not f.insert_only
    ]


def differing_columns(columns: list[str], values: pd.Series, crm: pd.Series) -> list[str]:
    """The ``columns`` whose mapped value differs from the CRM's current one, in mapping order."""
    return [c for c in columns if canonical(values.get(c)) != canonical(crm.get(c))]


def conflict_detail(mapping: TableMapping, values: pd.Series, crm: pd.Series) -> str:
    """Both values of every field of an update conflict that differs, as JSON for the required action that asks
    a user to choose: ``[{"field": CRM field, "erp_field": ERP field, "erp": value, "crm": value}, ...]``."""
    erp_fields = {str(f.target(Direction.TO_CRM)): f.erp for f in mapping.fields_for(Direction.TO_CRM)}
    return json.dumps(
        [
            {"field": c, "erp_field": erp_fields.get(c), "erp": canonical(values.get(c)), "crm": canonical(crm.get(c))}
            for c in differing_columns(hash_columns(mapping, Direction.TO_CRM), values, crm)
        ],
        default=str,
    )


def conflict_message(
    mapping: TableMapping, source: pd.Series, values: pd.Series, crm: pd.Series, crm_id: str, field_name: str
) -> str:
    """The update-conflict message: BC's text naming the first bidirectional field that would change, then both
    records, when each changed, and every field that differs (made actionable).

    :param field_name: the CRM field of that first bidirectional field pair.
    """
    pair = next(f for f in mapping.fields_for(Direction.TO_CRM) if f.target(Direction.TO_CRM) == field_name)
    headline = BC_CONFLICT.format(
        source_table=mapping.erp.entity_set,
        dest_table=mapping.crm.entity_set,
        source_field=pair.erp,
        dest_field=field_name,
    )
    differing = differing_columns(hash_columns(mapping, Direction.TO_CRM), values, crm)
    shown = "; ".join(
        f"{c}: ERP gives {canonical(values.get(c))!r}, CRM has {canonical(crm.get(c))!r}" for c in differing[:5]
    )
    key = source.get(mapping.erp.key) if mapping.erp.key else None
    erp_name = f"{mapping.erp.entity_set} {key or source.name}"
    return (
        f"{headline} {erp_name} (modified {_when(source.get(MODIFIED))}) and {mapping.crm.entity_set} "
        f"{crm_id} (modified {_when(crm.get(MODIFIED_ON))}) both changed since the last sync and differ in "
        f"{shown}. "
        + (
            "Choose the winner in the run's required action (Browse > Required Actions)"
            if mapping.resolve_update_conflicts is UpdateConflictResolution.ASK
            else "Make the two records agree, or set resolve_update_conflicts to send_erp_data, take_crm_data "
            f"or ask for {mapping.name}"
        )
    )


def _when(value: Any) -> str:
    if isinstance(value, str) and value:
        value = pd.Timestamp(value)
    if isinstance(value, pd.Timestamp) and not pd.isna(value):
        return value.strftime("%Y-%m-%d %H:%M:%S UTC")
    return "?"


def fill_owed_fields(
    mapping: TableMapping, current: pd.DataFrame, values: pd.DataFrame, owed: pd.Series
) -> pd.DataFrame:
    """For pairs created from the CRM that still owe the CRM their write-back, take the fields that flow to the
    CRM only (the number, the credit limit, the owner) from ``values``: the CRM never received them, so their
    difference is owed, not an edit that conflicts with the ERP's.

    :param current: CRM values (:func:`current_values`) aligned with ``values``. :param owed: per row.
    """
    if not owed.any():
        return current
    current = current.copy()
    for f in mapping.fields_for(Direction.TO_CRM):
        target = str(f.target(Direction.TO_CRM))
        if not f.flows(Direction.FROM_CRM) and target in current.columns and target in values.columns:
            current[target] = current[target].astype(object).where(~owed, values[target])
    return current


def mask_omitted_lookups(mapping: TableMapping, current: pd.DataFrame, values: pd.DataFrame) -> pd.DataFrame:
    """Blank the CRM's current value of lookups the sync leaves out (blank in ``values``), so that a default the
    CRM filled in (the base currency, the creating user as owner) never counts as a difference.

    :param current: CRM values (:func:`current_values`) aligned with ``values``.
    """
    current = current.copy()
    for f in mapping.fields_for(Direction.TO_CRM):
        target = str(f.target(Direction.TO_CRM))
        if (f.binds or f.lookup is not None) and target in current.columns and target in values.columns:
            omitted = values[target].isna()
            current[target] = current[target].astype(object).where(~omitted, None)
    return current
