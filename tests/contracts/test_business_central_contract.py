"""BusinessCentralHook against Microsoft's documented Business Central API v2.0 responses, over real HTTPS."""

from __future__ import annotations

import pytest

from dynamics_jobqueue.hooks.batch import BatchOperation
from dynamics_jobqueue.hooks.business_central import BusinessCentralHook
from dynamics_jobqueue.hooks.errors import MalformedResponseError

ITEM = "7ce0af2e-0963-460f-9b1f-0014aea3e117"
#: The documented answer elides the item's other fields with a JSON comment; resolved as README says.
ELISION = (",\n                           // ...\n", "\n")


def _item_ops() -> list[BatchOperation]:
    return [
        BatchOperation("name", "PATCH", f"items({ITEM})", {"displayName": "Touring Bicycle v2"}, {"If-Match": "*"}),
        BatchOperation(
            "picture",
            "PATCH",
            f"items({ITEM})/picture({ITEM})/contentValue",
            {"value": "Picture Blob"},
            {"If-Match": "*"},
        ),
        BatchOperation("type", "PATCH", f"items({ITEM})", {"type": "Invalid Type"}, {"If-Match": "*"}),
    ]


def test_batch_answer_as_printed_is_a_typed_error_not_a_value_error(contract) -> None:
    contract.answer("POST", "/$batch", "business_central/batch_isolation_snapshot.json", json_status="200 OK")
    with pytest.raises(MalformedResponseError) as excinfo:
        BusinessCentralHook().batch(_item_ops(), atomic=True)
    assert excinfo.value.entity_set == "$batch of items"


def test_answers_with_id_null_are_matched_by_position(contract) -> None:
    contract.answer(
        "POST", "/$batch", "business_central/batch_isolation_snapshot.json", json_status="200 OK", edit=ELISION
    )
    results = BusinessCentralHook().batch(_item_ops())
    assert [r.status for r in results] == [200, 204, 400]
    assert results[0].body["displayName"] == "Touring Bicycle v2"
    error = results[2].error
    assert error is not None and error.code == "Unknown" and error.record_id == "type"
    assert "'Invalid Type' is not an option" in error.message
    (sent,) = contract.requests_to("/$batch")
    assert "isolation" not in sent.headers


def test_atomic_batch_with_a_failure_reports_the_rolled_back_successes_as_failed(contract) -> None:
    contract.answer(
        "POST", "/$batch", "business_central/batch_isolation_snapshot.json", json_status="200 OK", edit=ELISION
    )
    results = BusinessCentralHook().batch(_item_ops(), atomic=True)
    assert [r.status for r in results] == [424, 424, 400]
    assert all(r.error is not None for r in results)
    assert "rolled back: operation type" in results[0].error.message  # type: ignore[union-attr]
    (sent,) = contract.requests_to("/$batch")
    assert sent.headers["isolation"] == "snapshot"


def test_enum_values_are_decoded_on_read(contract) -> None:
    contract.answer("GET", "/opportunities(", "business_central/opportunity_get.json", json_status="200 OK")
    contract.answer("GET", "/customers(", "business_central/customer_get.json", json_status="200 OK")
    hook = BusinessCentralHook()
    assert hook.get("opportunities", "2438bf05-52ff-eb11-bb76-000d3a220646")["status"] == "In Progress"
    customer = hook.get("customers", "f2a5738a-44e3-ea11-bb43-000d3a2feca1")
    assert customer["blocked"] == " " and customer["displayName"] == "Adatum Corporation"
