"""Fulfilment's ports: what the service layer and the HTTP API ask of storage, in contracts
and domain objects. The adapters (`adapters/ferretdb.py`, `adapters/mongodb.py`) and the
hand-written fakes (tests/fakes/fulfilment.py) implement them; nothing above the adapters sees
a stored document."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from schemas.common import Money
from schemas.decision import Decision
from schemas.outcome import Outcome
from schemas.task import HumanTask
from services.common.outbox import Outbox
from services.fulfilment.domain.effects import Change, Effect
from services.fulfilment.domain.plan import LedgerEntry, Perk, ref_of
from services.fulfilment.vouchers import Redemption, Voucher

Origin = tuple[str, int, int]  # the topic, partition and offset a decision arrived at


@dataclass(frozen=True, slots=True)
class Received:
    """A decision revision as fulfilment received it."""

    decision: Decision
    origin: Origin
    at: datetime

    @property
    def ref(self) -> str:
        return ref_of(self.decision)


@dataclass(frozen=True, slots=True)
class KeptOutcome:
    """An outcome as kept in the outbox: with its decision's tenant and when it was kept."""

    outcome: Outcome
    tenant: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class KeptTask:
    """A task for a person as kept in the outbox."""

    task: HumanTask
    tenant: str | None
    position: int
    at: datetime


class DecisionLog(Protocol):
    """Each revision of each decision, as received."""

    async def add_new(self, received: Sequence[Received]) -> set[str]:
        """Keep the revisions not kept yet; returns the refs kept by this call."""

    async def revisions(self, refs: Sequence[str]) -> dict[str, Received]: ...

    async def newest(self, decision_id: str) -> Decision | None:
        """The latest revision of a decision."""

    async def of_customer(self, customer_id: str) -> list[Decision]:
        """The latest revision of each of the customer's decisions."""

    async def holding(self, since: datetime) -> dict[str, Received]:
        """The newest revision of each decision held for an outage's abort window until
        `since` or later, by ref: read once at start (ADR 0015)."""


class OutcomeLog(Outbox[KeptOutcome], Protocol):
    async def outcomes_of(self, keys: Sequence[str]) -> dict[str, Outcome]:
        """The outcomes already kept for these action keys (round 0)."""

    async def of_customer(self, customer_id: str) -> list[KeptOutcome]: ...


class TaskLog(Outbox[KeptTask], Protocol):
    pass


class Ledger(Protocol):
    """What customers were credited (points, money on the account), one entry per action."""

    async def credit(self, entries: Sequence[LedgerEntry]) -> set[str]:
        """Credit each once (by its key); returns the keys credited by this call."""

    async def of_customer(self, customer_id: str, now: datetime) -> list[LedgerEntry]:
        """The customer's entries not yet expired, in every unit."""


class Perks(Protocol):
    async def grant(self, perks: Sequence[Perk]) -> set[str]:
        """Grant each once (by its key); returns the keys granted by this call."""


class EffectLog(Protocol):
    """Refunds or messages (one log each), kept under their idempotency keys; the writes of
    `remote`'s claim-then-call protocol."""

    async def add_new(self, effects: Sequence[Effect]) -> set[str]:
        """Insert the effects whose key is new (a claim); returns the keys inserted now."""

    async def get(self, keys: Sequence[str]) -> list[Effect]: ...

    async def settle(self, results: Sequence[tuple[Effect, Change]]) -> int:
        """Apply each change (counting one attempt) to an effect still held by the claim it
        was performed under; returns how many were still held."""

    async def renew(self, keys: Sequence[str], claim: str | None, now: datetime) -> None:
        """Extend the lease of these claims (those still claimed by `claim`)."""

    async def wake_paused(self, remote: str, now: datetime) -> None:
        """Make every effect paused for `remote` due now."""

    async def unfinished(self, limit: int,
                         ready: Callable[[Effect], bool] | None = None) -> list[Effect]:
        """Effects that have no final answer yet and for which `ready` holds (as stored),
        among up to `limit` (0: all) unfinished ones. An adapter that keeps them in memory
        reads only those `ready` holds for as it remembers them."""

    async def recall(self) -> None:
        """Learn afresh, from the whole log, which effects are unfinished (those another
        process left too): for an adapter that keeps them in memory, at start and at a long
        interval, never per batch; a no-op where `unfinished` asks the store each time."""

    async def take_over(self, effect: Effect, change: Change) -> bool:
        """Apply `change` unless another process changed the effect since it was read (its
        status and attempts); a redrive's change also drops the gateway's id and is applied
        once per dead letter."""

    async def failed(self, keys: Sequence[str]) -> list[Effect]: ...

    async def of_customer(self, customer_id: str) -> list[Effect]: ...


class VoucherBook(Protocol):
    """Vouchers, issued once per action, redeemed once per code."""

    async def issue_all(self, requests: Sequence[Voucher]) -> dict[str, Voucher]: ...

    async def get(self, code: str, now: datetime) -> Voucher | None: ...

    async def codes_for(self, action_keys: Sequence[str]) -> dict[str, str]: ...

    async def for_customer(self, customer_id: str, now: datetime) -> list[Voucher]: ...

    async def redeem(self, code: str, order_id: str, order_total: Money | None,
                     now: datetime) -> Redemption: ...


@dataclass(frozen=True, slots=True)
class Stores:
    """Every store fulfilment has, behind its ports."""

    decisions: DecisionLog
    outcomes: OutcomeLog
    tasks: TaskLog
    ledger: Ledger
    perks: Perks
    refunds: EffectLog
    messages: EffectLog
    vouchers: VoucherBook
