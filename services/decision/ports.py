"""Decision's storage ports: what the service asks of its store and of the budget, in
contracts and domain objects. Two adapters sit behind each (`ferretdb.py`, `mongodb.py`,
chosen by `store_backend`), and `tests/fakes/decision.py` keeps them in memory."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Protocol

from schemas.common import Money
from schemas.decision import Approval, Choice, Decision, Review
from schemas.outage import OutageCostPreview
from schemas.outcome import Outcome
from services.common.outbox import Outbox
from services.decision.domain.history import CustomerHistory
from services.decision.domain.replies import Reply, ReplyStep


@dataclass(frozen=True)
class BudgetState:
    day: date
    limit: Money
    spent: Money

    @property
    def remaining(self) -> Money:
        return Money(amount=self.limit.amount - self.spent.amount, currency=self.limit.currency)


@dataclass(frozen=True)
class BudgetMovement:
    """One movement of a day's budget: a reservation or booking (positive) or a release
    (negative), when it happened."""

    at: datetime
    amount: Money


class Outages(Protocol):
    """Each outage's cost preview, once under its deterministic id (the outbox of its event),
    and its ledger: the goodwill of the decisions its budget paid, once per decision."""

    @property
    def previews(self) -> Outbox[OutageCostPreview]: ...

    async def create_indexes(self) -> None: ...

    async def preview(self, outage_id: str) -> OutageCostPreview | None: ...

    async def book(self, outage_id: str, amounts: Mapping[str, Money], at: datetime
                   ) -> set[str]:
        """Book each decision id's amount once; returns the ids booked by this call."""

    async def booked(self, outage_id: str) -> tuple[int, Decimal]:
        """How many decisions the outage's budget paid, and how much in all."""


class Decisions(Protocol):
    """The decisions, one per incident under its deterministic id, at their newest revision;
    `decisions` keeps revision 0 (and whether it was published), `revisions` the later ones."""

    @property
    def decisions(self) -> Outbox[Decision]: ...

    @property
    def revisions(self) -> Outbox[Decision]: ...

    @property
    def outages(self) -> Outages: ...

    @property
    def follows_published(self) -> bool:
        """Whether `histories` answers from memory (FerretDB, where every read scans), so
        the service must `load_histories` at start and `learn` what other instances
        publish."""

    async def create_indexes(self) -> None: ...

    async def load_histories(self) -> None:
        """Get ready to answer `histories` (from memory: one scan at start)."""

    def learn(self, decisions: Sequence[Decision]) -> None:
        """Decisions other instances recorded, as published: kept in the histories' view
        (where the store is read for histories, nothing)."""

    def knows(self, decision_id: str, revision: int) -> bool:
        """Whether the view holds this revision of the decision or a newer one (always
        False where there is no view)."""

    def rename_customer(self, customer_id: str, pseudonym: str) -> int:
        """An erased customer's history entries in memory go to the pseudonym, as the
        store's did; how many moved."""

    async def known(self, ids: Sequence[str]) -> dict[str, Decision]:
        """The decisions made before under these ids (each at its newest revision). Asked
        before deciding: the FerretDB adapter looks up only those its view holds (or,
        without a loaded view, marks each id asked and looks up those asked before; so it
        must be asked before a decision is added)."""

    async def find(self, ids: Sequence[str]) -> dict[str, Decision]: ...

    async def get(self, decision_id: str) -> Decision | None: ...

    async def between(self, start: datetime | None, stop: datetime | None) -> list[Decision]:
        """The decisions made in [start, stop) (open ends when None)."""

    async def histories(self, customers: Sequence[str], since: datetime,
                        orders: Sequence[str] = (), outages: Sequence[str] = ()
                        ) -> dict[str, CustomerHistory]:
        """Each customer's decided incidents since `since`, and those of `orders` and
        `outages` however old. Like `known`, asked before deciding for these customers."""

    async def held(self, limit: int, tenants: Sequence[str | None] | None = None
                   ) -> list[Decision]:
        """The held decisions, oldest first; only of `tenants` when given (None in it: those
        without a tenant)."""

    async def customers_of_order(self, order_id: str,
                                 tenants: Sequence[str | None] | None = None) -> list[str]:
        """The customers with a decision about `order_id` (only of `tenants` when given):
        the console finds a case by order."""

    async def offers_due(self, now: datetime, limit: int) -> list[Decision]:
        """Decisions awaiting a choice whose deadline is at or before `now`."""

    async def approve(self, decision_id: str, approval: Approval) -> tuple[bool, list[Approval]]:
        """Record an approval (once per reviewer); whether it is new, and every approval of
        the decision, oldest first."""

    async def claim_review(self, decision_id: str, review: Review) -> Review:
        """Make `review` the decision's one verdict; the verdict that won (this one, or one
        recorded first by a racing reviewer)."""

    async def claim_choice(self, decision_id: str, choice: Choice) -> Choice:
        """Make `choice` the offer's one choice; the choice that won."""

    async def update_current(self, revision: Decision) -> None:
        """Make `revision` the decision's newest, unless a newer one is there."""

    async def record_failures(self, outcomes: Sequence[Outcome], at: datetime
                              ) -> set[str]:
        """Keep the failed outcomes once per action key; the keys new to this call."""


