"""The integration table mapping: what syncs, in which direction, keyed how.

A :class:`TableMapping` is Business Central's *Integration Table Mapping* with its *Integration Field Mappings*
(docs/reference/dynamics-semantics.md section 1): a direction, a Table Filter (ERP side) and an Integration Table Filter
(CRM side), Synch. Only Coupled Records, field pairs with their own direction, constants, transformation rules,
lookups through another mapping's couplings and match-based coupling priorities, the conflict and deletion
resolutions and the Dependency Filter (``depends_on``). Mappings are data (``include/mappings/*.yaml``); this
module only describes and validates them, :mod:`.loader` reads the files.

Names on each side are the APIs' own (docs/reference/api-contracts.md): Business Central API v2.0 camelCase fields on
the ERP side, Dataverse logical names on the CRM side.
"""

from __future__ import annotations

from collections.abc import Mapping as AbcMapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from dynamics_jobqueue.sync.computed import COMPUTATIONS
from dynamics_jobqueue.sync.transformations import Transformation, parse_transformations


class MappingError(ValueError):
    """A table mapping file is not valid. The message names the file, the mapping and the field.

    :param message: what is wrong and how to fix it.
    :param file: the YAML file. :param mapping: the mapping's name. :param field: the offending entry.
    """

    def __init__(self, message: str, *, file: str = "", mapping: str = "", field: str = "") -> None:
        self.file = file
        self.mapping = mapping
        self.field = field
        self.reason = message
        where = ", ".join(
            part for part in (file, f"mapping {mapping}" if mapping else "", f"field {field}" if field else "") if part
        )
        super().__init__(f"{where}: {message}" if where else message)


class Direction(StrEnum):
    """Direction of a mapping or of one field pair (BC: ToIntegrationTable, FromIntegrationTable, Bidirectional)."""

    TO_CRM = "to_crm"
    FROM_CRM = "from_crm"
    BIDIRECTIONAL = "bidirectional"

    def includes(self, flow: Direction) -> bool:
        """True when data flows ``flow`` (``TO_CRM`` or ``FROM_CRM``) under this direction."""
        return self is Direction.BIDIRECTIONAL or self is flow

    @property
    def label(self) -> str:
        """How logs and the summary name the direction: ``to CRM``, ``from CRM`` or ``both``."""
        return {"to_crm": "to CRM", "from_crm": "from CRM", "bidirectional": "both"}[self.value]


class UpdateConflictResolution(StrEnum):
    """Resolve Update Conflicts: ``none`` fails the record, ``send_erp_data`` lets the ERP win,
    ``take_crm_data`` lets the CRM win (docs/reference/dynamics-semantics.md section 1); ``ask`` fails the record like
    ``none`` and the crm_sync run asks a user in an Airflow required action (Human-in-the-loop: "send ERP data", "take
    CRM data" or "skip"), whose choice the next run applies."""

    NONE = "none"
    SEND_ERP_DATA = "send_erp_data"
    TAKE_CRM_DATA = "take_crm_data"
    ASK = "ask"


class DeletionConflictResolution(StrEnum):
    """Resolve Deletion Conflicts, for a coupled destination record that no longer exists: ``none`` fails the
    record, ``restore`` creates it again, ``remove_coupling`` deletes the coupling
    (docs/reference/dynamics-semantics.md)."""

    NONE = "none"
    RESTORE = "restore"
    REMOVE_COUPLING = "remove_coupling"


class Side(StrEnum):
    """The two systems: the ERP (Business Central) and the CRM (Dataverse)."""

    ERP = "erp"
    CRM = "crm"

    @property
    def other(self) -> Side:
        return Side.CRM if self is Side.ERP else Side.ERP


#: Flow of one pass of a run: where the records come from and where they are written.
FLOW_SOURCE = {Direction.TO_CRM: Side.ERP, Direction.FROM_CRM: Side.CRM}


