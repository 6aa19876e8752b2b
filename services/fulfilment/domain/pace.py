"""Pacing: a token bucket per provider (a message channel, the payment gateway, the ledger),
so that an outage's tens of thousands of remedies and messages reach an SMTP relay or a
payment gateway at the rate it takes, not at once.

Pure: the bucket is given "now" (the injected clock) and answers how long to wait; the
service layer sleeps. A turn is reserved when it is asked for (the bucket may go into debt),
so callers waiting at once are served in the order they asked, each at its own time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

# The most a bucket lets through at once after a quiet spell, in seconds of its rate: small,
# so that the rate a provider sees over any few seconds stays close to the setting.
BURST_S = 0.25


@dataclass
class TokenBucket:
    """`rate` turns a second, at most `burst` of them at once."""

    rate: float
    burst: float
    _tokens: float = field(init=False)
    _at: datetime | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError("a bucket needs a positive rate and room for one turn")
        self._tokens = self.burst

    @classmethod
    def at_rate(cls, rate: float) -> TokenBucket:
        return cls(rate, max(1.0, rate * BURST_S))

    def _refill(self, now: datetime) -> None:
        if self._at is not None and now > self._at:
            elapsed = (now - self._at).total_seconds()
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        if self._at is None or now > self._at:
            self._at = now

    def take(self, now: datetime, turns: float = 1.0) -> float:
        """Reserve `turns`; the seconds to wait from `now` before using them."""
        self._refill(now)
        self._tokens -= turns
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def give_back(self, turns: float = 1.0) -> None:
        """Turns reserved and not used (the caller could not wait that long)."""
        self._tokens = min(self.burst, self._tokens + turns)


def shares(per_second: dict[str, float], instances: int) -> dict[str, TokenBucket]:
    """One bucket per paced provider, at this instance's share of the rate: the decisions
    are keyed by customer and spread evenly over the partitions, so each of `instances`
    consumers of the group gets about as many of an outage's customers as the others."""
    return {provider: TokenBucket.at_rate(rate / instances)
            for provider, rate in per_second.items()}
