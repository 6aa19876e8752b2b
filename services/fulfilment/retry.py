"""Retry an operation on transient failures: exponential backoff with full jitter, bounded.

Only `TransientError` is retried; a `PermanentError` (or anything else) goes straight up.
The operation must be safe to repeat, which every channel and gateway call is because it
carries its action's idempotency key.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from services.fulfilment.errors import TransientError

T = TypeVar("T")

Sleep = Callable[[float], Awaitable[object]]
OnRetry = Callable[[int, TransientError, float], object]

_MAX_DOUBLINGS = 60  # 2**60 times any sane base is far past any cap; avoids float overflow


def backoff_s(attempt: int, *, base_s: float, cap_s: float, rng: random.Random) -> float:
    """The wait after the `attempt`-th failure (1-based): uniform in [0, min(cap, base·2^(n-1))]."""
    ceiling = min(cap_s, base_s * 2 ** min(attempt - 1, _MAX_DOUBLINGS))
    return rng.uniform(0, ceiling)


async def retry(op: Callable[[], Awaitable[T]], *, attempts: int, base_s: float, cap_s: float,
                sleep: Sleep = asyncio.sleep, rng: random.Random,
                on_retry: OnRetry | None = None) -> T:
    """Run `op` up to `attempts` times, sleeping between transient failures; re-raise the
    last `TransientError` when the attempts run out.

    A remote's `retry_after_s` raises the wait to at least that much, still within `cap_s`.
    `on_retry(attempt, error, delay_s)` is called before each wait (for metrics and logs).
    """
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    if base_s < 0 or cap_s < 0:
        raise ValueError("base_s and cap_s must not be negative")
    attempt = 0
    while True:
        attempt += 1
        try:
            return await op()
        except TransientError as error:
            if attempt >= attempts:
                raise
            delay = backoff_s(attempt, base_s=base_s, cap_s=cap_s, rng=rng)
            if error.retry_after_s is not None:
                delay = min(cap_s, max(delay, error.retry_after_s))
            if on_retry is not None:
                on_retry(attempt, error, delay)
            await sleep(delay)