@dataclass(frozen=True)
class EntityEndpoint:
    """One side of a mapping: an entity set and its filter and keys.

    :param entity_set: the entity set (``customers``, ``accounts``).
    :param key: the business key field (BC ``code``/``number``; Dataverse e.g. ``accountnumber``), or ``None``
        when the table has none (Dataverse ``contacts``). Couplings keep its value for lookups.
    :param filter: OData ``$filter`` narrowing which records sync (Table Filter / Integration Table Filter).
        ``{integration_user}`` is replaced by the integration user's systemuserid at run time.
    :param id_field: the primary key (``id`` in BC, ``<entity>id`` in Dataverse).
    :param alternate_key: (CRM) ``key`` is a Dataverse alternate key, so a create is an upsert by it.
    :param new_key_prefix: (ERP) prefix of the business key given to a record created from the CRM when the CRM
        record carries none (see :meth:`TableMapping.new_erp_key`).
    :param option_set: (CRM) ``(table logical name, column)`` of a choice column whose options are the mapping's
        CRM records (BC's option mappings PAYMENT TERMS, SHIPMENT METHOD, SHIPPING AGENT): an option's ``value``
        is its id and its ``label`` its key; ``entity_set`` is the table's entity set.
    """

    entity_set: str
    key: str | None
    filter: str | None
    id_field: str
    alternate_key: bool = False
    new_key_prefix: str | None = None
    option_set: tuple[str, str] | None = None


@dataclass(frozen=True)
class Via:
    """A hop through a third table on the way to a lookup's coupling.

    On the ERP side (``erp_via``): the field value is the via table's ``match`` field and the row's ``value``
    field is the ERP id of the looked-up mapping's record (Contact Business Relation: a person contact's
    ``companyNumber`` -> ``contactsInformation.contactNumber`` -> ``relatedId`` = the customer's id).
    On the CRM side (``crm_via``): the coupled CRM id is the via table's ``match`` field and ``value`` is what the
    field is bound to (a unit group's id -> its base unit, ``uoms.uomid``).

    :param entity_set: the table read. :param match: the field compared. :param value: the field taken.
    :param filter: extra OData ``$filter`` on the table.
    :param on_missing: ``fail`` (default) or ``skip`` (the record is out of scope, counted Skipped) when no row
        matches.
    """

    entity_set: str
    match: str
    value: str
    filter: str | None = None
    on_missing: str = "fail"


@dataclass(frozen=True)
class Lookup:
    """A field whose value is a record of another mapping, resolved through that mapping's couplings.

    :param mapping: the looked-up mapping (must be in ``depends_on``).
    :param bind: the navigation property written with ``@odata.bind`` (default: the CRM field name), e.g.
        ``parentcustomerid_account``.
    :param erp_via: optional hop on the ERP side. :param crm_via: optional hop on the CRM side.
    :param on_missing: when the target is not coupled: ``fail`` (default, "dependency not coupled", retried on
        the next run), ``clear`` (leave the field out: BC's *Clear Value on Failed Sync*) or ``skip``.
    :param option: the looked-up mapping is an option mapping (set by :func:`.loader.validate_set`): the CRM
        field is a choice column holding the option's value, written and read as a plain number, never bound.
    """

    mapping: str
    bind: str | None = None
    erp_via: Via | None = None
    crm_via: Via | None = None
    on_missing: str = "fail"
    option: bool = False


