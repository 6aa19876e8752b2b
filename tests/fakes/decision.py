"""Hand-written fakes of decision's ports (`services/decision/adapters/ports.py`): the store
and the budget in memory, with the adapters' contract (a duplicate id is "already done", a
verdict or a choice is final once claimed, a key is booked and released once)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from schemas.audit import AuditAction
from schemas.common import Money
from schemas.decision import Approval, Choice, Decision, DecisionStatus, Review
from schemas.outage import OutageCostPreview, preview_id
from schemas.outcome import Outcome
from schemas.status_post import StatusPost
from services.common.access import Principal
from services.decision.domain.history import CustomerHistory, PastIncident
from services.decision.domain.lifecycle import goodwill, refunded
from services.decision.domain.replies import Reply, ReplyStep, ReplyStepKind
from services.decision.domain.topup import given_by
from services.decision.ports import BudgetMovement, BudgetState, HistoriesRead
from tests.fakes.common import FakeOutbox


class FakeDecisions(HistoriesRead):
    def __init__(self) -> None:
        self.decisions = FakeOutbox[Decision]()
        self.revisions = FakeOutbox[Decision]()
        self.outages = FakeOutages()
        self.updated: dict[str, Decision] = {}
        self.approvals: dict[str, list[Approval]] = {}
        self.reviews: dict[str, Review] = {}
        self.choices: dict[str, Choice] = {}
        self.failures: dict[str, tuple[Outcome, datetime]] = {}

    def all(self) -> dict[str, Decision]:
        """Each decision at its newest revision."""
        return {did: self.updated.get(did, d) for did, d in self.decisions.records.items()}

    async def create_indexes(self) -> None:
        return None

    async def known(self, ids: Sequence[str]) -> dict[str, Decision]:
        return await self.find(ids)

    async def find(self, ids: Sequence[str]) -> dict[str, Decision]:
        current = self.all()
        return {i: current[i] for i in ids if i in current}

    async def get(self, decision_id: str) -> Decision | None:
        return self.all().get(decision_id)

    async def between(self, start: datetime | None, stop: datetime | None) -> list[Decision]:
        return [d for d in self.all().values()
                if (start is None or d.decided_at >= start)
                and (stop is None or d.decided_at < stop)]

    async def histories(self, customers: Sequence[str], since: datetime,
                        orders: Sequence[str] = (), outages: Sequence[str] = ()
                        ) -> dict[str, CustomerHistory]:
        found: dict[str, list[PastIncident]] = {c: [] for c in customers}
        for d in self.all().values():
            i = d.incident
            if i.customer.id not in found or not (
                    d.decided_at > since or i.order_id in orders or i.outage_id in outages):
                continue
            found[i.customer.id].append(PastIncident(
                incident_id=i.incident_id, type=i.type, detection=i.detection,
                decided_at=d.decided_at, value=goodwill(d), order_id=i.order_id,
                outage_id=i.outage_id, refunded=refunded(d),
                given=tuple(given_by(d).items())))
        return {c: CustomerHistory(tuple(sorted(p, key=lambda x: x.decided_at)))
                for c, p in found.items()}

    async def held(self, limit: int, tenants: Sequence[str | None] | None = None
                   ) -> list[Decision]:
        held = [d for d in self.all().values() if d.status is DecisionStatus.held
                and (tenants is None or d.incident.tenant in tenants)]
        return sorted(held, key=lambda d: d.decided_at)[:limit]

    async def customers_of_order(self, order_id: str,
                                 tenants: Sequence[str | None] | None = None) -> list[str]:
        return sorted({d.incident.customer.id for d in self.all().values()
                       if d.incident.order_id == order_id
                       and (tenants is None or d.incident.tenant in tenants)})

    async def offers_due(self, now: datetime, limit: int) -> list[Decision]:
        return [d for d in self.all().values()
                if d.status is DecisionStatus.awaiting_choice and d.offer is not None
                and d.offer.deadline <= now][:limit]

    async def approve(self, decision_id: str, approval: Approval
                      ) -> tuple[bool, list[Approval]]:
        kept = self.approvals.setdefault(decision_id, [])
        new = all(a.reviewer != approval.reviewer for a in kept)
        if new:
            kept.append(approval)
        return new, sorted(kept, key=lambda a: (a.at, a.reviewer))

    async def claim_review(self, decision_id: str, review: Review) -> Review:
        return self.reviews.setdefault(decision_id, review)

    async def claim_choice(self, decision_id: str, choice: Choice) -> Choice:
        return self.choices.setdefault(decision_id, choice)

    async def update_current(self, revision: Decision) -> None:
        current = self.all().get(revision.decision_id)
        if current is not None and current.revision < revision.revision:
            self.updated[revision.decision_id] = revision

    async def record_failures(self, outcomes: Sequence[Outcome], at: datetime) -> set[str]:
        new = {o.idempotency_key for o in outcomes if o.idempotency_key not in self.failures}
        for outcome in outcomes:
            self.failures.setdefault(outcome.idempotency_key, (outcome, at))
        return new


@dataclass
class _Key:
    day: tuple[date, str]
    amount: Decimal
    at: datetime
    released: Decimal = Decimal(0)
    reasons: dict[str, datetime] = field(default_factory=dict)
    releases: list[tuple[datetime, Decimal]] = field(default_factory=list)


class FakeBudget:
    """Days (limit fixed when first opened, what is spent) and keys (each taken once)."""

    def __init__(self) -> None:
        self.days: dict[tuple[date, str], tuple[Decimal, Decimal]] = {}
        self.keys: dict[str, _Key] = {}
        self.failing: BaseException | None = None  # set: `book` raises it (a crash)

    async def create_indexes(self) -> None:
        return None

    def _open(self, day: date, limit: Money) -> tuple[date, str]:
        chain = (day, limit.currency)
        self.days.setdefault(chain, (limit.amount, Decimal(0)))
        return chain

    async def state(self, day: date, limit: Money, *, cached: bool = False) -> BudgetState:
        del cached  # one decider in memory: its view is never behind
        chain_limit, spent = self.days[self._open(day, limit)]
        return BudgetState(day, Money(amount=chain_limit, currency=limit.currency),
                           Money(amount=spent, currency=limit.currency))

    async def reserve(self, day: date, limit: Money, amounts: Mapping[str, Money],
                      now: datetime) -> set[str] | None:
        return self._take(day, limit, amounts, now, enforce=True)

    async def book(self, day: date, limit: Money, amounts: Mapping[str, Money],
                   now: datetime) -> set[str]:
        if self.failing is not None:
            raise self.failing
        done = self._take(day, limit, amounts, now, enforce=False)
        assert done is not None
        return done

    def _take(self, day: date, limit: Money, amounts: Mapping[str, Money], now: datetime, *,
              enforce: bool) -> set[str] | None:
        chain = self._open(day, limit)
        done = {k for k in amounts if k in self.keys}
        todo = {k: m.amount for k, m in amounts.items() if k not in done}
        chain_limit, spent = self.days[chain]
        more = sum(todo.values(), Decimal(0))
        if enforce and more > 0 and spent + more > chain_limit:
            return None
        self.days[chain] = (chain_limit, spent + more)
        for key, amount in todo.items():
            self.keys[key] = _Key(chain, amount, now)
        return done

    async def movements(self, day: date, currency: str) -> list[BudgetMovement]:
        found: list[BudgetMovement] = []
        for kept in self.keys.values():
            if kept.day == (day, currency):
                found.append(BudgetMovement(kept.at, Money(amount=kept.amount,
                                                           currency=currency)))
                found += [BudgetMovement(at, Money(amount=-units, currency=currency))
                          for at, units in kept.releases]
        return sorted(found, key=lambda m: m.at)

    async def release(self, key: str, reason: str, amount: Money, now: datetime) -> bool:
        kept = self.keys.get(key)
        if kept is None or reason in kept.reasons:
            return False
        units = min(amount.amount, kept.amount - kept.released)
        if units <= 0:
            return False
        kept.released += units
        kept.reasons[reason] = now
        kept.releases.append((now, units))
        chain_limit, spent = self.days[kept.day]
        self.days[kept.day] = (chain_limit, spent - units)
        return True


@dataclass(frozen=True)
class AuditEntry:
    who: str
    action: str
    target: str
    key: str | None
    reason: str
    customer_id: str | None
    tenant: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class FakeAudit:
    """The audit trail: one entry per (action, target, key), as the real one keeps."""

    def __init__(self) -> None:
        self.entries: dict[tuple[str, str, str | None], AuditEntry] = {}

    async def record(self, principal: Principal, action: AuditAction, target: str, *,
                     customer_id: str | None = None, reason: str = "",
                     before: dict[str, Any] | None = None,
                     after: dict[str, Any] | None = None, key: str | None = None,
                     tenant: str | None = None) -> AuditEntry:
        entry = AuditEntry(principal.subject, action.value, target, key, reason, customer_id,
                           tenant, before, after)
        return self.entries.setdefault((action.value, target, key), entry)

    def of(self, target: str) -> list[AuditEntry]:
        return [e for e in self.entries.values() if e.target == target]


class FakeReplies:
    """The reply queue in memory, insert-only like its adapters."""

    def __init__(self) -> None:
        self.replies: dict[str, Reply] = {}
        self.steps: dict[str, ReplyStep] = {}

    async def create_indexes(self) -> None:
        return None

    async def add(self, replies: Sequence[Reply]) -> set[str]:
        new = {r.reply_id for r in replies if r.reply_id not in self.replies}
        for reply in replies:
            self.replies.setdefault(reply.reply_id, reply)
        return new

    async def add_step(self, step: ReplyStep) -> bool:
        if step.key in self.steps:
            return False
        self.steps[step.key] = step
        return True

    def _of(self, reply_id: str) -> list[ReplyStep]:
        return [s for s in self.steps.values() if s.reply_id == reply_id]

    async def get(self, reply_id: str) -> tuple[Reply, list[ReplyStep]] | None:
        reply = self.replies.get(reply_id)
        return None if reply is None else (reply, self._of(reply_id))

    async def listing(self, tenants: Sequence[str | None] | None, *, posted: bool,
                      limit: int) -> list[tuple[Reply, list[ReplyStep]]]:
        done = {s.reply_id for s in self.steps.values() if s.kind is ReplyStepKind.posted}
        found = [r for r in self.replies.values()
                 if (r.reply_id in done) == posted and (tenants is None or r.tenant in tenants)]
        found.sort(key=lambda r: (r.review_posted_at, r.reply_id), reverse=posted)
        return [(r, self._of(r.reply_id)) for r in found[:limit]]


class FakeStatusPosts:
    """The status posts' store in memory (`services.decision.status_posts.StatusPostStore`)."""

    def __init__(self) -> None:
        self.posts: dict[str, StatusPost] = {}
        self.approvals: dict[str, tuple[str, datetime]] = {}
        self.marks: set[str] = set()

    async def add_new(self, post: StatusPost) -> bool:
        if post.post_id in self.posts:
            return False
        self.posts[post.post_id] = post
        return True

    async def get(self, post_id: str) -> StatusPost | None:
        post = self.posts.get(post_id)
        if post is None or post_id not in self.approvals:
            return post
        by, at = self.approvals[post_id]
        return post.model_copy(update={"approved_by": by, "approved_at": at})

    async def approve(self, post_id: str, by: str, at: datetime) -> bool:
        if post_id in self.approvals:
            return False
        self.approvals[post_id] = (by, at)
        return True

    async def all(self) -> list[StatusPost]:
        posts = [p for i in self.posts if (p := await self.get(i)) is not None]
        return sorted(posts, key=lambda p: p.drafted_at, reverse=True)

    async def released(self, post_ids: Sequence[str]) -> set[str]:
        return set(post_ids) & self.marks

    async def mark_released(self, post_ids: Sequence[str]) -> None:
        self.marks.update(post_ids)

    async def create_indexes(self) -> None:
        pass


class FakeOutages:
    """The `Outages` port in memory: a preview once per id, a ledger entry once per
    decision."""

    def __init__(self) -> None:
        self.previews = FakeOutbox[OutageCostPreview]()
        self.ledger: dict[str, tuple[str, Money, datetime]] = {}

    async def create_indexes(self) -> None:
        return None

    async def preview(self, outage_id: str) -> OutageCostPreview | None:
        return self.previews.records.get(preview_id(outage_id))

    async def book(self, outage_id: str, amounts: Mapping[str, Money], at: datetime
                   ) -> set[str]:
        new = {did for did in amounts if did not in self.ledger}
        self.ledger.update({did: (outage_id, amounts[did], at) for did in new})
        return new

    async def booked(self, outage_id: str) -> tuple[int, Decimal]:
        mine = [m.amount for o, m, _ in self.ledger.values() if o == outage_id]
        return len(mine), sum(mine, Decimal(0))
