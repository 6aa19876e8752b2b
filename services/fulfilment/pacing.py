"""Pacing at run time: each paced provider's token bucket (`domain.pace`) on the injected
clock, waited for with the injected sleep, and what the waits and turns are counted as."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter

from services.common.clock import Clock
from services.fulfilment.domain.pace import TokenBucket
from services.fulfilment.retry import Sleep


class PaceMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.turns = Counter("amends_paced_issues_total",
                             "Remedies and messages issued through a paced provider",
                             ["provider"], registry=registry)
        self.waited = Counter("amends_pace_wait_seconds_total",
                              "Time spent waiting for a paced provider's turn",
                              ["provider"], registry=registry)


@dataclass
class Pacer:
    """Waits for a provider's turn; providers without a bucket are not paced."""

    buckets: Mapping[str, TokenBucket]
    clock: Clock
    sleep: Sleep = asyncio.sleep
    metrics: PaceMetrics | None = None

    def paces(self, provider: str) -> bool:
        return provider in self.buckets

    def burst(self, provider: str) -> int:
        """How many turns the provider may take at once (a chunk's size)."""
        bucket = self.buckets.get(provider)
        return int(bucket.burst) if bucket is not None else 0

    async def turn(self, provider: str, turns: int = 1, *,
                   deadline: float | None = None) -> bool:
        """Wait for `turns` of `provider`; False (nothing taken) when they would come after
        `deadline` (the event loop's clock)."""
        bucket = self.buckets.get(provider)
        if bucket is None or turns <= 0:
            return True
        wait = bucket.take(self.clock(), turns)
        if deadline is not None and asyncio.get_running_loop().time() + wait >= deadline:
            bucket.give_back(turns)
            return False
        if wait > 0:
            await self.sleep(wait)
        if self.metrics is not None:
            self.metrics.turns.labels(provider).inc(turns)
            self.metrics.waited.labels(provider).inc(wait)
        return True
