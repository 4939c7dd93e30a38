"""Mapping names checked against the sandbox's ``$metadata`` (Business Central per API route, Dataverse)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from dynamics_jobqueue.paths import include_dir
from dynamics_jobqueue.sync.loader import load_mappings
from dynamics_jobqueue.sync.mapping import MappingError
from dynamics_jobqueue.sync.metadata import check_against_services


def _misspell_crm_via_match(mapping: dict[str, Any]) -> None:
    """The unit group -> base unit hop of a product mapping, with its match field misspelt."""
    [field] = [f for f in mapping["fields"] if isinstance(f.get("lookup"), dict) and "crm_via" in f["lookup"]]
    field["lookup"]["crm_via"]["match"] = "_uomschedule_value"


def _hooks() -> tuple[Any, Any]:
    from dynamics_jobqueue.hooks.business_central import BusinessCentralHook
    from dynamics_jobqueue.hooks.dataverse import DataverseHook

    return BusinessCentralHook(), DataverseHook()


def test_every_shipped_mapping_names_only_what_the_services_publish(sandbox: Any) -> None:
    erp, crm = _hooks()
    for mapping in load_mappings():
        check_against_services(mapping, erp, crm)


@pytest.mark.parametrize(
    ("file", "edit", "message"),
    [
        (
            "40_customer.yaml",
            lambda m: m["fields"][1].update(crm="nmae"),
            "40_customer.yaml, mapping CUSTOMER, field fields[1] displayName -> nmae: Dataverse entity set accounts "
            "has no field 'nmae'",
        ),
        (
            "10_currency.yaml",
            lambda m: m["erp"].update(entity_set="currency"),
            "10_currency.yaml, mapping CURRENCY, field erp.entity_set: Business Central has no entity set 'currency'",
        ),
        (
            "70_item_product.yaml",
            _misspell_crm_via_match,
            "Dataverse entity set uoms has no field '_uomschedule_value'",
        ),
    ],
)
def test_a_misspelt_name_fails_naming_file_mapping_and_field(
    sandbox: Any, tmp_path: Path, file: str, edit: Any, message: str
) -> None:
    folder = tmp_path / "mappings"
    shutil.copytree(include_dir() / "mappings", folder)
    data = yaml.safe_load((folder / file).read_text())
    edit(data)
    (folder / file).write_text(yaml.safe_dump(data))
    mapping = next(m for m in load_mappings(folder) if m.file == file)
    erp, crm = _hooks()
    with pytest.raises(MappingError, match=r"\$metadata") as raised:
        check_against_services(mapping, erp, crm)
    assert message in str(raised.value)