@dataclass(frozen=True)
class FieldMapping:
    """One Integration Field Mapping.

    :param erp: the ERP field, or ``None`` for a constant written to the CRM.
    :param crm: the CRM field (for a lookup the attribute, read back as ``_<crm>_value``), or ``None`` for a
        constant written to the ERP.
    :param direction: the flow of this pair; defaults to the mapping's direction.
    :param constant: a value written instead of a field's (only the destination side is named).
    :param to_crm: transformations applied when the value flows to the CRM.
    :param from_crm: transformations applied when the value flows to the ERP.
    :param lookup: the value is a record of another mapping (see :class:`Lookup`).
    :param match_priority: ``Use For Match-Based Coupling`` with its ``Match Priority`` (1 first); pairs of the
        same priority must all match.
    :param insert_only: written when a record is created, never on updates (e.g. a derived business key).
    :param after_insert: to the CRM, left out of the create and written by an update of the record just
        created, and by every update after (a column Dataverse does not take in a create: ``statecode``, whose
        IsValidForCreate is false; Business Central's 5341 ``UpdateCRMProductAfterInsertRecord`` sets a new
        product Active by a Modify after the Insert).
    :param label: how messages name this entry (``fields[3] displayName -> name``).
    :param compute: a computation of :mod:`.computed` (``exchange_rate``): the value written to the CRM is
        computed from the ERP field (or from nothing), as Business Central's integration subscribers do.
    """

    erp: str | None
    crm: str | None
    direction: Direction
    constant: Any = None
    has_constant: bool = False
    to_crm: tuple[Transformation, ...] = ()
    from_crm: tuple[Transformation, ...] = ()
    lookup: Lookup | None = None
    match_priority: int | None = None
    insert_only: bool = False
    label: str = ""
    compute: str | None = None
    after_insert: bool = False

    @property
    def binds(self) -> bool:
        """True when the CRM field is a lookup attribute: written with ``@odata.bind``, read as
        ``_<attribute>_value`` (a :class:`Lookup`, or a computation that binds a record). A lookup to an option
        mapping does not bind: its choice column holds a number."""
        return (self.lookup is not None and not self.lookup.option) or self.bind_set is not None

    @property
    def bind_set(self) -> str | None:
        """The CRM entity set a computed field binds to, if it binds one."""
        return COMPUTATIONS[self.compute].bind_set if self.compute else None

    def flows(self, flow: Direction) -> bool:
        """True when this pair writes in ``flow`` (``TO_CRM`` or ``FROM_CRM``)."""
        if not self.direction.includes(flow):
            return False
        return self.target(flow) is not None

    def target(self, flow: Direction) -> str | None:
        """The field written in ``flow``."""
        return self.crm if flow is Direction.TO_CRM else self.erp

    def source(self, flow: Direction) -> str | None:
        """The field read in ``flow`` (``None`` for a constant or a computation that reads no field)."""
        if self.has_constant:
            return None
        return self.erp if flow is Direction.TO_CRM else self.crm

    def transformations(self, flow: Direction) -> tuple[Transformation, ...]:
        return self.to_crm if flow is Direction.TO_CRM else self.from_crm


