"""Effects outside Amends — a refund at a payment gateway, an apology through a channel — done
at most once per action however often a decision arrives and whoever else is working on it.

Each effect is a document keyed by the action's idempotency key that moves through:

    claimed ──▶ succeeded | failed                  (a final answer)
        │
        ├────▶ retry | pending ──(sweep)──▶ claimed (transient trouble, or a refund that
        │                                            the gateway is still working on)
        └────▶ paused ──(sweep, slowly)──▶ claimed  (the remote refused our credentials:
                                                     the operator's problem, alerted)

The claim is an insert, which the database makes atomic: of two consumers handed the same
decision (a rebalance, a redelivery), one performs the effect and the other sees it under
way. Every claim carries a token; its owner renews the claim's lease while the effect waits
for a turn or for the remote, and writes its result only while the token is still its own,
so a claim is taken over by the sweep only when its process died, and an owner never
overwrites what the sweep settled. A batch's calls stop being started at a deadline (what is
left waits for the sweep), so a batch never outlives the consumer's poll interval. Effects
with nothing to call (the embedded ledger, a message recorded only) are inserted final at
once. Remote calls carry the idempotency key, so a call repeated after a crash is still one
refund (the gateway deduplicates) and one e-mail (the same Message-ID).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, PyMongoError

from schemas.outcome import ActionStatus
from services.common.adapters.mongo import BULK_STATEMENTS, Doc, insert_new, write_failure
from services.common.clock import Clock
from services.fulfilment.errors import CredentialsError, PermanentError, TransientError
from services.fulfilment.retry import Sleep, retry
from services.fulfilment.settings import FulfilmentSettings

log = logging.getLogger(__name__)


class EffectState(StrEnum):
    claimed = "claimed"
    retry = "retry"
    pending = "pending"
    paused = "paused"
    succeeded = "succeeded"
    failed = "failed"


FINAL = {EffectState.succeeded.value: ActionStatus.succeeded,
         EffectState.failed.value: ActionStatus.failed}
UNFINISHED = [EffectState.claimed.value, EffectState.retry.value, EffectState.pending.value,
              EffectState.paused.value]

# When the running batch stops starting calls (the event loop's clock), for the calls it runs.
_deadline: ContextVar[float | None] = ContextVar("effects_deadline", default=None)


class _OutOfTimeError(Exception):
    """The next retry would end after the batch's deadline."""


def new_claim() -> str:
    """A claim's token: only whoever holds it may renew the claim or write its result."""
    return uuid.uuid4().hex


