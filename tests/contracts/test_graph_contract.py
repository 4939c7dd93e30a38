"""GraphHook against Microsoft Graph's documented delta responses, over real HTTPS."""

from __future__ import annotations

from dynamics_jobqueue.hooks.graph import GraphHook


def test_message_delta_page_with_a_next_link(contract) -> None:
    contract.answer("GET", "/messages/delta", "graph/message_delta_page.http", times=1)
    pages = GraphHook().iter_message_delta("user@contoso.com", page_size=2)
    first = next(pages)
    assert [m["subject"] for m in first.messages] == ["subject-value"]
    assert first.removed_ids == [] and first.delta_link is None  # more pages follow (the nextLink)
    (sent,) = contract.requests_to("/messages/delta")
    assert sent.path == "/graph/v1.0/users/user@contoso.com/mailFolders/inbox/messages/delta"
    assert sent.headers["prefer"] == "odata.maxpagesize=2"