@dataclass(frozen=True)
class TableMapping:
    """One Integration Table Mapping (see the module docstring).

    :param name: ``CUSTOMER``; task ids use :attr:`slug`.
    :param direction: :class:`Direction`.
    :param erp: the ERP side. :param crm: the CRM side.
    :param fields: the field pairs, in file order.
    :param depends_on: mappings to sync first (BC's Dependency Filter).
    :param synch_only_coupled_records: ``True``: uncoupled records that match nothing are skipped; ``False``:
        they are created and coupled.
    :param resolve_update_conflicts: :class:`UpdateConflictResolution`.
    :param resolve_deletion_conflicts: :class:`DeletionConflictResolution`.
    :param skip_after_same_error: a record failing with the same error this many times in a row is marked
        Skipped until reset (BC marks it after a repeat; default 2).
    :param inactivity_timeout_min: the Inactivity Timeout Period (minutes) of the mapping's job queue entry: after
        an idle run it is On Hold with Inactivity Timeout, and scheduled runs skip it for this long while a change
        to its tables wakes it (:mod:`dynamics_jobqueue.sync.job_queue`); 0 (default): never on hold.
    :param description: free text shown in the DAG docs.
    :param file: the YAML file it came from.
    """

    name: str
    direction: Direction
    erp: EntityEndpoint
    crm: EntityEndpoint
    fields: tuple[FieldMapping, ...]
    depends_on: tuple[str, ...] = ()
    synch_only_coupled_records: bool = False
    resolve_update_conflicts: UpdateConflictResolution = UpdateConflictResolution.NONE
    resolve_deletion_conflicts: DeletionConflictResolution = DeletionConflictResolution.NONE
    skip_after_same_error: int = 2
    inactivity_timeout_min: int = 0
    description: str = ""
    file: str = ""

    @property
    def is_option_mapping(self) -> bool:
        """The CRM side is a choice column's options (see :attr:`EntityEndpoint.option_set`)."""
        return self.crm.option_set is not None

    @property
    def slug(self) -> str:
        """Task-id form of the name: ``UNIT OF MEASURE`` -> ``unit_of_measure``."""
        return "".join(c if c.isalnum() else "_" for c in self.name.lower()).strip("_")

    @property
    def flows(self) -> tuple[Direction, ...]:
        """The passes of one run, in BC's order: ERP->CRM first, then CRM->ERP."""
        return tuple(f for f in (Direction.TO_CRM, Direction.FROM_CRM) if self.direction.includes(f))

    def fields_for(self, flow: Direction) -> tuple[FieldMapping, ...]:
        """The pairs that write in ``flow``."""
        return tuple(f for f in self.fields if f.flows(flow))

    def side(self, side: Side) -> EntityEndpoint:
        return self.erp if side is Side.ERP else self.crm

    def match_levels(self) -> list[tuple[FieldMapping, ...]]:
        """Match-based coupling pairs grouped by priority, lowest number first."""
        levels: dict[int, list[FieldMapping]] = {}
        for f in self.fields:
            if f.match_priority is not None:
                levels.setdefault(f.match_priority, []).append(f)
        return [tuple(levels[p]) for p in sorted(levels)]

    def key_field(self, side: Side) -> FieldMapping | None:
        """The field pair whose ``side`` field is that side's business key, if any."""
        key = self.side(side).key
        if key is None:
            return None
        for f in self.fields:
            if (f.erp if side is Side.ERP else f.crm) == key and not f.has_constant and f.lookup is None:
                return f
        return None

    def read_fields(self, side: Side) -> list[str]:
        """Every field this mapping reads on ``side``: id, change marker (ERP ``lastModifiedDateTime``, CRM
        ``versionnumber`` and ``modifiedon``), key, and each pair's field there.

        Lookups on the CRM side are read as ``_<attribute>_value``.
        """
        endpoint = self.side(side)
        if side is Side.ERP:
            names = [endpoint.id_field, "lastModifiedDateTime"]
        else:
            names = [endpoint.id_field, "versionnumber", "modifiedon", "_modifiedby_value"]
        if endpoint.key:
            names.append(endpoint.key)
        for f in self.fields:
            name = f.erp if side is Side.ERP else f.crm
            if name is None:
                continue
            if side is Side.CRM and f.binds:
                name = f"_{name}_value"
            names.append(name)
            flow = Direction.TO_CRM if side is Side.ERP else Direction.FROM_CRM
            names.extend(str(t.argument) for t in f.transformations(flow) if t.name == "default_from")
        return list(dict.fromkeys(names))


# -- construction from YAML data -------------------------------------------------------------------------------

_MAPPING_KEYS = {
    "name",
    "description",
    "direction",
    "depends_on",
    "erp",
    "crm",
    "fields",
    "synch_only_coupled_records",
    "resolve_update_conflicts",
    "resolve_deletion_conflicts",
    "skip_after_same_error",
    "inactivity_timeout_min",
}
_ERP_KEYS = {"entity_set", "key", "filter", "new_key_prefix"}
_CRM_KEYS = {"entity_set", "key", "filter", "id", "alternate_key", "option_set"}
_FIELD_KEYS = {
    "erp",
    "crm",
    "direction",
    "constant",
    "transform",
    "lookup",
    "match_priority",
    "insert_only",
    "after_insert",
    "compute",
}
_LOOKUP_KEYS = {"mapping", "bind", "erp_via", "crm_via", "on_missing"}
_VIA_KEYS = {"entity_set", "match", "value", "filter", "on_missing"}


