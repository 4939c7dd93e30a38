"""Fixtures of the posting tests: the Business Central hook on the sandbox and helpers to queue documents."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from dynamics_jobqueue.posting import queue
from dynamics_jobqueue.posting.categories import document_type
from dynamics_jobqueue.posting.entries import JobQueueEntry


class Posting:
    """The sandbox's posting controls and the documents of the ERP side, over real HTTP."""

    def __init__(self, sandbox: Any, store: Any) -> None:
        from dynamics_jobqueue.hooks.business_central import BusinessCentralHook

        self.sandbox = sandbox
        self.store = store
        self.bc = BusinessCentralHook()

    def configure(self, **config: Any) -> None:
        self.sandbox.admin("posting", config)

    def postings(self) -> list[dict[str, Any]]:
        return list(self.sandbox.admin("postings")["value"])

    def documents(self, entity_set: str, filter: str | None = None) -> list[dict[str, Any]]:
        return [record for page in self.bc.iter_pages(entity_set, filter=filter) for record in page]

    def document(self, entity_set: str, number: str) -> dict[str, Any]:
        found = self.documents(entity_set, f"number eq '{number}'")
        assert found, f"{entity_set} {number} not found"
        return found[0]

    def enqueue(self, doc_type: str, number: str, **kwargs: Any) -> JobQueueEntry:
        record = self.document(document_type(doc_type).entity_set, number)
        return queue.enqueue(
            self.store,
            queue.EnqueueRequest(
                document_type=doc_type,
                document_id=uuid.UUID(record["id"]),
                document_number=number,
                user_id=kwargs.pop("user_id", "ALICE"),
                **kwargs,
            ),
        )

    def entry(self, entry_id: uuid.UUID) -> JobQueueEntry:
        found = queue.get_entry(self.store, entry_id)
        assert found is not None
        return found


@pytest.fixture
def posting(sandbox, state_store) -> Iterator[Posting]:
    """Sandbox reset to the CRONUS seed, posting controls cleared, and the hook to it."""
    helper = Posting(sandbox, state_store)
    helper.configure()
    helper.documents("salesInvoices")  # the first document request seeds the documents of a fresh store
    helper.sandbox.session().delete(f"{sandbox.base_url}/_sandbox/postings").raise_for_status()
    yield helper
    helper.configure()
