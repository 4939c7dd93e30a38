"""Retries against injected faults: 429 with Retry-After, 503, dropped connections (the sandbox decides a fault
before it applies any write, as the real services do for service-protection limits)."""

from __future__ import annotations

import time

import pytest

from dynamics_jobqueue.hooks.batch import BatchOperation
from dynamics_jobqueue.hooks.business_central import BusinessCentralHook
from dynamics_jobqueue.hooks.dataverse import DataverseHook
from dynamics_jobqueue.hooks.errors import ThrottledError


def _requests(sandbox) -> int:
    return int(sandbox.admin("stats")["requests"])


def test_429s_are_retried_after_retry_after_and_reads_complete(sandbox) -> None:
    sandbox.admin("faults", {"rate_429": 0.3, "retry_after_s": 0, "seed": 7})
    sandbox.admin("stats/reset", {})
    rows = [r for p in BusinessCentralHook().iter_pages("currencies", page_size=5) for r in p]
    assert len(rows) == 47
    assert _requests(sandbox) > 10  # 10 pages plus the retried ones
    # Every request beyond the 10 pages was one the sandbox answered 429 (its count of injected faults).
    assert sandbox.admin("stats")["faults"] == {"before 429": _requests(sandbox) - 10}


def test_retry_after_is_honoured(sandbox, monkeypatch) -> None:
    sandbox.admin("faults", {"rate_429": 1.0, "retry_after_s": 1})
    for name, value in sandbox.environment(max_retries=2).items():
        monkeypatch.setenv(name, value)
    hook = DataverseHook()
    started = time.monotonic()
    with pytest.raises(ThrottledError) as excinfo:
        hook.who_am_i()
    assert time.monotonic() - started >= 2.0  # two waits of Retry-After: 1 s
    assert excinfo.value.status == 429


def test_dropped_connections_and_503s_on_idempotent_batches_end_in_the_same_state(sandbox) -> None:
    sandbox.admin("faults", {"rate_drop": 0.2, "rate_5xx": 0.2, "seed": 3})
    ops = [BatchOperation(str(n), "PATCH", f"accounts(accountnumber='R-{n}')", {"name": f"R {n}"}) for n in range(50)]
    hook = DataverseHook()
    for start in range(0, 50, 5):
        results = hook.batch(ops[start : start + 5], idempotent=True)
        assert all(r.ok for r in results)
    sandbox.admin("faults", {})
    names = sorted(r["name"] for p in hook.iter_pages("accounts", filter="startswith(accountnumber,'R-')") for r in p)
    assert names == sorted(f"R {n}" for n in range(50))
