"""Fakes of fulfilment's ports (services/fulfilment/ports.py, the payment gateway, the message
channels): in memory, with the adapters' contracts — an insert under a known key is "already
done", a conditional change applies only while its guard holds — so the service and its HTTP
API run without a database, a gateway or a mail relay."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from schemas.common import Money
from schemas.decision import Decision
from schemas.outcome import Outcome
from services.fulfilment.channels import Delivery, OutgoingMessage, message_id
from services.fulfilment.domain.effects import UNFINISHED, Change, Effect, EffectState
from services.fulfilment.domain.plan import LedgerEntry, Perk
from services.fulfilment.errors import CredentialsError, PermanentError, TransientError
from services.fulfilment.gateway import RefundRequest, RefundResult, RefundStatus
from services.fulfilment.ports import KeptOutcome, KeptTask, Received, Stores
from services.fulfilment.vouchers import (
    Redemption,
    Voucher,
    VoucherError,
    VoucherStatus,
    new_code,
    normalise,
)
from tests.fakes.common import FakeOutbox

Failure = TransientError | PermanentError | CredentialsError



class FakeDecisionLog:
    def __init__(self) -> None:
        self.kept: dict[str, Received] = {}

    async def add_new(self, received: Sequence[Received]) -> set[str]:
        new = {r.ref for r in received if r.ref not in self.kept}
        for r in received:
            self.kept.setdefault(r.ref, r)
        return new

    async def revisions(self, refs: Sequence[str]) -> dict[str, Received]:
        return {ref: self.kept[ref] for ref in refs if ref in self.kept}

    async def newest(self, decision_id: str) -> Decision | None:
        found = [r.decision for r in self.kept.values()
                 if r.decision.decision_id == decision_id]
        return max(found, key=lambda d: d.revision, default=None)

    async def holding(self, since: datetime) -> dict[str, Received]:
        newest: dict[str, Received] = {}
        for r in self.kept.values():
            d = r.decision
            if d.hold is not None and d.hold.until >= since and (
                    d.decision_id not in newest
                    or d.revision > newest[d.decision_id].decision.revision):
                newest[d.decision_id] = r
        return {r.ref: r for r in newest.values()}

    async def of_customer(self, customer_id: str) -> list[Decision]:
        newest: dict[str, Decision] = {}
        for r in self.kept.values():
            d = r.decision
            if d.incident.customer.id == customer_id and (
                    d.decision_id not in newest or d.revision > newest[d.decision_id].revision):
                newest[d.decision_id] = d
        return list(newest.values())


class FakeOutcomeLog(FakeOutbox[KeptOutcome]):
    async def outcomes_of(self, keys: Sequence[str]) -> dict[str, Outcome]:
        return {key: self.records[key].outcome for key in keys if key in self.records}

    async def of_customer(self, customer_id: str) -> list[KeptOutcome]:
        return [k for k in self.records.values() if k.outcome.customer_id == customer_id]


class FakeLedger:
    def __init__(self) -> None:
        self.entries: dict[str, LedgerEntry] = {}

    async def credit(self, entries: Sequence[LedgerEntry]) -> set[str]:
        new = {e.key for e in entries if e.key not in self.entries}
        for e in entries:
            self.entries.setdefault(e.key, e)
        return new

    async def of_customer(self, customer_id: str, now: datetime) -> list[LedgerEntry]:
        return [c for c in self.entries.values()
                if c.customer_id == customer_id and c.expires_at > now]


class FakePerks:
    def __init__(self) -> None:
        self.perks: dict[str, Perk] = {}

    async def grant(self, perks: Sequence[Perk]) -> set[str]:
        new = {p.key for p in perks if p.key not in self.perks}
        for p in perks:
            self.perks.setdefault(p.key, p)
        return new


class FakeEffectLog:
    """Refunds or messages, with the claim guards of `MongoEffectLog`."""

    def __init__(self) -> None:
        self.effects: dict[str, Effect] = {}
        self.reads = 0  # calls that read the log (a find on the server)

    def __getitem__(self, key: str) -> Effect:
        return self.effects[key]

    def with_status(self, status: str) -> list[Effect]:
        return [e for e in self.effects.values() if e.status == status]

    async def add_new(self, effects: Sequence[Effect]) -> set[str]:
        new = {e.key for e in effects if e.key not in self.effects}
        for e in effects:
            self.effects.setdefault(e.key, e)
        return new

    async def get(self, keys: Sequence[str]) -> list[Effect]:
        self.reads += 1
        return [self.effects[k] for k in dict.fromkeys(keys) if k in self.effects]

    async def settle(self, results: Sequence[tuple[Effect, Change]]) -> int:
        held = 0
        for effect, change in results:
            now = self.effects.get(effect.key)
            if now is not None and now.claim == effect.claim:
                self.effects[effect.key] = replace(now.changed(change),
                                                   attempts=now.attempts + 1)
                held += 1
        return held

    async def renew(self, keys: Sequence[str], claim: str | None, now: datetime) -> None:
        for key in keys:
            effect = self.effects.get(key)
            if effect is not None and effect.claim == claim and (
                    effect.status == EffectState.claimed.value):
                self.effects[key] = replace(effect, claimed_at=now)

    async def wake_paused(self, remote: str, now: datetime) -> None:
        for key, effect in self.effects.items():
            if effect.status == EffectState.paused.value and effect.remote == remote:
                self.effects[key] = replace(effect, next_attempt_at=now)

    async def unfinished(self, limit: int,
                         ready: Callable[[Effect], bool] | None = None) -> list[Effect]:
        self.reads += 1
        found = [e for e in self.effects.values() if e.status in UNFINISHED][:limit or None]
        return [e for e in found if ready is None or ready(e)]

    async def recall(self) -> None:
        pass

    async def take_over(self, effect: Effect, change: Change) -> bool:
        now = self.effects.get(effect.key)
        if now is None or (now.status, now.attempts) != (effect.status, effect.attempts):
            return False
        if "redriven_by" in change:
            if now.redriven_by == change["redriven_by"]:
                return False
            now = replace(now, gateway_id=None)
        self.effects[effect.key] = now.changed(change)
        return True

    async def failed(self, keys: Sequence[str]) -> list[Effect]:
        return [e for e in await self.get(keys) if e.status == EffectState.failed.value]

    async def of_customer(self, customer_id: str) -> list[Effect]:
        return [e for e in self.effects.values() if e.customer_id == customer_id]


class FakeVoucherBook:
    """Vouchers issued once per action key, redeemed once per code."""

    def __init__(self) -> None:
        self.vouchers: dict[str, Voucher] = {}  # by code
        self.redemptions: dict[str, Redemption] = {}

    async def issue_all(self, requests: Sequence[Voucher]) -> dict[str, Voucher]:
        issued: dict[str, Voucher] = {}
        by_key = {v.action_key: v for v in self.vouchers.values()}
        for request in requests:
            if (request.amount is None) == (request.percent is None):
                raise VoucherError("value", "a voucher has either an amount or a percent")
            voucher = by_key.get(request.action_key)
            if voucher is None:
                voucher = request.model_copy(update={"code": new_code()})
                self.vouchers[voucher.code] = by_key[request.action_key] = voucher
            issued[request.action_key] = voucher
        return issued

    async def get(self, code: str, now: datetime) -> Voucher | None:
        voucher = self.vouchers.get(normalise(code))
        if voucher is None:
            return None
        redemption = self.redemptions.get(voucher.code)
        if redemption is not None:
            return voucher.model_copy(update={
                "status": VoucherStatus.redeemed, "redeemed_at": redemption.redeemed_at,
                "redeemed_order_id": redemption.order_id})
        if voucher.expires_at <= now:
            return voucher.model_copy(update={"status": VoucherStatus.expired})
        return voucher

    async def codes_for(self, action_keys: Sequence[str]) -> dict[str, str]:
        return {v.action_key: v.code for v in self.vouchers.values()
                if v.action_key in set(action_keys)}

    async def for_customer(self, customer_id: str, now: datetime) -> list[Voucher]:
        found = [await self.get(v.code, now) for v in self.vouchers.values()
                 if v.customer_id == customer_id]
        return sorted((v for v in found if v is not None), key=lambda v: v.issued_at,
                      reverse=True)

    async def redeem(self, code: str, order_id: str, order_total: Money | None,
                     now: datetime) -> Redemption:
        voucher = await self.get(code, now)
        if voucher is None:
            raise VoucherError("not_found", f"no voucher {code!r}")
        if voucher.status is VoucherStatus.redeemed:
            raise VoucherError("redeemed", f"voucher {voucher.code} was redeemed already")
        if voucher.status is VoucherStatus.expired:
            raise VoucherError("expired", f"voucher {voucher.code} expired on "
                                          f"{voucher.expires_at.date().isoformat()}")
        discount = voucher.discount_on(order_total) if order_total is not None else None
        redemption = Redemption(code=voucher.code, order_id=order_id, discount=discount,
                                redeemed_at=now)
        self.redemptions[voucher.code] = redemption
        return redemption


@dataclass
class FakeStores:
    """Every fake store, typed as themselves (for assertions); `.stores` is the `Stores`."""

    decisions: FakeDecisionLog = field(default_factory=FakeDecisionLog)
    outcomes: FakeOutcomeLog = field(default_factory=FakeOutcomeLog)
    tasks: FakeOutbox[KeptTask] = field(default_factory=FakeOutbox)
    ledger: FakeLedger = field(default_factory=FakeLedger)
    perks: FakePerks = field(default_factory=FakePerks)
    refunds: FakeEffectLog = field(default_factory=FakeEffectLog)
    messages: FakeEffectLog = field(default_factory=FakeEffectLog)
    vouchers: FakeVoucherBook = field(default_factory=FakeVoucherBook)

    @property
    def stores(self) -> Stores:
        return Stores(decisions=self.decisions, outcomes=self.outcomes, tasks=self.tasks,
                      ledger=self.ledger, perks=self.perks, refunds=self.refunds,
                      messages=self.messages, vouchers=self.vouchers)


class FakeGateway:
    """The `PaymentGateway` port. By default every refund succeeds; `answers` (a queue)
    scripts the next calls' results or errors (an error is raised), `pending`
    keeps refunds pending until `settle(...)`. The same key gives the same refund, as a real
    gateway's idempotency does."""

    def __init__(self, *, settles_at_once: bool = False) -> None:
        self.settles_at_once = settles_at_once
        self.answers: list[RefundResult | Failure] = []
        self.pending = False
        self.refunds: dict[str, RefundResult] = {}  # by idempotency key
        self.requests: list[RefundRequest] = []
        self.status_queries = 0

    async def refund(self, request: RefundRequest) -> RefundResult:
        self.requests.append(request)
        if self.answers:
            answer = self.answers.pop(0)
            if isinstance(answer, TransientError | PermanentError | CredentialsError):
                raise answer
            self.refunds[request.idempotency_key] = answer
            return answer
        if request.idempotency_key not in self.refunds:
            status = RefundStatus.pending if self.pending else RefundStatus.succeeded
            self.refunds[request.idempotency_key] = RefundResult(
                status, f"re_{len(self.refunds) + 1}")
        return self.refunds[request.idempotency_key]

    async def refund_status(self, gateway_id: str) -> RefundResult:
        self.status_queries += 1
        for result in self.refunds.values():
            if result.gateway_id == gateway_id:
                return result
        raise LookupError(gateway_id)

    def settle(self, status: RefundStatus = RefundStatus.succeeded, detail: str = "") -> None:
        self.refunds = {k: RefundResult(status, r.gateway_id, detail)
                        for k, r in self.refunds.items()}

    @property
    def made(self) -> int:
        """Refunds made at the gateway (distinct keys)."""
        return len(self.refunds)


class FakeChannel:
    """A `MessageChannel` (e-mail, SMS or webhook): keeps what it delivers. `failures` (a
    queue) makes the next sends raise; `delay_s` makes each send take that long; the same
    key sent twice is one message to the customer, as the real channels' ids make it."""

    def __init__(self, name: str, clock: Callable[[], datetime]) -> None:
        self.name = name
        self.clock = clock
        self.sent: list[OutgoingMessage] = []
        self.failures: list[Failure] = []
        self.delay_s = 0.0

    async def send(self, message: OutgoingMessage) -> Delivery:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(message)
        return Delivery(self.name, message.idempotency_key,
                        message_id(message.idempotency_key, "amends.test"), self.clock())

    def to(self, customer_id: str) -> list[OutgoingMessage]:
        return [m for m in self.sent if m.customer_id == customer_id]