class HistoriesRead:
    """What a store that reads histories from itself (indexed) says of the view it does not
    keep."""

    follows_published = False

    async def load_histories(self) -> None:
        return None

    def learn(self, decisions: Sequence[Decision]) -> None:
        del decisions

    def knows(self, decision_id: str, revision: int) -> bool:
        del decision_id, revision
        return False

    def rename_customer(self, customer_id: str, pseudonym: str) -> int:
        del customer_id, pseudonym
        return 0


class Budget(Protocol):
    """The global daily budget, per day and currency; every movement under a key, once."""

    async def create_indexes(self) -> None: ...

    async def state(self, day: date, limit: Money, *, cached: bool = False) -> BudgetState:
        """The day's limit and what is spent, as stored. With `cached`, as this decider last
        saw it, read only if it saw nothing yet: the hot path's view, which may be behind
        what other deciders booked since this one's last booking."""

    async def reserve(self, day: date, limit: Money, amounts: Mapping[str, Money],
                      now: datetime) -> set[str] | None:
        """Reserve every amount (keyed by reservation key) or none. Returns the keys that
        already had a reservation (nothing is taken for them again), or None when the budget
        cannot cover the rest."""

    async def book(self, day: date, limit: Money, amounts: Mapping[str, Money],
                   now: datetime) -> set[str]:
        """Book recorded decisions' amounts on `day`, even past the limit: once each.
        Returns the keys that were booked before."""

    async def release(self, key: str, reason: str, amount: Money, now: datetime) -> bool:
        """Give back `amount` of the reservation `key`, once per `reason`, never more than
        was reserved. Whether anything was given back."""

    async def movements(self, day: date, currency: str) -> list[BudgetMovement]:
        """Every movement of the day's budget in `currency`, oldest first (for people: the
        console's burn over the day)."""


class Replies(Protocol):
    """The public replies to negative reviews (ADR 0017), insert-only: each reply once under
    its deterministic id, each step once under its key (an edit by its number, the approval
    and the posting once per reply), so two people racing on one reply cannot both win."""

    async def create_indexes(self) -> None: ...

    async def add(self, replies: Sequence[Reply]) -> set[str]:
        """Record the drafts whose ids are new; the ids recorded by this call."""

    async def add_step(self, step: ReplyStep) -> bool:
        """Record the step unless its key is taken; whether it was recorded."""

    async def get(self, reply_id: str) -> tuple[Reply, list[ReplyStep]] | None: ...

    async def listing(self, tenants: Sequence[str | None] | None, *, posted: bool,
                      limit: int) -> list[tuple[Reply, list[ReplyStep]]]:
        """Replies oldest review first, with their steps: the unposted ones, or (`posted`)
        the posted ones, newest review first; only of `tenants` when given."""
