"""Effects outside Amends — a refund at a payment gateway, an apology through a channel — done
at most once per action however often a decision arrives and whoever else is working on it.

Each effect is a document keyed by the action's idempotency key that moves through:

    claimed ──▶ succeeded | failed                  (a final answer)
        │
        └────▶ retry | pending ──(sweep)──▶ claimed (transient trouble, or a refund that
                                                     the gateway is still working on)

The claim is an insert, which the database makes atomic: of two consumers handed the same
decision (a rebalance, a redelivery), one performs the effect and the other sees it under
way. A claim whose process died is taken over by the sweep after a lease. Effects with
nothing to call (the embedded ledger, a message recorded only) are inserted final at once.
Remote calls carry the idempotency key, so a call repeated after a crash is still one refund
(the gateway deduplicates) and one e-mail (the same Message-ID).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection

from schemas.outcome import ActionStatus
from services.common.clock import Clock
from services.common.mongo import Doc, bulk_update, insert_new
from services.fulfilment.errors import PermanentError, TransientError
from services.fulfilment.retry import Sleep, retry
from services.fulfilment.settings import FulfilmentSettings


class EffectState(StrEnum):
    claimed = "claimed"
    retry = "retry"
    pending = "pending"
    succeeded = "succeeded"
    failed = "failed"


FINAL = {EffectState.succeeded.value: ActionStatus.succeeded,
         EffectState.failed.value: ActionStatus.failed}
UNFINISHED = [EffectState.claimed.value, EffectState.retry.value, EffectState.pending.value]


@dataclass(frozen=True, slots=True)
class Done:
    """What happened to one action: `status` None means it is under way, and its outcome
    follows when the sweep finishes it. `error` is a permanent failure's cause."""

    status: ActionStatus | None
    detail: str
    at: datetime | None = None
    error: str | None = None

    @classmethod
    def of(cls, doc: Doc) -> Done:
        status = FINAL.get(doc.get("status", ""))
        return cls(status, doc.get("detail", "under way"), doc.get("settled_at"),
                   doc.get("detail") if status is ActionStatus.failed else None)


@dataclass(frozen=True, slots=True)
class Job:
    """One effect to bring about: its document as first written, and — for a remote effect —
    the call that performs it (given the document as it stands)."""

    key: str
    doc: Doc
    perform: Callable[[Doc], Awaitable[tuple[Done, Doc]]] | None = None


@dataclass
class RemoteEffects:
    settings: FulfilmentSettings
    clock: Clock
    sleep: Sleep = asyncio.sleep
    rng: random.Random | None = None

    def __post_init__(self) -> None:
        self._limit = asyncio.Semaphore(self.settings.send_concurrency)
        self._rng = self.rng or random.Random()  # jitter only; nothing depends on its values

    async def run(self, collection: AsyncCollection[Doc], jobs: Sequence[Job],
                  now: datetime) -> dict[str, Done]:
        """Bring about each job's effect once; returns what is known of each key now."""
        if not jobs:
            return {}
        first = [{**job.doc, "status": EffectState.claimed.value, "claimed_at": now,
                  "attempts": 0} if job.perform is not None else job.doc for job in jobs]
        mine = await insert_new(collection, first)
        done: dict[str, Done] = {}
        theirs = [job.key for job in jobs if job.key not in mine]
        if theirs:
            async for doc in collection.find({"_id": {"$in": theirs}}):
                done[doc["_id"]] = Done.of(doc)
        ours = [(job, doc) for job, doc in zip(jobs, first, strict=True) if job.key in mine]
        for job, doc in ours:
            if job.perform is None:
                done[job.key] = Done.of(doc)
        done.update(await self.perform(collection, [(job, doc) for job, doc in ours
                                                    if job.perform is not None]))
        return done

    async def perform(self, collection: AsyncCollection[Doc],
                      claimed: Sequence[tuple[Job, Doc]]) -> dict[str, Done]:
        """Call out for each claimed job (a bounded number at a time) and write down what
        came of it."""
        if not claimed:
            return {}

        async def one(job: Job, doc: Doc) -> tuple[str, Done, Doc]:
            assert job.perform is not None
            async with self._limit:
                result, fields = await job.perform(doc)
            return job.key, result, fields

        results = await asyncio.gather(*(one(job, doc) for job, doc in claimed))
        ops = [UpdateOne({"_id": key}, {"$set": fields, "$inc": {"attempts": 1}})
               for key, _, fields in results]
        await bulk_update(collection, ops)
        return {key: result for key, result, _ in results}

    async def attempt(self, call: Callable[[], Awaitable[tuple[Done, Doc]]],
                      doc: Doc, what: str) -> tuple[Done, Doc]:
        """Run a remote call with bounded retries; sort its failure into final or not."""
        now = self.clock()
        try:
            return await retry(call, attempts=self.settings.retry_attempts,
                               base_s=self.settings.retry_base_s,
                               cap_s=self.settings.retry_cap_s, sleep=self.sleep,
                               rng=self._rng)
        except PermanentError as error:
            detail = f"{what} refused: {error}"
            return (Done(ActionStatus.failed, detail, now, detail),
                    {"status": EffectState.failed.value, "detail": detail, "settled_at": now})
        except TransientError as error:
            created = doc.get("created_at", now)
            waited = now - created if isinstance(created, datetime) else timedelta(0)
            if waited >= timedelta(hours=self.settings.give_up_after_hours):
                detail = (f"{what} gave up after {waited.total_seconds() / 3600:.1f} h of "
                          f"transient failures; the last: {error}")
                return (Done(ActionStatus.failed, detail, now, detail),
                        {"status": EffectState.failed.value, "detail": detail,
                         "settled_at": now})
            return (Done(None, f"{what} will be tried again: {error}"),
                    {"status": EffectState.retry.value, "detail": str(error),
                     "next_attempt_at": self.later(now)})

    def later(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.settings.sweep_seconds)

    async def due(self, collection: AsyncCollection[Doc], now: datetime,
                  limit: int) -> list[Doc]:
        """Unfinished effects to try again: those waiting for a retry or a settlement whose
        time has come, and claims older than the lease (their process died)."""
        stale = now - timedelta(seconds=self.settings.claim_lease_seconds)
        found: list[Doc] = []
        async for doc in collection.find({"status": {"$in": UNFINISHED}}).limit(limit * 4):
            if doc["status"] == EffectState.claimed.value:
                ready = doc.get("claimed_at", now) <= stale
            else:
                ready = doc.get("next_attempt_at", now) <= now
            if ready:
                found.append(doc)
            if len(found) >= limit:
                break
        return found

    @staticmethod
    async def reclaim(collection: AsyncCollection[Doc], doc: Doc, now: datetime) -> bool:
        """Take over an unfinished effect, unless another process changed it first."""
        guard: dict[str, Any] = {"_id": doc["_id"], "status": doc["status"],
                                 "attempts": doc.get("attempts", 0)}
        result = await collection.update_one(
            guard, {"$set": {"status": EffectState.claimed.value, "claimed_at": now}})
        return result.modified_count == 1
