"""Enqueue, Remove from Job Queue and the document-level Job Queue Status on a real Postgres."""

from __future__ import annotations

import threading
import uuid

import pytest

from dynamics_jobqueue.posting import queue
from dynamics_jobqueue.posting.entries import JobQueueStatus, Status
from dynamics_jobqueue.posting.queue import AlreadyScheduledError, EnqueueRequest, JobQueueError, NotInJobQueueError


def _request(number: str = "S-INV1001", **kwargs) -> EnqueueRequest:
    return EnqueueRequest(
        document_type=kwargs.pop("document_type", "Sales Invoice"),
        document_id=kwargs.pop("document_id", uuid.uuid5(uuid.NAMESPACE_URL, number)),
        document_number=number,
        user_id=kwargs.pop("user_id", "ALICE"),
        **kwargs,
    )


def test_enqueue_sets_scheduled_for_posting_with_posting_defaults(state_store) -> None:
    entry = queue.enqueue(state_store, _request())
    assert entry.status is Status.READY
    assert entry.category_code == "SALESPOST"
    assert entry.timeout_s == 7200  # 2 h, the reference's posting timeout
    assert entry.description == "Post Sales Invoice S-INV1001."
    assert (
        queue.document_job_queue_status(state_store, "Sales Invoice", entry.document_id)
        is JobQueueStatus.SCHEDULED_FOR_POSTING
    )
    assert (
        queue.scheduled_message("Sales Invoice", "S-INV1001")
        == "Sales Invoice S-INV1001 has been scheduled for posting."
    )


def test_second_enqueue_is_refused_with_the_reference_message(state_store) -> None:
    queue.enqueue(state_store, _request())
    with pytest.raises(AlreadyScheduledError) as refused:
        queue.enqueue(state_store, _request(user_id="BOB"))
    assert str(refused.value).startswith(
        "Sales Invoice S-INV1001 cannot be posted because it has already been scheduled for posting."
    )
    assert len(queue.list_entries(state_store)) == 1


def test_concurrent_enqueues_of_one_document_queue_it_once(state_store) -> None:
    outcomes: list[str] = []

    def press_post(user: str) -> None:
        try:
            queue.enqueue(state_store, _request(user_id=user))
            outcomes.append("queued")
        except AlreadyScheduledError:
            outcomes.append("refused")

    threads = [threading.Thread(target=press_post, args=(f"USER{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["queued"] + ["refused"] * 5


def test_remove_from_job_queue_deletes_the_entry_and_clears_the_status(state_store) -> None:
    entry = queue.enqueue(state_store, _request())
    removed = queue.remove(state_store, "Sales Invoice", "S-INV1001")
    assert removed.id == entry.id
    assert queue.get_entry(state_store, entry.id) is None
    assert queue.document_job_queue_status(state_store, "Sales Invoice", entry.document_id) is JobQueueStatus.BLANK
    with pytest.raises(NotInJobQueueError, match="is not in the job queue"):
        queue.remove(state_store, "Sales Invoice", "S-INV1001")
    queue.enqueue(state_store, _request())  # blank again: may be queued again


def test_an_entry_in_process_cannot_be_removed_and_the_message_says_what_to_do(state_store) -> None:
    # Deliberately stricter than the reference (whose Remove from Job Queue deletes entries whatever their status).
    entry = queue.enqueue(state_store, _request())
    with state_store.transaction() as cur:
        cur.execute("UPDATE dynamics.job_queue_entries SET status = 'In Process' WHERE id = %s", (entry.id,))
    assert queue.document_job_queue_status(state_store, "Sales Invoice", entry.document_id) is JobQueueStatus.POSTING
    with pytest.raises(JobQueueError) as refused:
        queue.remove(state_store, "Sales Invoice", "S-INV1001")
    assert str(refused.value) == (
        "Sales Invoice S-INV1001 is being posted and cannot be removed from the job queue. Wait until the posting "
        "ends: when it posts, the document leaves the job queue; when it fails, its entry goes to Error and can "
        "then be removed or set Ready. An entry whose worker stopped is resolved by the next drain of its "
        "category, at the latest when its Job Timeout has passed."
    )
    assert queue.get_entry(state_store, entry.id) is not None  # kept


def test_a_document_in_error_may_be_queued_again(state_store) -> None:
    entry = queue.enqueue(state_store, _request())
    with state_store.transaction() as cur:
        cur.execute(
            "UPDATE dynamics.job_queue_entries SET status = 'Error', error_message = 'There is nothing to post.' "
            "WHERE id = %s",
            (entry.id,),
        )
    assert queue.document_job_queue_status(state_store, "Sales Invoice", entry.document_id) is JobQueueStatus.ERROR
    again = queue.enqueue(state_store, _request(user_id="BOB"))
    assert again.id != entry.id
    assert [e.id for e in queue.list_entries(state_store)] == [again.id]


def test_post_and_print_is_refused_where_the_api_has_no_pdf(state_store) -> None:
    with pytest.raises(JobQueueError, match="Post & Print is not available"):
        queue.enqueue(state_store, _request(document_type="Sales Return Order", post_and_print=True))


def test_enqueue_many_leaves_scheduled_documents_alone(state_store) -> None:
    queue.enqueue(state_store, _request("S-INV1001"))
    queued, refused = queue.enqueue_many(state_store, [_request("S-INV1001"), _request("S-INV1002")])
    assert queued == 1
    assert refused == [queue.already_scheduled_message("Sales Invoice", "S-INV1001")]
    mine = queue.list_entries(state_store, user_id="ALICE", statuses=[Status.READY])
    assert {e.document_number for e in mine} == {"S-INV1001", "S-INV1002"}
