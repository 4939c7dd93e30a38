"""BusinessCentralHook over real HTTPS against the sandbox: tokens, paging, filters, ETags, $batch, errors."""

from __future__ import annotations

import pytest

from dynamics_jobqueue.hooks.batch import BatchOperation
from dynamics_jobqueue.hooks.business_central import BusinessCentralHook
from dynamics_jobqueue.hooks.errors import AuthenticationError, ConflictError, NotFoundError


@pytest.fixture
def bc(sandbox) -> BusinessCentralHook:
    return BusinessCentralHook()


def test_reads_the_cronus_customers_page_by_page(bc: BusinessCentralHook) -> None:
    pages = list(bc.iter_pages("customers", page_size=2, orderby="number"))
    assert [len(p) for p in pages] == [2, 2, 1]
    customers = [c for page in pages for c in page]
    assert customers[0]["number"] == "10000"
    assert customers[0]["displayName"] == "Adatum Corporation"
    assert {c["number"] for c in customers} == {"10000", "20000", "30000", "40000", "50000"}


def test_filter_and_select_are_applied_by_the_server(bc: BusinessCentralHook) -> None:
    rows = [
        r for p in bc.iter_pages("customers", filter="number eq '20000'", select=["number", "displayName"]) for r in p
    ]
    assert len(rows) == 1
    assert rows[0]["displayName"] == "Trey Research"
    assert "city" not in rows[0]


def test_incremental_read_by_last_modified(bc: BusinessCentralHook) -> None:
    all_rows = [r for p in bc.iter_pages("customers") for r in p]
    watermark = max(r["lastModifiedDateTime"] for r in all_rows)
    target = next(r for r in all_rows if r["number"] == "30000")
    bc.update("customers", target["id"], {"phoneNumber": "+44 1223 555 0100"}, etag=target["@odata.etag"])
    changed = [r for p in bc.iter_pages("customers", filter=f"lastModifiedDateTime gt {watermark}") for r in p]
    assert [r["number"] for r in changed] == ["30000"]


def test_resources_come_from_the_configured_custom_api(bc: BusinessCentralHook) -> None:
    assert "api/cronus/integration/v1.0" in bc.entity_path("resources")
    resources = [r for p in bc.iter_pages("resources") for r in p]
    assert "KATHERINE" in {r["number"] for r in resources}


def test_stale_etag_is_a_conflict_and_star_overwrites(bc: BusinessCentralHook) -> None:
    customer = next(iter(bc.iter_pages("customers", filter="number eq '10000'")))[0]
    updated = bc.update("customers", customer["id"], {"website": "adatum.example"}, etag=customer["@odata.etag"])
    assert updated["@odata.etag"] != customer["@odata.etag"]
    with pytest.raises(ConflictError) as excinfo:
        bc.update("customers", customer["id"], {"website": "stale.example"}, etag=customer["@odata.etag"])
    assert excinfo.value.record_id == customer["id"]
    assert bc.update("customers", customer["id"], {"website": "forced.example"})["website"] == "forced.example"


def test_unknown_record_is_not_found_with_the_api_code(bc: BusinessCentralHook) -> None:
    with pytest.raises(NotFoundError) as excinfo:
        bc.get("customers", "00000000-0000-4000-8000-00000000dead")
    assert excinfo.value.status == 404
    assert excinfo.value.code


def test_batch_returns_one_result_per_operation(bc: BusinessCentralHook) -> None:
    ops = [
        BatchOperation(str(n), "POST", "currencies", {"code": f"X{n:02d}", "displayName": f"Test {n}"})
        for n in range(150)
    ]
    ops.append(BatchOperation("dup", "POST", "currencies", {"code": "X00", "displayName": "duplicate"}))
    results = bc.batch(ops)
    assert [r.id for r in results] == [op.id for op in ops]
    assert all(r.ok for r in results[:150])
    assert not results[-1].ok and results[-1].error is not None
    created = [r for p in bc.iter_pages("currencies", filter="startswith(displayName,'Test ')") for r in p]
    assert len(created) == 150


def test_wrong_client_secret_is_an_authentication_error(sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in sandbox.environment(client=("integration-app", "wrong")).items():
        monkeypatch.setenv(name, value)
    with pytest.raises(AuthenticationError, match="invalid_client"):
        next(BusinessCentralHook().iter_pages("customers"))
