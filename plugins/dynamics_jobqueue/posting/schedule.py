"""When the posting DAGs run: the drain interval and the daily Batch Post time.

Read from the provider's settings (:mod:`dynamics_jobqueue.settings`) at DAG parse time (cheap, no network):

- ``posting_drain_cron``: how often the job queue is drained (default ``*/2 * * * *``);
- ``batch_post_time``: the daily Batch Post, ``HH:MM`` (default ``18:00``), the "convenient hour" of
  the reference's scheduled Batch Post reports;
- ``batch_post_timezone``: the time zone of that hour (default ``Europe/London``, CRONUS UK).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from dynamics_jobqueue import settings


@dataclass(frozen=True)
class PostingSchedule:
    """The two schedules of a posting DAG.

    :param drain_cron: cron of the drain runs.
    :param batch_hour: hour of the daily Batch Post (0-23). :param batch_minute: its minute.
    :param timezone: IANA name of the time zone of the Batch Post time.
    """

    drain_cron: str = "*/2 * * * *"
    batch_hour: int = 18
    batch_minute: int = 0
    timezone: str = "Europe/London"

    @classmethod
    def from_env(cls) -> PostingSchedule:
        """Read the settings (see the module docstring).

        :raises ValueError: on a malformed time or an unknown time zone.
        """
        hour, _, minute = settings.get("batch_post_time").partition(":")
        schedule = cls(
            drain_cron=settings.get("posting_drain_cron"),
            batch_hour=int(hour),
            batch_minute=int(minute or 0),
            timezone=settings.get("batch_post_timezone"),
        )
        if not (0 <= schedule.batch_hour < 24 and 0 <= schedule.batch_minute < 60):
            raise ValueError(f"batch_post_time must be HH:MM, got {hour}:{minute}")
        ZoneInfo(schedule.timezone)
        return schedule

    @property
    def batch_cron(self) -> str:
        """The daily Batch Post as a cron expression (in :attr:`timezone`)."""
        return f"{self.batch_minute} {self.batch_hour} * * *"

    def is_batch_time(self, moment: datetime) -> bool:
        """Whether a run scheduled at ``moment`` (aware) is the daily Batch Post run."""
        local = moment.astimezone(ZoneInfo(self.timezone))
        return (local.hour, local.minute) == (self.batch_hour, self.batch_minute)
