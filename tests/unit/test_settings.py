"""The provider's settings: Airflow's ``[dynamics_jobqueue]`` section, its environment overrides, one module."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dynamics_jobqueue import get_provider_info, settings
from dynamics_jobqueue.posting.schedule import PostingSchedule

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for option in settings.OPTIONS:
        monkeypatch.delenv(settings.env_name(option), raising=False)
        monkeypatch.delenv(settings.legacy_env_name(option), raising=False)


def test_defaults_airflow_override_and_the_earlier_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings.get("crm_sync_schedule") == "*/30 * * * *"
    monkeypatch.setenv("DYNAMICS_CRM_SYNC_SCHEDULE", "*/5 * * * *")
    assert settings.get("crm_sync_schedule") == "*/5 * * * *"
    monkeypatch.setenv("AIRFLOW__DYNAMICS_JOBQUEUE__CRM_SYNC_SCHEDULE", "none")
    assert settings.get("crm_sync_schedule") == "none"


def test_booleans_and_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings.embedded_state_store() is False
    monkeypatch.setenv("AIRFLOW__DYNAMICS_JOBQUEUE__EMBEDDED_STATE_STORE", "True")
    assert settings.embedded_state_store() is True
    assert settings.alert_to() == []
    monkeypatch.setenv("AIRFLOW__DYNAMICS_JOBQUEUE__ALERT_TO", " a@cronus.test, ,b@cronus.test ")
    assert settings.alert_to() == ["a@cronus.test", "b@cronus.test"]


def test_posting_schedule_reads_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__DYNAMICS_JOBQUEUE__BATCH_POST_TIME", "07:45")
    monkeypatch.setenv("AIRFLOW__DYNAMICS_JOBQUEUE__BATCH_POST_TIMEZONE", "Europe/Berlin")
    schedule = PostingSchedule.from_env()
    assert (schedule.batch_cron, schedule.timezone, schedule.drain_cron) == (
        "45 7 * * *",
        "Europe/Berlin",
        "*/2 * * * *",
    )
    monkeypatch.setenv("AIRFLOW__DYNAMICS_JOBQUEUE__BATCH_POST_TIME", "25:00")
    with pytest.raises(ValueError, match="batch_post_time must be HH:MM"):
        PostingSchedule.from_env()


def test_every_option_is_declared_in_the_provider_info() -> None:
    options = get_provider_info()["config"]["dynamics_jobqueue"]["options"]
    assert set(options) == set(settings.OPTIONS)
    assert options["embedded_state_store"]["default"] == "False"


def test_the_package_and_dags_read_the_environment_only_through_settings() -> None:
    # Crash points (CRASH_*_ENV) are test instrumentation that kills the process, not settings.
    reads = re.compile(r"os\.(?:environ|getenv)\b(?!\.get\(CRASH_)")
    readers = [
        path.relative_to(REPO).as_posix()
        for folder in ("plugins/dynamics_jobqueue", "dags")
        for path in sorted((REPO / folder).rglob("*.py"))
        if reads.search(path.read_text())
    ]
    assert readers == ["plugins/dynamics_jobqueue/settings.py"]