def _check_keys(data: AbcMapping[str, Any], allowed: set[str], error: Any, what: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise error(f"unknown {what} key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")


def _enum(enum_type: Any, value: Any, error: Any, what: str) -> Any:
    try:
        return enum_type(value)
    except ValueError:
        allowed = ", ".join(e.value for e in enum_type)
        raise error(f"{what} must be one of {allowed}, not {value!r}") from None


def _text(value: Any, error: Any, what: str, *, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise error(f"{what} must be a non-empty string, not {value!r}")
    return value.strip()


def build_mapping(data: Any, *, file: str = "") -> TableMapping:
    """Build and validate one :class:`TableMapping` from the data of a YAML document.

    Checks everything that can be checked without the other mappings; :func:`validate_set` checks the
    references between mappings.

    :param data: the decoded YAML document (a mapping).
    :param file: the file name, named in errors.
    :raises MappingError: naming the file, the mapping and the field at fault.
    """

    def fail(message: str, field_label: str = "") -> MappingError:
        return MappingError(message, file=file, mapping=name, field=field_label)

    name = ""
    if not isinstance(data, AbcMapping):
        raise fail(
            f"a mapping file holds one YAML mapping (name, direction, erp, crm, fields), not {type(data).__name__}"
        )
    name = str(data.get("name") or "")
    if not name.strip():
        raise fail("'name' is required (e.g. CUSTOMER)", "name")
    name = name.strip()
    _check_keys(data, _MAPPING_KEYS, lambda m: fail(m), "mapping")
    direction = _enum(Direction, data.get("direction"), lambda m: fail(m, "direction"), "direction")

    def endpoint(side: Side) -> EntityEndpoint:
        raw = data.get(side.value)
        label = side.value
        if not isinstance(raw, AbcMapping):
            raise fail(f"'{label}' must be a mapping with at least entity_set", label)
        _check_keys(raw, _ERP_KEYS if side is Side.ERP else _CRM_KEYS, lambda m: fail(m, label), label)
        entity_set = _text(raw.get("entity_set"), lambda m: fail(m, f"{label}.entity_set"), "entity_set")
        key = _text(raw.get("key"), lambda m: fail(m, f"{label}.key"), "key", required=False)
        flt = _text(raw.get("filter"), lambda m: fail(m, f"{label}.filter"), "filter", required=False)
        if side is Side.ERP:
            prefix = _text(
                raw.get("new_key_prefix"), lambda m: fail(m, "erp.new_key_prefix"), "new_key_prefix", required=False
            )
            if prefix is not None and len(prefix) > 8:
                raise fail("new_key_prefix is at most 8 characters (BC Code[20] keys)", "erp.new_key_prefix")
            return EntityEndpoint(str(entity_set), key, flt, "id", new_key_prefix=prefix)
        option_set = _text(raw.get("option_set"), lambda m: fail(m, "crm.option_set"), "option_set", required=False)
        if option_set is not None:
            table, _, column = option_set.partition(".")
            if not table or not column or set(raw) - {"entity_set", "option_set"}:
                raise fail(
                    "an option mapping's crm side is entity_set (the table's entity set, e.g. accounts) and "
                    "option_set: <table logical name>.<choice column>, e.g. account.paymenttermscode",
                    "crm.option_set",
                )
            return EntityEndpoint(str(entity_set), "label", None, "value", option_set=(table, column))
        id_field = _text(raw.get("id"), lambda m: fail(m, "crm.id"), "id (the primary key, e.g. accountid)")
        alternate = raw.get("alternate_key", False)
        if not isinstance(alternate, bool):
            raise fail("alternate_key must be true or false", "crm.alternate_key")
        if alternate and not key:
            raise fail("alternate_key: true needs key (the alternate key's field)", "crm.alternate_key")
        return EntityEndpoint(str(entity_set), key, flt, str(id_field), alternate_key=alternate)

    erp = endpoint(Side.ERP)
    crm = endpoint(Side.CRM)

    depends_raw = data.get("depends_on") or []
    if isinstance(depends_raw, str):
        depends_raw = [depends_raw]
    if not isinstance(depends_raw, list) or not all(isinstance(d, str) and d.strip() for d in depends_raw):
        raise fail("depends_on must be a list of mapping names", "depends_on")
    depends_on = tuple(d.strip() for d in depends_raw)
    if name in depends_on:
        raise fail("a mapping cannot depend on itself", "depends_on")

    only_coupled = data.get("synch_only_coupled_records", False)
    if not isinstance(only_coupled, bool):
        raise fail("synch_only_coupled_records must be true or false", "synch_only_coupled_records")
    update_rule = _enum(
        UpdateConflictResolution,
        data.get("resolve_update_conflicts", "none"),
        lambda m: fail(m, "resolve_update_conflicts"),
        "resolve_update_conflicts",
    )
    deletion_rule = _enum(
        DeletionConflictResolution,
        data.get("resolve_deletion_conflicts", "none"),
        lambda m: fail(m, "resolve_deletion_conflicts"),
        "resolve_deletion_conflicts",
    )
    skip_after = data.get("skip_after_same_error", 2)
    if not isinstance(skip_after, int) or isinstance(skip_after, bool) or skip_after < 1:
        raise fail("skip_after_same_error must be a whole number >= 1", "skip_after_same_error")
    inactivity_timeout = data.get("inactivity_timeout_min", 0)
    if not isinstance(inactivity_timeout, int) or isinstance(inactivity_timeout, bool) or inactivity_timeout < 0:
        raise fail("inactivity_timeout_min must be a whole number of minutes >= 0", "inactivity_timeout_min")

    if direction.includes(Direction.FROM_CRM) and not only_coupled and erp.key is None:
        raise fail(
            "a mapping that creates ERP records needs erp.key: the key is decided before the create, so a repeated "
            "create finds the record instead of making a twin",
            "erp.key",
        )

    raw_fields = data.get("fields")
    if not isinstance(raw_fields, list) or not raw_fields:
        raise fail("'fields' must be a non-empty list of field mappings", "fields")
    fields = tuple(_build_field(raw, index, direction, fail) for index, raw in enumerate(raw_fields))
    _check_fields(fields, direction, erp, crm, fail)
    if crm.option_set is not None:
        # Business Central's option mappings go one way (codeunit 5365 "CDS Int. Option Couple":
        # "Option mappings can only synchronize from integration table or to integration table."); the options
        # are written from the ERP's codes.
        shape = [(f.erp, f.crm, f.lookup is None and not f.has_constant) for f in fields]
        if direction is not Direction.TO_CRM or shape != [(erp.key, "label", True)]:
            raise fail(
                f"an option mapping is direction to_crm with one field, {{erp: {erp.key}, crm: label}} (the ERP "
                "key becomes the option's label)",
                "fields",
            )

    return TableMapping(
        name=name,
        direction=direction,
        erp=erp,
        crm=crm,
        fields=fields,
        depends_on=depends_on,
        synch_only_coupled_records=only_coupled,
        resolve_update_conflicts=update_rule,
        resolve_deletion_conflicts=deletion_rule,
        skip_after_same_error=skip_after,
        inactivity_timeout_min=inactivity_timeout,
        description=str(data.get("description") or "").strip(),
        file=file,
    )


def _build_via(raw: Any, label: str, fail: Any) -> Via | None:
    if raw is None:
        return None
    if not isinstance(raw, AbcMapping):
        raise fail("a via hop is a mapping with entity_set, match and value", label)
    _check_keys(raw, _VIA_KEYS, lambda m: fail(m, label), "via")
    on_missing = raw.get("on_missing", "fail")
    if on_missing not in ("fail", "skip"):
        raise fail(f"via on_missing must be fail or skip, not {on_missing!r}", label)
    return Via(
        entity_set=str(_text(raw.get("entity_set"), lambda m: fail(m, label), "via entity_set")),
        match=str(_text(raw.get("match"), lambda m: fail(m, label), "via match")),
        value=str(_text(raw.get("value"), lambda m: fail(m, label), "via value")),
        filter=_text(raw.get("filter"), lambda m: fail(m, label), "via filter", required=False),
        on_missing=on_missing,
    )


def _build_field(raw: Any, index: int, mapping_direction: Direction, fail: Any) -> FieldMapping:
    label = f"fields[{index}]"
    if not isinstance(raw, AbcMapping):
        raise fail("each field mapping is a YAML mapping (erp, crm, ...)", label)
    erp = raw.get("erp")
    crm = raw.get("crm")
    label = f"fields[{index}] {erp or '(constant)'} -> {crm or '(constant)'}"
    _check_keys(raw, _FIELD_KEYS, lambda m: fail(m, label), "field")
    for side_name, value in (("erp", erp), ("crm", crm)):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise fail(f"{side_name} must be a field name", label)
    has_constant = "constant" in raw
    compute = raw.get("compute")
    if erp is None and crm is None:
        raise fail("a field mapping names an erp field, a crm field, or both", label)
    if compute is not None:
        if compute not in COMPUTATIONS:
            raise fail(f"unknown computation {compute!r}; available: {', '.join(sorted(COMPUTATIONS))}", label)
        if has_constant or raw.get("lookup") is not None or raw.get("match_priority") is not None:
            raise fail("a computed field has no constant, lookup or match_priority", label)
        if crm is None:
            raise fail("a computed field names the crm field it writes", label)
        if COMPUTATIONS[compute].needs_source and erp is None:
            raise fail(f"computation {compute} reads an erp field: name it with erp", label)
        if not COMPUTATIONS[compute].needs_source and erp is not None:
            raise fail(f"computation {compute} reads no erp field", label)
        if not mapping_direction.includes(Direction.TO_CRM) or raw.get("direction", "to_crm") != "to_crm":
            raise fail("a computed field flows to_crm", label)
    elif not has_constant and (erp is None or crm is None):
        raise fail("a field mapping needs both erp and crm, unless it has a constant or a computation", label)
    direction = mapping_direction
    if "direction" in raw:
        direction = _enum(Direction, raw["direction"], lambda m: fail(m, label), "direction")
    if compute is not None:
        direction = Direction.TO_CRM
    if has_constant:
        if erp is not None and crm is not None:
            raise fail("a constant names only the field it is written to (erp or crm)", label)
        implied = Direction.TO_CRM if crm is not None else Direction.FROM_CRM
        if "direction" in raw and direction is not implied:
            raise fail(f"a constant for the {'CRM' if crm else 'ERP'} side flows {implied.value}", label)
        direction = implied
        if not mapping_direction.includes(direction):
            raise fail(f"a constant written {direction.label} in a {mapping_direction.value} mapping", label)
    elif not mapping_direction.includes(direction) and direction is not Direction.BIDIRECTIONAL:
        raise fail(f"field direction {direction.value} is outside the mapping's {mapping_direction.value}", label)
    elif direction is Direction.BIDIRECTIONAL and mapping_direction is not Direction.BIDIRECTIONAL:
        direction = mapping_direction

    to_crm: tuple[Transformation, ...] = ()
    from_crm: tuple[Transformation, ...] = ()
    transform = raw.get("transform")
    if transform is not None:
        try:
            if isinstance(transform, AbcMapping) and set(transform) <= {"to_crm", "from_crm"}:
                to_crm = parse_transformations(transform.get("to_crm") or [])
                from_crm = parse_transformations(transform.get("from_crm") or [])
            else:
                if direction is Direction.BIDIRECTIONAL:
                    raise ValueError(
                        "a bidirectional field gives its transformations per flow: transform: {to_crm: [...], "
                        "from_crm: [...]}"
                    )
                parsed = parse_transformations(transform)
                to_crm, from_crm = (parsed, ()) if direction is Direction.TO_CRM else ((), parsed)
        except ValueError as exc:
            raise fail(str(exc), label) from None

    lookup = None
    if raw.get("lookup") is not None:
        lookup = _build_lookup(raw["lookup"], label, fail)
        if has_constant:
            raise fail("a field is either a constant or a lookup", label)

    match_priority = raw.get("match_priority")
    if match_priority is not None and (
        not isinstance(match_priority, int) or isinstance(match_priority, bool) or match_priority < 1
    ):
        raise fail("match_priority is a whole number >= 1 (1 is tried first)", label)
    if match_priority is not None and (has_constant or lookup is not None):
        raise fail("match-based coupling compares plain fields, not constants or lookups", label)
    insert_only = raw.get("insert_only", False)
    if not isinstance(insert_only, bool):
        raise fail("insert_only must be true or false", label)
    after_insert = raw.get("after_insert", False)
    if not isinstance(after_insert, bool):
        raise fail("after_insert must be true or false", label)
    if after_insert and (direction is not Direction.TO_CRM or insert_only):
        raise fail("after_insert is for a field written to_crm on creates and updates (not insert_only)", label)
    return FieldMapping(
        erp=erp.strip() if isinstance(erp, str) else None,
        crm=crm.strip() if isinstance(crm, str) else None,
        direction=direction,
        constant=raw.get("constant"),
        has_constant=has_constant,
        to_crm=to_crm,
        from_crm=from_crm,
        lookup=lookup,
        match_priority=match_priority,
        insert_only=insert_only,
        label=label,
        compute=compute,
        after_insert=after_insert,
    )


def _build_lookup(raw: Any, label: str, fail: Any) -> Lookup:
    if isinstance(raw, str):
        raw = {"mapping": raw}
    if not isinstance(raw, AbcMapping):
        raise fail("lookup is a mapping name or {mapping, bind, erp_via, crm_via, on_missing}", label)
    _check_keys(raw, _LOOKUP_KEYS, lambda m: fail(m, label), "lookup")
    on_missing = raw.get("on_missing", "fail")
    if on_missing not in ("fail", "clear", "skip"):
        raise fail(f"lookup on_missing must be fail, clear or skip, not {on_missing!r}", label)
    return Lookup(
        mapping=str(_text(raw.get("mapping"), lambda m: fail(m, label), "lookup mapping")),
        bind=_text(raw.get("bind"), lambda m: fail(m, label), "lookup bind", required=False),
        erp_via=_build_via(raw.get("erp_via"), label, fail),
        crm_via=_build_via(raw.get("crm_via"), label, fail),
        on_missing=on_missing,
    )


def _check_fields(
    fields: tuple[FieldMapping, ...], direction: Direction, erp: EntityEndpoint, crm: EntityEndpoint, fail: Any
) -> None:
    written: dict[tuple[Direction, str], str] = {}
    for f in fields:
        for flow in (Direction.TO_CRM, Direction.FROM_CRM):
            target = f.target(flow)
            if not f.flows(flow) or target is None:
                continue
            if (flow, target) in written:
                raise fail(f"{target} is written twice {flow.label} (also by {written[(flow, target)]})", f.label)
            written[(flow, target)] = f.label
    for flow in (Direction.TO_CRM, Direction.FROM_CRM):
        if direction.includes(flow) and not any(f.flows(flow) for f in fields):
            raise fail(f"no field is written {flow.label}", "fields")
    if crm.alternate_key and direction.includes(Direction.TO_CRM):
        keyed = [f for f in fields if f.crm == crm.key and f.flows(Direction.TO_CRM)]
        if not keyed:
            raise fail(f"the alternate key {crm.key} must be written to the CRM by a field mapping", "crm.key")
