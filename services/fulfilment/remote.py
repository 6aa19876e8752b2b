"""Effects outside Amends — a refund at a payment gateway, an apology through a channel — done
at most once per action however often a decision arrives and whoever else is working on it.

Each effect is a record (`domain.effects.Effect`) keyed by the action's idempotency key, kept
in an `EffectLog` (ports), that moves through:

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

from prometheus_client import CollectorRegistry, Counter, Gauge

from schemas.outcome import ActionStatus
from services.common.clock import Clock
from services.fulfilment.domain.effects import FINAL, Change, Effect, EffectState
from services.fulfilment.domain.pace import shares
from services.fulfilment.errors import CredentialsError, PermanentError, TransientError
from services.fulfilment.pacing import Pacer
from services.fulfilment.ports import EffectLog
from services.fulfilment.retry import Sleep, retry
from services.fulfilment.settings import PAYMENTS, FulfilmentSettings

log = logging.getLogger(__name__)


# When the running batch stops starting calls (the event loop's clock), for the calls it runs.
_deadline: ContextVar[float | None] = ContextVar("effects_deadline", default=None)


class _OutOfTimeError(Exception):
    """The next retry would end after the batch's deadline."""


def provider_of(effect: Effect) -> str:
    """Whose pace an effect waits for: its message's channel, or the payment gateway."""
    return effect.channel if effect.channel is not None else PAYMENTS


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
    def of(cls, effect: Effect) -> Done:
        status = FINAL.get(effect.status or "")
        detail = effect.detail if effect.detail is not None else "under way"
        return cls(status, detail, effect.settled_at,
                   effect.detail if status is ActionStatus.failed else None, fresh=False)


@dataclass(frozen=True, slots=True)
class Job:
    """One effect to bring about: its record as first written, and — for a remote effect —
    the call that performs it (given the record as it stands)."""

    key: str
    effect: Effect
    perform: Callable[[Effect], Awaitable[tuple[Done, Change]]] | None = None


