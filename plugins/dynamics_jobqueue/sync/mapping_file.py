"""The table mapping file format as pydantic models: structure checked per file, and a JSON Schema for editors.

:func:`validate_file` checks a decoded YAML document's structure (keys, types, enumerations, ranges) before
:func:`dynamics_jobqueue.sync.mapping.build_mapping` checks its meaning (directions, keys, lookups, duplicates).
``include/mappings/mapping.schema.json`` is :func:`json_schema`, published for editors (YAML language servers
read ``# yaml-language-server: $schema=mapping.schema.json``); a test keeps the two in step.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError, model_validator

from dynamics_jobqueue.sync.mapping import (
    DeletionConflictResolution,
    Direction,
    MappingError,
    UpdateConflictResolution,
)

Name = Annotated[StrictStr, Field(min_length=1, pattern=r"\S")]


class _Model(BaseModel):
    # No unknown key; YAML gives real booleans and numbers, so the Strict* types refuse "yes" or "1".
    model_config = ConfigDict(extra="forbid")


class ViaHop(_Model):
    """A hop through another entity set to find a lookup's target (``erp_via`` / ``crm_via``)."""

    entity_set: Name
    match: Name = Field(description="field of entity_set compared with value")
    value: Name = Field(description="field of this record whose value is looked up")
    filter: StrictStr | None = Field(None, description="OData $filter added to the hop's query")
    on_missing: Literal["fail", "skip"] = "fail"


class LookupSpec(_Model):
    """A lookup through another mapping's couplings (e.g. the customer's salesperson -> owner)."""

    mapping: Name = Field(description="the mapping whose couplings resolve the value, e.g. SALESPEOPLE")
    bind: StrictStr | None = Field(None, description="Dataverse navigation property to bind (@odata.bind)")
    erp_via: ViaHop | None = None
    crm_via: ViaHop | None = None
    on_missing: Literal["fail", "clear", "skip"] = "fail"


class FieldSpec(_Model):
    """One Integration Field Mapping: an ERP field and a CRM field, or a constant written to one side."""

    erp: Name | None = Field(None, description="Business Central API v2.0 field (camelCase)")
    crm: Name | None = Field(None, description="Dataverse logical name")
    direction: Direction | None = Field(None, description="default: the mapping's direction")
    constant: Any = Field(None, description="value written to the one side named")
    transform: Any = Field(
        None, description="transformation rules: a list, or {to_crm: [...], from_crm: [...]} for both directions"
    )
    lookup: Name | LookupSpec | None = None
    match_priority: Annotated[StrictInt, Field(ge=1)] | None = Field(None, description="match-based coupling, 1 first")
    insert_only: StrictBool = False
    after_insert: StrictBool = Field(
        False,
        description="to_crm: left out of the create, written by an update right after it and on every update "
        "(statecode, which Dataverse does not take in a create)",
    )
    compute: Literal["exchange_rate", "vendor_name", "lcy_currency", "default_price_list"] | None = Field(
        None, description="a value Business Central's subscribers compute (dynamics_jobqueue.sync.computed), to CRM"
    )


class ErpEndpoint(_Model):
    """The Business Central side: entity set, business key, Table Filter."""

    entity_set: Name = Field(description="API v2.0 entity set, e.g. customers")
    key: StrictStr | None = Field(None, description="business key, e.g. number")
    filter: StrictStr | None = Field(None, description="Table Filter (OData $filter)")
    new_key_prefix: Annotated[StrictStr, Field(max_length=8)] | None = None


class CrmEndpoint(_Model):
    """The Dataverse side: entity set, primary key, alternate key, Integration Table Filter; or, for an option
    mapping, the choice column whose options are its records."""

    entity_set: Name = Field(description="Web API entity set, e.g. accounts")
    id: Name | None = Field(None, description="primary key, e.g. accountid (not for an option mapping)")
    option_set: Annotated[StrictStr, Field(pattern=r"^[a-z_0-9]+\.[a-z_0-9]+$")] | None = Field(
        None, description="option mapping: <table logical name>.<choice column>, e.g. account.paymenttermscode"
    )
    key: StrictStr | None = Field(None, description="business key or alternate key field")
    filter: StrictStr | None = Field(None, description="Integration Table Filter (OData $filter)")
    alternate_key: StrictBool = False

    @model_validator(mode="after")
    def _id_unless_option_set(self) -> CrmEndpoint:
        if self.option_set is None and self.id is None:
            raise ValueError("id (the primary key, e.g. accountid) is required unless option_set is given")
        return self


class MappingFile(_Model):
    """One integration table mapping file (``include/mappings/NN_name.yaml``)."""

    model_config = ConfigDict(title="Integration table mapping", extra="forbid")

    name: Name = Field(description="the mapping's name, e.g. CUSTOMER")
    description: StrictStr = ""
    direction: Direction
    depends_on: Name | list[Name] = Field(default_factory=list, description="mappings that must sync first")
    erp: ErpEndpoint
    crm: CrmEndpoint
    fields: Annotated[list[FieldSpec], Field(min_length=1)]
    synch_only_coupled_records: StrictBool = False
    resolve_update_conflicts: UpdateConflictResolution = UpdateConflictResolution.NONE
    resolve_deletion_conflicts: DeletionConflictResolution = DeletionConflictResolution.NONE
    skip_after_same_error: Annotated[StrictInt, Field(ge=1)] = 2
    inactivity_timeout_min: Annotated[StrictInt, Field(ge=0)] = Field(
        0,
        description="Inactivity Timeout Period of the job queue entry (minutes): after an idle run, scheduled runs "
        "skip the mapping this long unless a change to its tables wakes it; 0: never on hold",
    )


def validate_file(data: Any, *, file: str = "") -> None:
    """Check the structure of one decoded mapping file.

    :raises MappingError: naming the file, the mapping (when it has a name) and the first offending entry,
        e.g. ``40_customer.yaml, mapping CUSTOMER, field fields[3].lookup.erp_via.match: Field required``.
    """
    try:
        MappingFile.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        name = str(data.get("name") or "") if isinstance(data, dict) else ""
        where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"]).lstrip(".")
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise MappingError(f"{error['msg']}{more}", file=file, mapping=name, field=where) from None


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a mapping file (draft 2020-12, as pydantic writes it)."""
    schema = MappingFile.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
