"""Named crash points of a mapping run: the boundaries where a worker may die, for the crash-safety tests.

A run reports every boundary it passes to its ``checkpoint`` callable (:class:`~.runner.MappingRunner`). In
production that is :func:`from_environment` with no variable set: it does nothing. A test sets
``DYNAMICS_SYNC_CRASH_AT=<point>`` (or ``<point>@<n>`` for the n-th time the run passes it) in a child
process, which then dies with ``os._exit`` at that exact point, as a worker killed by ``kill -9`` or an
out-of-memory kill would: no ``finally``, no rollback message, connections cut.

Points, for each stage (``to_crm``, ``from_crm``, ``write_back``: the to-CRM fields of ERP records just created
from the CRM):

- ``<stage>.pending``: the pending couplings of a page's creates are committed, the creates not yet sent;
- ``<stage>.batch.before`` / ``<stage>.batch.answered``: just before a ``$batch`` request, and just after its
  answer arrived (the service has committed; for the state store nothing happened yet);
- ``<stage>.commit.inside`` / ``<stage>.commit.after``: the page's outcome is written but not committed, and
  just after the commit;
- ``<stage>.pass.before_finish`` / ``<stage>.pass.finished`` (``to_crm`` and ``from_crm``): every page is
  committed and the job and watermark are not, and just after;
- ``staging.read``: the CRM changes of a bidirectional run are staged, no pass has started.
"""

from __future__ import annotations

import os
from collections.abc import Callable

#: The environment variable naming the point where the process dies (test-only).
CRASH_AT_ENV = "DYNAMICS_SYNC_CRASH_AT"
#: Exit status of a process stopped at its crash point.
CRASHED = 70

STAGES = ("to_crm", "from_crm", "write_back")
#: Every point a run can report (see the module docstring).
POINTS = (
    "staging.read",
    *(
        f"{stage}.{point}"
        for stage in STAGES
        for point in ("pending", "batch.before", "batch.answered", "commit.inside", "commit.after")
    ),
    *(f"{stage}.pass.{point}" for stage in ("to_crm", "from_crm") for point in ("before_finish", "finished")),
)


def crash_at(point: str, occurrence: int = 1) -> Callable[[str], None]:
    """A checkpoint that kills the process the ``occurrence``-th time the run passes ``point``.

    :raises ValueError: for an unknown point (a typo would otherwise never crash and prove nothing).
    """
    if point not in POINTS:
        raise ValueError(f"unknown crash point {point!r}; known points: {', '.join(POINTS)}")
    seen = 0

    def checkpoint(name: str) -> None:
        nonlocal seen
        if name == point:
            seen += 1
            if seen == occurrence:
                os._exit(CRASHED)

    return checkpoint


def from_environment() -> Callable[[str], None]:
    """The checkpoint :envvar:`DYNAMICS_SYNC_CRASH_AT` asks for (``point`` or ``point@n``); a no-op when unset."""
    value = os.environ.get(CRASH_AT_ENV, "").strip()
    if not value:
        return _ignore
    point, _, occurrence = value.partition("@")
    return crash_at(point, int(occurrence) if occurrence else 1)


def _ignore(_: str) -> None:
    return None