class EffectMetrics:
    """Remotes that refuse our credentials: each paused effect, and per remote whether its
    credentials worked on the last call (0 pages an operator, see the alert rules)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.paused = Counter("amends_effects_paused_total",
                              "Effects paused because a remote refused our credentials",
                              ["remote"], registry=registry)
        self.credentials = Gauge("amends_remote_credentials_valid",
                                 "1 when the remote accepted our credentials on the last call, "
                                 "0 when it refused them", ["remote"], registry=registry)

    def accepted(self, remote: str) -> None:
        if remote:
            self.credentials.labels(remote).set(1)

    def refused(self, remote: str) -> None:
        if remote:
            self.credentials.labels(remote).set(0)
            self.paused.labels(remote).inc()


@dataclass(frozen=True, slots=True)
class Done:
    """What happened to one action: `status` None means it is under way, and its outcome
    follows when the sweep finishes it. `error` is a permanent failure's cause."""

    status: ActionStatus | None
    detail: str
    at: datetime | None = None
    error: str | None = None
    fresh: bool = True  # learnt now, not read back from what an earlier attempt wrote

    @classmethod
    def of(cls, doc: Doc) -> Done:
        status = FINAL.get(doc.get("status", ""))
        return cls(status, doc.get("detail", "under way"), doc.get("settled_at"),
                   doc.get("detail") if status is ActionStatus.failed else None, fresh=False)


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
    metrics: EffectMetrics | None = None

    def __post_init__(self) -> None:
        self._limit = asyncio.Semaphore(self.settings.send_concurrency)
        self._rng = self.rng or random.Random()  # jitter only; nothing depends on its values
        # Per remote, until when (the loop's clock) it is known to refuse our credentials:
        # the effects for it wait without calling, so a flood of them does not hammer it
        # with a bad key; each sweep's first call probes it again.
        self._refused_until: dict[str, float] = {}

    async def run(self, collection: AsyncCollection[Doc], jobs: Sequence[Job],
                  now: datetime, *, deadline: float | None = None) -> dict[str, Done]:
        """Bring about each job's effect once; returns what is known of each key now.
        `deadline` (the event loop's clock) is when no more calls are started."""
        if not jobs:
            return {}
        token = new_claim()
        first = [{**job.doc, "status": EffectState.claimed.value, "claimed_at": now,
                  "claim": token, "attempts": 0} if job.perform is not None else job.doc
                 for job in jobs]
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
                                                    if job.perform is not None],
                                       deadline=deadline))
        return done

    async def perform(self, collection: AsyncCollection[Doc],
                      claimed: Sequence[tuple[Job, Doc]], *,
                      deadline: float | None = None) -> dict[str, Done]:
        """Call out for each claimed job (a bounded number at a time, none started after
        `deadline`) and write down what came of it, while the claim is still ours."""
        if not claimed:
            return {}
        loop = asyncio.get_running_loop()
        claims = {job.key: doc.get("claim") for job, doc in claimed}

        async def one(job: Job, doc: Doc) -> tuple[str, Done, Doc]:
            assert job.perform is not None
            async with self._limit:
                if deadline is not None and loop.time() >= deadline:
                    detail = "left for the sweep: the batch ran out of time"
                    return job.key, Done(None, detail), {
                        "status": EffectState.retry.value, "detail": detail,
                        "next_attempt_at": self.clock()}
                _deadline.set(deadline)  # this task's own context
                result, fields = await job.perform(doc)
            return job.key, result, fields

        keeper = asyncio.create_task(self._keep_claims(collection, claims))
        try:
            results = await asyncio.gather(*(one(job, doc) for job, doc in claimed))
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        ops = [UpdateOne({"_id": key, "claim": claims[key]},
                         {"$set": fields, "$inc": {"attempts": 1}})
               for key, _, fields in results]
        done = {key: result for key, result, _ in results}
        written = await self._write(collection, ops)
        await self._wake_paused(collection, claimed, {key: f for key, _, f in results})
        if written < len(ops):
            # Some claims were taken over meanwhile (this process stalled past the lease):
            # what the new owner wrote, or is doing, stands; it reports the outcome.
            async for doc in collection.find({"_id": {"$in": list(done)}}):
                if doc.get("claim") != claims[doc["_id"]]:
                    done[doc["_id"]] = Done.of(doc)
        return done

    async def _wake_paused(self, collection: AsyncCollection[Doc],
                           claimed: Sequence[tuple[Job, Doc]], fields: Mapping[str, Doc]) -> None:
        """A remote that refused our credentials accepts them again: what waits for it is
        due now, not after its own growing pause."""
        recovered = {doc["remote"] for job, doc in claimed
                     if doc.get("paused") and doc.get("remote")
                     and fields[job.key].get("status") != EffectState.paused.value}
        for remote in sorted(recovered):
            await collection.update_many(
                {"status": EffectState.paused.value, "remote": remote},
                {"$set": {"next_attempt_at": self.clock()}})

    @staticmethod
    async def _write(collection: AsyncCollection[Doc], ops: Sequence[UpdateOne]) -> int:
        """Apply the updates in bulk writes FerretDB takes; returns how many matched."""
        matched = 0
        for start in range(0, len(ops), BULK_STATEMENTS):
            try:
                result = await collection.bulk_write(
                    list(ops[start:start + BULK_STATEMENTS]), ordered=False)
            except BulkWriteError as exc:  # its text quotes the updates: codes only
                raise write_failure(exc) from None
            matched += result.matched_count
        return matched

    async def _keep_claims(self, collection: AsyncCollection[Doc],
                           claims: Mapping[str, str | None]) -> None:
        """Renew the lease of claims still held while their effects wait for a turn or for
        the remote: the lease measures a dead process, not a slow remote."""
        by_token: dict[str | None, list[str]] = {}
        for key, token in claims.items():
            by_token.setdefault(token, []).append(key)
        while True:
            await asyncio.sleep(self.settings.claim_lease_seconds / 3)
            try:
                for token, keys in by_token.items():
                    await collection.update_many(
                        {"_id": {"$in": keys}, "claim": token,
                         "status": EffectState.claimed.value},
                        {"$set": {"claimed_at": self.clock()}})
            except PyMongoError as error:  # the next renewal tries again; the lease has slack
                # The type only: a driver error's text can quote the documents.
                log.warning("could not renew %d claims: %s", len(claims), type(error).__name__)

    async def attempt(self, call: Callable[[], Awaitable[tuple[Done, Doc]]],
                      doc: Doc, what: str, remote: str = "") -> tuple[Done, Doc]:
        """Run a remote call with bounded retries (none past the batch's deadline); sort its
        failure into final, to be tried again, or paused for credentials."""
        deadline = _deadline.get()
        loop = asyncio.get_running_loop()
        errors: list[TransientError] = []
        if remote and self._refused_until.get(remote, 0.0) > loop.time():
            return self._paused(doc, what, remote, CredentialsError(
                f"the {remote} refused our credentials moments ago; not called"))

        async def sleep(seconds: float) -> None:
            if deadline is not None and loop.time() + seconds >= deadline:
                raise _OutOfTimeError
            await self.sleep(seconds)

        try:
            result = await retry(call, attempts=self.settings.retry_attempts,
                                 base_s=self.settings.retry_base_s,
                                 cap_s=self.settings.retry_cap_s, sleep=sleep,
                                 rng=self._rng, on_retry=lambda _, e, __: errors.append(e))
        except CredentialsError as error:
            return self._paused(doc, what, remote, error)
        except PermanentError as error:
            self._accepted(remote)
            now = self.clock()
            detail = f"{what} refused: {error}"
            return (Done(ActionStatus.failed, detail, now, detail),
                    {"status": EffectState.failed.value, "detail": detail, "settled_at": now})
        except _OutOfTimeError:
            return self._later(doc, what, errors[-1])
        except TransientError as error:
            return self._later(doc, what, error)
        self._accepted(remote)
        return result

    def _accepted(self, remote: str) -> None:
        self._refused_until.pop(remote, None)
        if self.metrics is not None:
            self.metrics.accepted(remote)

    def _paused(self, doc: Doc, what: str, remote: str,
                error: CredentialsError) -> tuple[Done, Doc]:
        """Credentials refused: not the customer's problem, nor a reason to fail the action.
        It waits, tried again with a growing pause, until an operator fixes them."""
        if self.metrics is not None:
            self.metrics.refused(remote)
        if remote:
            self._refused_until[remote] = max(
                self._refused_until.get(remote, 0.0),
                asyncio.get_running_loop().time() + self.settings.sweep_seconds / 2)
        now = self.clock()
        times = int(doc.get("paused", 0)) + 1
        wait = min(self.settings.paused_retry_cap_s,
                   self.settings.sweep_seconds * 2 ** min(times - 1, 20))
        detail = f"{what} paused: {error}"
        return (Done(None, detail),
                {"status": EffectState.paused.value, "detail": detail, "paused": times,
                 "remote": remote, "next_attempt_at": now + timedelta(seconds=wait)})

    def _later(self, doc: Doc, what: str, error: TransientError) -> tuple[Done, Doc]:
        now = self.clock()
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
        """Unfinished effects to try again: those waiting for a retry, a settlement or
        working credentials whose time has come, and claims whose lease ran out (their
        process died)."""
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
    async def reclaim(collection: AsyncCollection[Doc], doc: Doc, now: datetime,
                      token: str) -> bool:
        """Take over an unfinished effect under claim `token`, unless another process
        changed it first."""
        guard: dict[str, Any] = {"_id": doc["_id"], "status": doc["status"],
                                 "attempts": doc.get("attempts", 0)}
        result = await collection.update_one(
            guard, {"$set": {"status": EffectState.claimed.value, "claimed_at": now,
                             "claim": token}})
        if result.modified_count != 1:
            return False
        doc.update(status=EffectState.claimed.value, claimed_at=now, claim=token)
        return True
