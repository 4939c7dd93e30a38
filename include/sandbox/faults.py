"""Latency and fault injection for the API routes, plus request statistics.

Two kinds of fault, as a real service shows them:

- *before* processing (``rate_429``, ``rate_5xx``, ``rate_drop``): decided when a request arrives, before it
  reaches an API handler, so nothing was written and the client may simply retry;
- *after* processing (``rate_5xx_after``, ``rate_drop_after``): the handler ran and committed its writes (a
  whole ``$batch`` included), then the answer is replaced by a 500/503 or the connection is dropped. The
  client cannot tell what was written: only keyed, idempotent writes and a state protocol that survives an
  unknown outcome keep the two systems from diverging (issue 10).
"""

from __future__ import annotations

import os
import random
from collections import Counter
from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass
class FaultConfig:
    """What goes wrong, and how often.

    :param latency_ms: delay added to every API request, in milliseconds.
    :param rate_429: probability (0..1) of a 429 Too Many Requests answer with ``Retry-After``.
    :param retry_after_s: the ``Retry-After`` value of a 429 answer, in seconds.
    :param rate_5xx: probability of a 503 or 500 answer.
    :param rate_drop: probability that the connection is closed without an answer.
    :param rate_5xx_after: probability that a request is processed and committed, then answered 503 or 500.
    :param rate_drop_after: probability that a request is processed and committed, then its connection is
        closed without an answer.
    :param route: only requests of this route fault (a label of the statistics, e.g. ``POST bc/$batch``);
        every API request when ``None``.
    :param seed: seed of the random generator (``None``: not reproducible).
    """

    latency_ms: float = 0.0
    rate_429: float = 0.0
    retry_after_s: float = 1.0
    rate_5xx: float = 0.0
    rate_drop: float = 0.0
    rate_5xx_after: float = 0.0
    rate_drop_after: float = 0.0
    route: str | None = None
    seed: int | None = None

    @classmethod
    def from_env(cls) -> FaultConfig:
        """Read ``SANDBOX_LATENCY_MS``, ``SANDBOX_RATE_429``, ``SANDBOX_RETRY_AFTER``, ``SANDBOX_RATE_5XX``,
        ``SANDBOX_RATE_DROP``, ``SANDBOX_RATE_5XX_AFTER``, ``SANDBOX_RATE_DROP_AFTER``, ``SANDBOX_FAULT_ROUTE``
        and ``SANDBOX_SEED``."""
        env = os.environ
        seed = env.get("SANDBOX_SEED")
        return cls(
            latency_ms=float(env.get("SANDBOX_LATENCY_MS", 0)),
            rate_429=float(env.get("SANDBOX_RATE_429", 0)),
            retry_after_s=float(env.get("SANDBOX_RETRY_AFTER", 1)),
            rate_5xx=float(env.get("SANDBOX_RATE_5XX", 0)),
            rate_drop=float(env.get("SANDBOX_RATE_DROP", 0)),
            rate_5xx_after=float(env.get("SANDBOX_RATE_5XX_AFTER", 0)),
            rate_drop_after=float(env.get("SANDBOX_RATE_DROP_AFTER", 0)),
            route=env.get("SANDBOX_FAULT_ROUTE") or None,
            seed=int(seed) if seed else None,
        )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FaultConfig:
        """A configuration from the admin endpoint's JSON; absent keys mean "no fault".

        :raises ValueError: on unknown keys or values out of range.
        """
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        config = cls(**{k: v for k, v in data.items() if v is not None})
        for name in ("rate_429", "rate_5xx", "rate_drop", "rate_5xx_after", "rate_drop_after"):
            if not 0 <= float(getattr(config, name)) <= 1:
                raise ValueError(f"{name} must be between 0 and 1")
        if config.latency_ms < 0 or config.retry_after_s < 0:
            raise ValueError("latency_ms and retry_after_s must not be negative")
        return config

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class Faults:
    """The active fault configuration and its random generator."""

    def __init__(self, config: FaultConfig) -> None:
        self.configure(config)

    def configure(self, config: FaultConfig) -> None:
        self.config = config
        self._random = random.Random(config.seed)

    def applies(self, route: str) -> bool:
        """True when requests of ``route`` may fault (see :attr:`FaultConfig.route`)."""
        return self.config.route is None or self.config.route == route

    def decide(self) -> str | None:
        """``"drop"``, ``"429"``, ``"503"``, ``"500"`` or ``None`` for the request that just arrived."""
        c = self.config
        if c.rate_drop and self._random.random() < c.rate_drop:
            return "drop"
        if c.rate_429 and self._random.random() < c.rate_429:
            return "429"
        if c.rate_5xx and self._random.random() < c.rate_5xx:
            return "503" if self._random.random() < 0.5 else "500"
        return None

    def decide_after(self) -> str | None:
        """``"drop"``, ``"503"``, ``"500"`` or ``None`` for a request whose handler has just committed."""
        c = self.config
        if c.rate_drop_after and self._random.random() < c.rate_drop_after:
            return "drop"
        if c.rate_5xx_after and self._random.random() < c.rate_5xx_after:
            return "503" if self._random.random() < 0.5 else "500"
        return None

    def retry_after(self) -> str:
        value = self.config.retry_after_s
        return str(int(value)) if float(value).is_integer() else str(value)


class Stats:
    """Counts API requests (a ``$batch`` is one request) and the faults injected since the last reset.

    ``faults`` is keyed ``"<before|after> <decision>"``, e.g. ``"before 429"`` or ``"after drop"``: a fault
    *after* was injected once the handler had committed.
    """

    def __init__(self) -> None:
        self.requests = 0
        self.by_route: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()

    def count(self, route: str) -> None:
        self.requests += 1
        self.by_route[route] += 1

    def fault(self, when: str, decision: str) -> None:
        self.faults[f"{when} {decision}"] += 1

    def reset(self) -> None:
        self.requests = 0
        self.by_route.clear()
        self.faults.clear()

    def as_json(self) -> dict[str, Any]:
        return {"requests": self.requests, "by_route": dict(self.by_route), "faults": dict(self.faults)}
