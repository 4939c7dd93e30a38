"""The mapping file format (pydantic models): the published JSON Schema, and structural errors named precisely."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest
import yaml

from dynamics_jobqueue.sync.loader import load_mappings
from dynamics_jobqueue.sync.mapping import MappingError
from dynamics_jobqueue.sync.mapping_file import json_schema

MAPPINGS = Path(__file__).resolve().parents[3] / "include" / "mappings"


def test_the_published_schema_is_the_models_schema() -> None:
    published = json.loads((MAPPINGS / "mapping.schema.json").read_text())
    assert published == json.loads(json.dumps(json_schema(), sort_keys=True)), (
        "regenerate include/mappings/mapping.schema.json from dynamics_jobqueue.sync.mapping_file.json_schema()"
    )


@pytest.mark.parametrize("path", sorted(MAPPINGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_mapping_follows_the_published_schema(path: Path) -> None:
    schema = json.loads((MAPPINGS / "mapping.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(yaml.safe_load(path.read_text()))


@pytest.mark.parametrize(
    ("edit", "field", "reason"),
    [
        (lambda m: m["fields"][1].update(insert_only="yes"), "fields[1].insert_only", "valid boolean"),
        (lambda m: m["erp"].update(entity_sets="customers"), "erp.entity_sets", "Extra inputs are not permitted"),
        (lambda m: m.update(skip_after_same_error=0), "skip_after_same_error", "greater than or equal to 1"),
        (lambda m: m["crm"].pop("id"), "crm", "id (the primary key, e.g. accountid) is required unless option_set"),
        (lambda m: m.update(direction="sideways"), "direction", "'to_crm', 'from_crm' or 'bidirectional'"),
        (lambda m: m.update(inactivity_timeout_min=-1), "inactivity_timeout_min", "greater than or equal to 0"),
        (lambda m: m.update(inactivity_timeout_min="12h"), "inactivity_timeout_min", "valid integer"),
    ],
)
def test_a_structural_error_names_file_mapping_and_field(tmp_path: Path, edit, field: str, reason: str) -> None:
    folder = tmp_path / "mappings"
    shutil.copytree(MAPPINGS, folder)
    path = folder / "40_customer.yaml"
    mapping = yaml.safe_load(path.read_text())
    edit(mapping)
    path.write_text(yaml.safe_dump(mapping))
    with pytest.raises(MappingError) as raised:
        load_mappings(folder)
    message = str(raised.value)
    assert message.startswith(f"40_customer.yaml, mapping CUSTOMER, field {field}: "), message
    assert reason in message