@dataclass
class RemoteEffects:
    settings: FulfilmentSettings
    clock: Clock
    sleep: Sleep = asyncio.sleep
    rng: random.Random | None = None
    metrics: EffectMetrics | None = None
    pacer: Pacer | None = None

    def __post_init__(self) -> None:
        self._limit = asyncio.Semaphore(self.settings.send_concurrency)
        if self.pacer is None:
            self.pacer = Pacer(shares(self.settings.pace_per_second,
                                      self.settings.pace_instances), self.clock, self.sleep)
        self._rng = self.rng or random.Random()  # jitter only; nothing depends on its values
        # Per remote, until when (the loop's clock) it is known to refuse our credentials:
        # the effects for it wait without calling, so a flood of them does not hammer it
        # with a bad key; each sweep's first call probes it again.
        self._refused_until: dict[str, float] = {}

    async def run(self, kept: EffectLog, jobs: Sequence[Job],
                  now: datetime, *, deadline: float | None = None) -> dict[str, Done]:
        """Bring about each job's effect once; returns what is known of each key now.
        `deadline` (the event loop's clock) is when no more calls are started."""
        if not jobs:
            return {}
        token = new_claim()
        first = [job.effect.claimed_by(token, now) if job.perform is not None else job.effect
                 for job in jobs]
        mine = await kept.add_new(first)
        done: dict[str, Done] = {}
        theirs = [job.key for job in jobs if job.key not in mine]
        if theirs:
            for effect in await kept.get(theirs):
                done[effect.key] = Done.of(effect)
        ours = [(job, effect) for job, effect in zip(jobs, first, strict=True)
                if job.key in mine]
        for job, effect in ours:
            if job.perform is None:
                done[job.key] = Done.of(effect)
        done.update(await self.perform(kept, [(job, effect) for job, effect in ours
                                             if job.perform is not None],
                                       deadline=deadline))
        return done

    async def perform(self, kept: EffectLog,
                      claimed: Sequence[tuple[Job, Effect]], *,
                      deadline: float | None = None) -> dict[str, Done]:
        """Call out for each claimed job (a bounded number at a time, none started after
        `deadline`) and write down what came of it, while the claim is still ours."""
        if not claimed:
            return {}
        loop = asyncio.get_running_loop()
        claims = {job.key: effect.claim for job, effect in claimed}

        async def one(job: Job, effect: Effect) -> tuple[str, Done, Change]:
            assert job.perform is not None
            async with self._limit:
                if deadline is not None and loop.time() >= deadline:
                    detail = "left for the sweep: the batch ran out of time"
                    return job.key, Done(None, detail), {
                        "status": EffectState.retry.value, "detail": detail,
                        "next_attempt_at": self.clock()}
                if self.pacer is not None and not await self.pacer.turn(
                        provider_of(effect), deadline=deadline):
                    detail = "left for the sweep: its provider's pace reached the deadline"
                    return job.key, Done(None, detail), {
                        "status": EffectState.retry.value, "detail": detail,
                        "next_attempt_at": self.clock()}
                _deadline.set(deadline)  # this task's own context
                result, change = await job.perform(effect)
            return job.key, result, change

        keeper = asyncio.create_task(self._keep_claims(kept, claims))
        try:
            results = await asyncio.gather(*(one(job, effect) for job, effect in claimed))
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        effects = {job.key: effect for job, effect in claimed}
        done = {key: result for key, result, _ in results}
        written = await kept.settle([(effects[key], change) for key, _, change in results])
        await self._wake_paused(kept, claimed, {key: c for key, _, c in results})
        if written < len(results):
            # Some claims were taken over meanwhile (this process stalled past the lease):
            # what the new owner wrote, or is doing, stands; it reports the outcome.
            for effect in await kept.get(list(done)):
                if effect.claim != claims[effect.key]:
                    done[effect.key] = Done.of(effect)
        return done

    async def _wake_paused(self, kept: EffectLog, claimed: Sequence[tuple[Job, Effect]],
                           changes: Mapping[str, Change]) -> None:
        """A remote that refused our credentials accepts them again: what waits for it is
        due now, not after its own growing pause."""
        recovered = {effect.remote for job, effect in claimed
                     if effect.paused and effect.remote
                     and changes[job.key].get("status") != EffectState.paused.value}
        for remote in sorted(r for r in recovered if r):
            await kept.wake_paused(remote, self.clock())

    async def _keep_claims(self, kept: EffectLog, claims: Mapping[str, str | None]) -> None:
        """Renew the lease of claims still held while their effects wait for a turn or for
        the remote: the lease measures a dead process, not a slow remote."""
        by_token: dict[str | None, list[str]] = {}
        for key, token in claims.items():
            by_token.setdefault(token, []).append(key)
        while True:
            await asyncio.sleep(self.settings.claim_lease_seconds / 3)
            try:
                for token, keys in by_token.items():
                    await kept.renew(keys, token, self.clock())
            except Exception as error:  # the next renewal tries again; the lease has slack
                # The type only: a driver error's text can quote the documents.
                log.warning("could not renew %d claims: %s", len(claims), type(error).__name__)

    async def attempt(self, call: Callable[[], Awaitable[tuple[Done, Change]]],
                      effect: Effect, what: str, remote: str = "") -> tuple[Done, Change]:
        """Run a remote call with bounded retries (none past the batch's deadline); sort its
        failure into final, to be tried again, or paused for credentials."""
        deadline = _deadline.get()
        loop = asyncio.get_running_loop()
        errors: list[TransientError] = []
        if remote and self._refused_until.get(remote, 0.0) > loop.time():
            return self._paused(effect, what, remote, CredentialsError(
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
            return self._paused(effect, what, remote, error)
        except PermanentError as error:
            self._accepted(remote)
            now = self.clock()
            detail = f"{what} refused: {error}"
            return (Done(ActionStatus.failed, detail, now, detail),
                    {"status": EffectState.failed.value, "detail": detail, "settled_at": now})
        except _OutOfTimeError:
            return self._later(effect, what, errors[-1])
        except TransientError as error:
            return self._later(effect, what, error)
        self._accepted(remote)
        return result

    def _accepted(self, remote: str) -> None:
        self._refused_until.pop(remote, None)
        if self.metrics is not None:
            self.metrics.accepted(remote)

    def _paused(self, effect: Effect, what: str, remote: str,
                error: CredentialsError) -> tuple[Done, Change]:
        """Credentials refused: not the customer's problem, nor a reason to fail the action.
        It waits, tried again with a growing pause, until an operator fixes them."""
        if self.metrics is not None:
            self.metrics.refused(remote)
        if remote:
            self._refused_until[remote] = max(
                self._refused_until.get(remote, 0.0),
                asyncio.get_running_loop().time() + self.settings.sweep_seconds / 2)
        now = self.clock()
        times = effect.paused + 1
        wait = min(self.settings.paused_retry_cap_s,
                   self.settings.sweep_seconds * 2 ** min(times - 1, 20))
        detail = f"{what} paused: {error}"
        return (Done(None, detail),
                {"status": EffectState.paused.value, "detail": detail, "paused": times,
                 "remote": remote, "next_attempt_at": now + timedelta(seconds=wait)})

    def _later(self, effect: Effect, what: str, error: TransientError) -> tuple[Done, Change]:
        now = self.clock()
        waited = now - effect.created_at
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

    async def due(self, kept: EffectLog, now: datetime, limit: int) -> list[Effect]:
        """Unfinished effects to try again: those waiting for a retry, a settlement or
        working credentials whose time has come, and claims whose lease ran out (their
        process died)."""
        stale = now - timedelta(seconds=self.settings.claim_lease_seconds)

        def ready(effect: Effect) -> bool:
            if effect.status == EffectState.claimed.value:
                return (effect.claimed_at or now) <= stale
            return (effect.next_attempt_at or now) <= now

        found: list[Effect] = []
        for effect in await kept.unfinished(limit * 4, ready):
            if ready(effect):  # as stored: the log may have chosen by what it remembered
                found.append(effect)
            if len(found) >= limit:
                break
        return found

    @staticmethod
    async def reclaim(kept: EffectLog, effect: Effect, now: datetime,
                      token: str) -> Effect | None:
        """Take over an unfinished effect under claim `token`, unless another process
        changed it first; the effect as taken over."""
        change: Change = {"status": EffectState.claimed.value, "claimed_at": now,
                          "claim": token}
        if not await kept.take_over(effect, change):
            return None
        return effect.changed(change)
