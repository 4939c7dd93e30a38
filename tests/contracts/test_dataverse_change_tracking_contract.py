"""Dataverse change tracking as Microsoft documents it ("Use change tracking to synchronize data with external
systems", the Web API example): DataverseHook.iter_changes and the CRM change trigger's read of a delta link."""

from __future__ import annotations

import pytest

from dynamics_jobqueue.hooks.dataverse import DataverseHook
from dynamics_jobqueue.triggers.dataverse_changes import DataverseChangesTrigger

DELTA_TOKEN = "$deltatoken=919042%2108%2f22%2f2017%2008%3a10%3a44"
#: requests writes percent-escapes in upper case (%2F): equivalent (RFC 3986, 6.2.2.1), so routes match the prefix.
DELTA_ROUTE = "$deltatoken=919042"


@pytest.mark.parametrize("framing", ["lf", "crlf"])
def test_the_initial_read_and_the_documented_delta(contract, framing: str) -> None:
    contract.answer("GET", DELTA_ROUTE, "dataverse/change_tracking_delta.http", framing=framing)
    contract.answer("GET", "/accounts", "dataverse/change_tracking_initial.http", framing=framing)
    hook = DataverseHook()
    (initial,) = hook.iter_changes("accounts", select=["name", "accountnumber", "telephone1", "fax"])
    assert [r["accountid"] for r in initial.records] == ["60c4e274-0d87-e711-80e5-00155db19e6d"]
    assert initial.deleted_ids == [] and initial.delta_link is not None and DELTA_TOKEN in initial.delta_link
    first = contract.requests_to("/accounts")[0]
    assert first.headers["prefer"].startswith("odata.track-changes")
    (delta,) = hook.iter_changes("accounts", delta_link=initial.delta_link)
    assert [r["name"] for r in delta.records] == ["Monte Orton"]
    assert delta.deleted_ids == ["2e451703-c686-e711-80e5-00155db19e6d"]
    assert delta.delta_link is not None and "919058" in delta.delta_link
    # The delta link is followed as given: no query options added to it.
    assert contract.requests_to(DELTA_ROUTE)[0].path.lower().endswith(DELTA_TOKEN)


def test_the_trigger_counts_the_documented_delta_as_one_change_and_one_deletion(contract) -> None:
    contract.answer("GET", DELTA_ROUTE, "dataverse/change_tracking_delta.http")
    contract.answer("GET", "/accounts", "dataverse/change_tracking_initial.http")
    hook = DataverseHook()
    trigger = DataverseChangesTrigger(entity_set="accounts")
    _, _, link = trigger._read(hook, None, "the-integration-user")
    changed, deleted, new_link = trigger._read(hook, link, "the-integration-user")
    assert (changed, deleted) == (1, 1) and "919058" in new_link
    assert trigger.requests == 2  # one request per read when the answer has one page
