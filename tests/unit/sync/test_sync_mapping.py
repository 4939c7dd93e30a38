"""Table mappings as data: the seven defaults load, and a bad file fails naming the file, mapping and field."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from dynamics_jobqueue.paths import include_dir
from dynamics_jobqueue.sync.loader import load_mappings, validate_set
from dynamics_jobqueue.sync.mapping import (
    DeletionConflictResolution,
    Direction,
    MappingError,
    Side,
    UpdateConflictResolution,
    build_mapping,
)

DEFAULTS = include_dir() / "mappings"
RECOMMENDED_ORDER = [
    "CURRENCY",
    "SALESPEOPLE",
    "UNIT OF MEASURE",
    "PAYMENT TERMS",
    "SHIPMENT METHOD",
    "SHIPPING AGENT",
    "CUSTOMER",
    "CONTACT",
    "RESOURCE-PRODUCT",
    "RESOURCE-PRICE LIST ITEM",
    "ITEM-PRODUCT",
    "ITEM-PRICE LIST ITEM",
]


def minimal(**overrides):
    data = {
        "name": "THING",
        "direction": "to_crm",
        "erp": {"entity_set": "items", "key": "number"},
        "crm": {"entity_set": "products", "id": "productid", "key": "productnumber", "alternate_key": True},
        "fields": [{"erp": "number", "crm": "productnumber", "match_priority": 1}],
    }
    data.update(overrides)
    return data


def test_the_default_mappings_load_in_the_recommended_order() -> None:
    mappings = load_mappings(DEFAULTS)
    assert mappings.names == RECOMMENDED_ORDER
    customer = mappings.get("CUSTOMER")
    assert customer.direction is Direction.BIDIRECTIONAL
    # CDS Setup Defaults' Dependency Filter: SALESPEOPLE|CURRENCY|PAYMENT TERMS|SHIPMENT METHOD|SHIPPING AGENT
    assert customer.depends_on == ("SALESPEOPLE", "CURRENCY", "PAYMENT TERMS", "SHIPMENT METHOD", "SHIPPING AGENT")
    assert customer.crm.filter == "statecode eq 0 and customertypecode eq 3"
    assert customer.resolve_update_conflicts is UpdateConflictResolution.NONE
    assert customer.resolve_deletion_conflicts is DeletionConflictResolution.NONE
    assert customer.skip_after_same_error == 2
    assert mappings.get("SALESPEOPLE").direction is Direction.FROM_CRM
    assert mappings.get("unit_of_measure").name == "UNIT OF MEASURE"  # by task id too


def test_every_default_mapping_syncs_only_coupled_records() -> None:
    """As CDS Setup Defaults / CRM Setup Defaults create them (``InsertIntegrationTableMapping(..., true)``):
    creating records is the Full Synch. Review's job, not a scheduled run's."""
    mappings = load_mappings(DEFAULTS)
    assert {m.name: m.synch_only_coupled_records for m in mappings} == dict.fromkeys(RECOMMENDED_ORDER, True)


def test_every_topological_order_of_the_defaults_agrees_with_the_recommended_order() -> None:
    mappings = load_mappings(DEFAULTS)
    position = {name: i for i, name in enumerate(RECOMMENDED_ORDER)}
    for mapping in mappings:
        for dependency in mapping.depends_on:
            assert position[dependency] < position[mapping.name]
    # Every linear extension of the dependency order runs A before B exactly when B depends on A, directly or
    # through other mappings (the transitive closure; enumerating the 10! orders and more would cost seconds).
    before = {m.name: set(m.depends_on) for m in mappings}
    for _ in mappings:
        for name, deps in before.items():
            before[name] = deps.union(*(before[d] for d in deps))
    assert "CUSTOMER" in before["CONTACT"]
    assert {"SALESPEOPLE", "CURRENCY", "PAYMENT TERMS", "SHIPMENT METHOD", "SHIPPING AGENT"} <= before["CUSTOMER"]
    assert "UNIT OF MEASURE" in before["ITEM-PRODUCT"] and "UNIT OF MEASURE" in before["RESOURCE-PRODUCT"]
    assert "ITEM-PRODUCT" in before["ITEM-PRICE LIST ITEM"] and "RESOURCE-PRODUCT" in before["RESOURCE-PRICE LIST ITEM"]


def test_field_directions_constants_and_lookups_of_customer() -> None:
    customer = load_mappings(DEFAULTS).get("CUSTOMER")
    to_crm = {f.crm for f in customer.fields_for(Direction.TO_CRM)}
    from_crm = {f.erp for f in customer.fields_for(Direction.FROM_CRM)}
    assert {"accountnumber", "ownerid", "transactioncurrencyid", "customertypecode", "name"} <= to_crm
    assert "number" not in from_crm and "salespersonCode" not in from_crm
    assert "displayName" in from_crm
    owner = next(f for f in customer.fields if f.crm == "ownerid")
    assert owner.lookup is not None and owner.lookup.mapping == "SALESPEOPLE"
    assert customer.read_fields(Side.CRM)[:4] == ["accountid", "versionnumber", "modifiedon", "_modifiedby_value"]
    assert "_ownerid_value" in customer.read_fields(Side.CRM)


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"direction": "sideways"}, "direction", "must be one of"),
        ({"fields": []}, "fields", "non-empty list"),
        (
            {"fields": [{"erp": "number", "crm": "productnumber", "transform": ["uper"]}]},
            "fields[0]",
            "unknown transformation 'uper'",
        ),
        (
            {"fields": [{"erp": "number", "crm": "productnumber", "transform": [{"truncate": 0}]}]},
            "fields[0]",
            "truncate",
        ),
        ({"fields": [{"erp": "number"}]}, "fields[0]", "needs both erp and crm"),
        ({"fields": [{"erp": "code", "crm": "exchangerate", "compute": "guess"}]}, "fields[0]", "unknown computation"),
        ({"fields": [{"crm": "exchangerate", "compute": "exchange_rate"}]}, "fields[0]", "reads an erp field"),
        ({"fields": [{"erp": "x", "crm": "pricelevelid", "compute": "default_price_list"}]}, "fields[0]", "reads no"),
        (
            {"fields": [{"erp": "code", "crm": "exchangerate", "compute": "exchange_rate", "direction": "from_crm"}]},
            "fields[0]",
            "flows to_crm",
        ),
        (
            {"fields": [{"erp": "number", "crm": "productnumber", "colour": "red"}]},
            "fields[0]",
            "unknown field key(s) colour",
        ),
        (
            {"fields": [{"erp": "number", "crm": "productnumber", "direction": "from_crm"}]},
            "fields[0]",
            "outside the mapping",
        ),
        ({"fields": [{"erp": "number", "crm": "productnumber", "match_priority": 0}]}, "fields[0]", "match_priority"),
        ({"fields": [{"erp": "a", "crm": "name"}, {"erp": "b", "crm": "name"}]}, "fields[1]", "written twice"),
        ({"fields": [{"erp": "number", "crm": "name"}]}, "crm.key", "alternate key productnumber"),
        ({"crm": {"entity_set": "products", "key": "productnumber"}}, "crm.id", "id (the primary key"),
        ({"resolve_update_conflicts": "coin_toss"}, "resolve_update_conflicts", "send_erp_data"),
        ({"skip_after_same_error": 0}, "skip_after_same_error", ">= 1"),
        ({"surprise": 1}, "", "unknown mapping key(s) surprise"),
        ({"fields": [{"crm": "producttypecode", "constant": 3, "direction": "from_crm"}]}, "fields[0]", "flows to_crm"),
        (
            {
                "direction": "from_crm",
                "erp": {"entity_set": "items"},
                "crm": {"entity_set": "products", "id": "productid"},
            },
            "erp.key",
            "needs erp.key",
        ),
    ],
)
def test_a_bad_mapping_names_file_mapping_and_field(change, field, words) -> None:
    with pytest.raises(MappingError) as caught:
        build_mapping(minimal(**change), file="90_thing.yaml")
    error = caught.value
    assert error.file == "90_thing.yaml"
    assert error.mapping == "THING"
    assert field in error.field
    assert words in str(error)
    assert str(error).startswith("90_thing.yaml, mapping THING")


def test_a_bidirectional_field_gives_transformations_per_flow() -> None:
    data = minimal(direction="bidirectional", crm={"entity_set": "products", "id": "productid"})
    data["fields"] = [{"erp": "displayName", "crm": "name", "transform": ["upper"]}]
    with pytest.raises(MappingError, match="per flow"):
        build_mapping(data, file="x.yaml")
    data["fields"] = [{"erp": "displayName", "crm": "name", "transform": {"from_crm": [{"truncate": 10}]}}]
    mapping = build_mapping(data, file="x.yaml")
    assert mapping.fields[0].from_crm[0].argument == 10 and mapping.fields[0].to_crm == ()


def test_set_validation_unknown_dependency_lookup_outside_depends_on_and_cycles() -> None:
    a = build_mapping(minimal(name="A", depends_on=["NOPE"]), file="a.yaml")
    with pytest.raises(MappingError, match="depends_on names 'NOPE'") as caught:
        validate_set([a])
    assert caught.value.file == "a.yaml" and caught.value.field == "depends_on"

    b = build_mapping(minimal(name="B"), file="b.yaml")
    looks_up = minimal(name="C")
    looks_up["fields"] = [*looks_up["fields"], {"erp": "unit", "crm": "defaultuomscheduleid", "lookup": "B"}]
    c = build_mapping(looks_up, file="c.yaml")
    with pytest.raises(MappingError, match="B must be in depends_on") as caught:
        validate_set([b, c])
    assert caught.value.mapping == "C" and "defaultuomscheduleid" in caught.value.field

    x = build_mapping(minimal(name="X", depends_on=["Y"]), file="x.yaml")
    y = build_mapping(minimal(name="Y", depends_on=["X"]), file="y.yaml")
    with pytest.raises(MappingError, match="cycle"):
        validate_set([x, y])
    with pytest.raises(MappingError, match="also used in"):
        validate_set([b, build_mapping(minimal(name="B"), file="b2.yaml")])


def test_loader_reports_the_file_of_a_broken_yaml_and_caches_by_mtime(tmp_path: Path) -> None:
    for file in DEFAULTS.glob("*.yaml"):
        shutil.copy(file, tmp_path / file.name)
    first = load_mappings(tmp_path)
    assert load_mappings(tmp_path) is first  # cached: nothing changed
    customer = yaml.safe_load((tmp_path / "40_customer.yaml").read_text())
    customer["fields"][1]["transform"] = {"from_crm": ["shout"]}
    (tmp_path / "40_customer.yaml").write_text(yaml.safe_dump(customer))
    with pytest.raises(MappingError) as caught:
        load_mappings(tmp_path)
    assert str(caught.value).startswith("40_customer.yaml, mapping CUSTOMER, field fields[1] displayName -> name")
    shutil.copy(DEFAULTS / "40_customer.yaml", tmp_path / "40_customer.yaml")
    (tmp_path / "50_contact.yaml").write_text("name: [unclosed")
    with pytest.raises(MappingError, match=r"50_contact\.yaml: not valid YAML"):
        load_mappings(tmp_path)
    with pytest.raises(MappingError, match="no table mapping files"):
        load_mappings(tmp_path / "empty")
