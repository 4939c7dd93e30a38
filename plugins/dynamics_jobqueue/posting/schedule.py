"""When the posting DAGs run: the drain interval and the daily Batch Post time.

Read from the environment at DAG parse time (cheap, no network), so a deployment sets them next to its
connections:

- ``DYNAMICS_POSTING_DRAIN_CRON``: how often the job queue is drained (default ``*/2 * * * *``);
- ``DYNAMICS_BATCH_POST_TIME``: the daily Batch Post, ``HH:MM`` (default ``18:00``), the "convenient hour" of
  the reference's scheduled Batch Post reports;
- ``DYNAMICS_BATCH_POST_TIMEZONE``: the time zone of that hour (default ``Europe/London``, CRONUS UK).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo


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
        """Read the environment (see the module docstring).

        :raises ValueError: on a malformed time or an unknown time zone.
        """
        hour, _, minute = os.environ.get("DYNAMICS_BATCH_POST_TIME", "18:00").partition(":")
        schedule = cls(
            drain_cron=os.environ.get("DYNAMICS_POSTING_DRAIN_CRON", cls.drain_cron),
            batch_hour=int(hour),
            batch_minute=int(minute or 0),
            timezone=os.environ.get("DYNAMICS_BATCH_POST_TIMEZONE", cls.timezone),
        )
        if not (0 <= schedule.batch_hour < 24 and 0 <= schedule.batch_minute < 60):
            raise ValueError(f"DYNAMICS_BATCH_POST_TIME must be HH:MM, got {hour}:{minute}")
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
