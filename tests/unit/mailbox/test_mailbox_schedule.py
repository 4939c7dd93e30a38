"""Adaptive frequency arithmetic and the batching of due mailboxes below ``max_map_length``."""

from __future__ import annotations

from dynamics_jobqueue.mailbox.crm import activity_id_for
from dynamics_jobqueue.mailbox.cycle import MAX_MAP_LENGTH, plan_batches
from dynamics_jobqueue.mailbox.schedule import idle_interval, transient_interval


def test_idle_backoff_doubles_and_caps() -> None:
    assert [idle_interval(900, 21_600, n) for n in range(7)] == [900, 1800, 3600, 7200, 14_400, 21_600, 21_600]
    assert idle_interval(900, 21_600, 10_000) == 21_600


def test_transient_retry_starts_at_a_minute_and_never_exceeds_the_base() -> None:
    assert [transient_interval(900, n) for n in range(1, 7)] == [60, 120, 240, 480, 900, 900]


def test_batches_stay_below_max_map_length() -> None:
    assert plan_batches([]) == []
    assert plan_batches([1, 2, 3]) == [[1], [2], [3]]
    ids = list(range(5_000))
    batches = plan_batches(ids)
    assert len(batches) < MAX_MAP_LENGTH
    assert [i for b in batches for i in b] == ids


def test_activity_id_is_stable_and_case_insensitive() -> None:
    assert activity_id_for("<A@X>") == activity_id_for("<a@x>")
    assert activity_id_for("<a@x>") != activity_id_for("<b@x>")
