"""The job queue entry's decision: when a scheduled run skips a mapping On Hold with Inactivity Timeout."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from dynamics_jobqueue.sync.job_queue import JobQueueEntry, JobQueueStatus, dependencies, skip_reason
from dynamics_jobqueue.sync.loader import load_mappings

MAPPINGS = load_mappings()
CUSTOMER = MAPPINGS.get("CUSTOMER")
HELD_AT = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
SUBSCRIBED_AT = HELD_AT - timedelta(hours=1)


def entry(status: JobQueueStatus = JobQueueStatus.ON_HOLD) -> JobQueueEntry:
    return JobQueueEntry("CUSTOMER", status, HELD_AT, 720, "scheduled__1", status is JobQueueStatus.ON_HOLD)


def reason(**overrides: object) -> str | None:
    facts: dict[str, object] = {
        "now": HELD_AT + timedelta(minutes=30),
        "erp_subscribed_since": SUBSCRIBED_AT,
        "crm_watched": True,
        "active_dependencies": [],
    }
    mapping = overrides.pop("mapping", CUSTOMER)
    job = overrides.pop("entry", entry())
    facts.update(overrides)
    return skip_reason(mapping, job, **facts)  # type: ignore[arg-type]


def test_an_on_hold_mapping_with_both_tables_covered_is_skipped_until_its_timeout() -> None:
    assert CUSTOMER.inactivity_timeout_min == 720
    assert reason() == (
        "On Hold with Inactivity Timeout until 2026-11-30 21:00:00 UTC: a change to business_central/customers or "
        "dataverse/accounts wakes it"
    )
    assert reason(now=HELD_AT + timedelta(minutes=719)) is not None
    assert reason(now=HELD_AT + timedelta(minutes=720)) is None  # the Inactivity Timeout has passed


@pytest.mark.parametrize(
    ("case", "overrides"),
    [
        ("Ready", {"entry": entry(JobQueueStatus.READY)}),
        ("never synced", {"entry": None}),
        ("no live subscription", {"erp_subscribed_since": None}),
        (
            "subscription recreated after the hold (may have missed changes)",
            {"erp_subscribed_since": HELD_AT + timedelta(seconds=1)},
        ),
        ("Dataverse watcher off", {"crm_watched": False}),
        ("a dependency synced changes in this run", {"active_dependencies": ["SALESPEOPLE"]}),
        ("timeout 0: never on hold", {"mapping": replace(CUSTOMER, inactivity_timeout_min=0)}),
    ],
)
def test_a_mapping_is_synced_when(case: str, overrides: dict[str, object]) -> None:
    assert reason(**overrides) is None, case


def test_the_timeout_is_the_mappings_current_one() -> None:
    shorter = replace(CUSTOMER, inactivity_timeout_min=60)
    assert reason(mapping=shorter, now=HELD_AT + timedelta(minutes=61)) is None
    assert "until 2026-11-30 10:00:00 UTC" in (reason(mapping=shorter) or "")


def test_dependencies_are_transitive() -> None:
    assert set(dependencies(MAPPINGS, "CONTACT")) == {
        "CUSTOMER",
        "SALESPEOPLE",
        "CURRENCY",
        "PAYMENT TERMS",
        "SHIPMENT METHOD",
        "SHIPPING AGENT",
    }
    assert dependencies(MAPPINGS, "CURRENCY") == []
