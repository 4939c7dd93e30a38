"""The ``$metadata`` check runs when it can find something new: a passed check is kept in the state store and a
task skips the download while the same mapping definition passed against the same services lately."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from dynamics_jobqueue.paths import include_dir
from dynamics_jobqueue.sync.loader import load_mappings
from dynamics_jobqueue.sync.mapping import MappingError, TableMapping
from dynamics_jobqueue.sync.metadata import check_unless_passed

# The sandbox counts a Business Central path without an entity set after companies(...), such as
# <route>/$metadata, as bc/companies.
METADATA_ROUTES = {"GET bc/companies", "GET dataverse/$metadata"}


def _hooks() -> tuple[Any, Any]:
    from dynamics_jobqueue.hooks.business_central import BusinessCentralHook
    from dynamics_jobqueue.hooks.dataverse import DataverseHook

    return BusinessCentralHook(), DataverseHook()


def _requests(sandbox: Any) -> dict[str, int]:
    return {route: n for route, n in sandbox.admin("stats")["by_route"].items() if n}


def _customer(folder: Path) -> TableMapping:
    return next(m for m in load_mappings(folder) if m.name == "CUSTOMER")


@pytest.fixture
def mappings_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "mappings"
    shutil.copytree(include_dir() / "mappings", folder)
    return folder


def test_a_second_run_reads_no_metadata(sandbox: Any, state_store: Any, mappings_folder: Path) -> None:
    erp, crm = _hooks()
    mapping = _customer(mappings_folder)
    sandbox.admin("stats/reset", {})
    assert check_unless_passed(state_store, mapping, erp, crm, max_age_h=24) is True
    assert set(_requests(sandbox)) == METADATA_ROUTES
    sandbox.admin("stats/reset", {})
    erp, crm = _hooks()  # as the next task does, in another process
    assert check_unless_passed(state_store, _customer(mappings_folder), erp, crm, max_age_h=24) is False
    assert _requests(sandbox) == {}


def test_an_edited_mapping_is_checked_at_once_and_a_failed_check_is_not_kept(
    sandbox: Any, state_store: Any, mappings_folder: Path
) -> None:
    erp, crm = _hooks()
    assert check_unless_passed(state_store, _customer(mappings_folder), erp, crm, max_age_h=24) is True
    file = mappings_folder / "40_customer.yaml"
    data = yaml.safe_load(file.read_text())
    data["fields"][1]["crm"] = "nmae"
    file.write_text(yaml.safe_dump(data))
    for _ in range(2):  # the failure is not kept as a pass: the next run fails again
        with pytest.raises(MappingError, match="Dataverse entity set accounts has no field 'nmae'"):
            check_unless_passed(state_store, _customer(mappings_folder), erp, crm, max_age_h=24)
    shutil.copy(include_dir() / "mappings" / "40_customer.yaml", file)
    sandbox.admin("stats/reset", {})
    assert check_unless_passed(state_store, _customer(mappings_folder), erp, crm, max_age_h=24) is False
    assert _requests(sandbox) == {}


def test_a_new_route_is_checked_at_once(
    sandbox: Any, state_store: Any, mappings_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    erp, crm = _hooks()
    assert check_unless_passed(state_store, _customer(mappings_folder), erp, crm, max_age_h=24) is True
    conn = json.loads(sandbox.environment()["AIRFLOW_CONN_BUSINESS_CENTRAL_DEFAULT"])
    conn["extra"]["endpoints"]["customers"] = "api/cronus/integration/v1.0"  # a custom API page without customers
    monkeypatch.setenv("AIRFLOW_CONN_BUSINESS_CENTRAL_DEFAULT", json.dumps(conn))
    erp, crm = _hooks()
    with pytest.raises(MappingError, match="Business Central has no entity set 'customers'"):
        check_unless_passed(state_store, _customer(mappings_folder), erp, crm, max_age_h=24)


def test_a_pass_older_than_the_age_limit_is_checked_again(
    sandbox: Any, state_store: Any, mappings_folder: Path
) -> None:
    erp, crm = _hooks()
    mapping = _customer(mappings_folder)
    assert check_unless_passed(state_store, mapping, erp, crm, max_age_h=24) is True
    later = datetime.now(UTC) + timedelta(hours=23)
    assert check_unless_passed(state_store, mapping, erp, crm, max_age_h=24, now=later) is False
    sandbox.admin("stats/reset", {})
    later = datetime.now(UTC) + timedelta(hours=25)
    assert check_unless_passed(state_store, mapping, erp, crm, max_age_h=24, now=later) is True
    assert set(_requests(sandbox)) == METADATA_ROUTES
    # 0: every run checks.
    sandbox.admin("stats/reset", {})
    assert check_unless_passed(state_store, mapping, erp, crm, max_age_h=0) is True
    assert set(_requests(sandbox)) == METADATA_ROUTES
