"""The drain operator's task failure: the alert's text and the users who queued the failed documents."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException

from dynamics_jobqueue.operators.posting import DrainJobQueueOperator
from dynamics_jobqueue.posting.entries import Status


def test_a_failed_posting_fails_the_task_naming_the_document_and_carrying_who_queued_it(posting, tmp_path) -> None:
    good = posting.enqueue("Sales Invoice", "S-INV1001", user_id="JO")
    bad = posting.enqueue("Sales Invoice", "S-INV1008", user_id="EH")  # designed to fail: nothing to post
    operator = DrainJobQueueOperator(task_id="drain", category_code="SALESPOST", print_destination=str(tmp_path))
    with pytest.raises(AirflowFailException) as info:
        operator.execute({})  # type: ignore[arg-type]
    message = str(info.value)
    assert "S-INV1008" in message and "EH" in message and "There is nothing to post." in message
    assert info.value.queued_by == ["EH"]  # type: ignore[attr-defined]
    assert posting.entry(good.id).status is Status.FINISHED
    assert posting.entry(bad.id).status is Status.ERROR
