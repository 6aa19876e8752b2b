"""Decision's service layer: decide incidents in batches under the policy, reserve budget,
record and publish decisions; settle reviews and customers' choices; give budget back for
actions that failed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import TypeAdapter, ValidationError

from schemas.common import Money
from schemas.deadletter import DeadLetterReason
from schemas.decision import (
    Action,
    Choice,
    Decision,
    DecisionMade,
    DecisionStatus,
    Offer,
    RemedyKind,
    Review,
    decision_id,
)
from schemas.incident import Incident, IncidentDetected
from schemas.outcome import ActionStatus, OutcomeRecorded
from services.common.clock import Clock
from services.common.errors import describe
from services.common.messaging import (
    DeadLetters,
    Outgoing,
    Publisher,
    Record,
    outgoing,
    outgoing_with_data,
)
from services.common.mongo import Doc, stored
from services.common.outbox import record_then_publish
from services.decision.adapters.budget import Budget, BudgetContentionError
from services.decision.adapters.mongo import DecisionStore, decision_doc
from services.decision.domain.engine import decide
from services.decision.domain.history import CustomerHistory, PastIncident
from services.decision.domain.policy import Policy
from services.decision.domain.topup import given_by
from services.decision.settings import DecisionSettings

log = logging.getLogger(__name__)

_incident_event: TypeAdapter[IncidentDetected] = TypeAdapter(IncidentDetected)
_outcome_event: TypeAdapter[OutcomeRecorded] = TypeAdapter(OutcomeRecorded)
RESERVE_ATTEMPTS = 5


class DecisionMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.decisions = Counter("amends_decisions_total", "Decisions made (new ones only)",
                                 ["status"], registry=registry)
        self.caps = Counter("amends_caps_applied_total",
                            "Decisions whose remedies a cap cut", ["cap"], registry=registry)
        self.reserved = Counter("amends_budget_reserved_total",
                                "Money equivalent reserved from the daily budget",
                                ["currency"], registry=registry)
        self.released = Counter("amends_budget_released_total",
                                "Money equivalent given back to the budget (failed actions, "
                                "cheaper choices)", ["currency"], registry=registry)
        self.remaining = Gauge("amends_budget_remaining", "What is left of today's budget",
                               ["currency"], registry=registry)
        self.limit = Gauge("amends_budget_limit", "Today's budget", ["currency"],
                           registry=registry)
        self.reviews = Counter("amends_reviews_total", "Held decisions settled by a reviewer",
                               ["verdict"], registry=registry)
        self.choices = Counter("amends_offer_choices_total", "Offers settled",
                               ["by"], registry=registry)


class DecisionConflictError(Exception):
    """A review or a choice that cannot be taken (wrong state, taken already, no budget)."""


class DecisionNotFoundError(LookupError):
    pass


def _event(decision: Decision, now: datetime) -> DecisionMade:
    event_id = (decision.decision_id if decision.revision == 0
                else f"{decision.decision_id}:{decision.revision}")
    return DecisionMade(id=event_id, source="amends/decision", time=now,
                        subject=decision.incident.customer.id, tenant=decision.incident.tenant,
                        data=decision)


def _reopened(held: Decision, now: datetime) -> Offer | None:
    """A held decision's offer as approved at `now`: the customer hears of it only now, so
    they get the whole time to choose from now on, never less than the offer first gave."""
    offer = held.offer
    if offer is None:
        return None
    window = offer.deadline - held.decided_at
    return offer.model_copy(update={"deadline": max(offer.deadline, now + window)})


def _value(actions: Sequence[Action]) -> Decimal:
    return sum((a.value.amount for a in actions), Decimal(0))


@dataclass
class DecisionService:
    settings: DecisionSettings
    policy: Policy
    store: DecisionStore
    budget: Budget
    publisher: Publisher
    dead_letters: DeadLetters
    clock: Clock
    metrics: DecisionMetrics

    @property
    def limit(self) -> Money:
        return Money(amount=self.policy.guards.daily_budget, currency=self.policy.currency)

    # --- incidents -> decisions ---------------------------------------------------------

    async def handle_incidents(self, records: Sequence[Record]) -> list[Decision]:
        """Decide a batch; returns the decisions made now (not those made before)."""
        now = self.clock()
        rejected: list[tuple[Record, DeadLetterReason, str]] = []
        incidents: dict[str, Incident] = {}
        for record in records:
            try:
                incident = _incident_event.validate_json(record.value).data
            except ValidationError as exc:
                rejected.append((record, DeadLetterReason.invalid, describe(exc)))
                continue
            incidents.setdefault(incident.incident_id, incident)
        await self.dead_letters.send(rejected)
        by_id = {decision_id(i.incident_id): i for i in incidents.values()}
        since = now - timedelta(days=self.policy.window_days)
        known, histories = await asyncio.gather(
            self.store.known(list(by_id)),
            self.store.histories(sorted({i.customer.id for i in incidents.values()}), since))
        fresh = [i for did, i in by_id.items() if did not in known]
        made = await self._decide_and_reserve(fresh, histories, now) if fresh else []

        items: list[tuple[Doc, Outgoing]] = []
        for decision in made:
            reservation = decision.decision_id if decision.status.executable else None
            doc = decision_doc(decision, reservation=reservation)
            items.append((doc, outgoing_with_data(self.settings.decisions_topic,
                                                  _event(decision, now), doc["decision"])))
        # A decision recorded before a crash but never published is published now, as made.
        published = await self.store.decisions.published(list(known))
        for doc in known.values():
            if doc["_id"] not in published:
                kept = Decision.model_validate(stored(doc["decision"]))
                first = kept if kept.revision == 0 else None
                if first is not None:
                    items.append((doc, outgoing(self.settings.decisions_topic,
                                                _event(first, now))))
        new = await record_then_publish(self.store.decisions, self.publisher, items)
        fresh_made = [d for d in made if d.decision_id in new]
        for decision in fresh_made:
            self.metrics.decisions.labels(decision.status.value).inc()
            for cap in {c.cap for c in decision.caps}:
                self.metrics.caps.labels(cap).inc()
        return fresh_made

    async def _decide_and_reserve(self, incidents: Sequence[Incident],
                                  histories: Mapping[str, CustomerHistory],
                                  now: datetime) -> list[Decision]:
        """Decide with the budget as it stands, then reserve it all at once; if another
        decider took budget meanwhile, decide again with what is left."""
        day = now.date()
        for _ in range(RESERVE_ATTEMPTS):
            state = await self.budget.state(day, self.limit)
            remaining = state.remaining.amount
            made: list[Decision] = []
            seen = dict(histories)
            for incident in incidents:
                customer = incident.customer.id
                decision = decide(incident, seen.get(customer, CustomerHistory()), self.policy,
                                  now, budget_remaining=remaining)
                made.append(decision)
                value = decision.total_value.amount if decision.status.executable else Decimal(0)
                remaining -= value
                seen[customer] = seen.get(customer, CustomerHistory()).plus(PastIncident(
                    incident_id=incident.incident_id, type=incident.type,
                    detection=incident.detection, decided_at=now,
                    value=decision.total_value.amount, order_id=incident.order_id,
                    given=tuple(given_by(decision).items())))
            amounts = {d.decision_id: d.total_value for d in made
                       if d.status.executable and d.total_value.amount > 0}
            if await self.budget.reserve(day, self.limit, amounts, now) is not None:
                spent = sum((m.amount for m in amounts.values()), Decimal(0))
                self.metrics.reserved.labels(self.policy.currency).inc(float(spent))
                self._budget_gauges(state.limit.amount, remaining)
                return made
        raise BudgetContentionError("the budget kept changing while deciding a batch")

    def _budget_gauges(self, limit: Decimal, remaining: Decimal) -> None:
        self.metrics.limit.labels(self.policy.currency).set(float(limit))
        self.metrics.remaining.labels(self.policy.currency).set(float(max(remaining, Decimal(0))))

    # --- outcomes -> budget -------------------------------------------------------------

    async def handle_outcomes(self, records: Sequence[Record]) -> int:
        """Give back the budget of failed actions, once per action (the ledger refuses a second
        release for the same action, so a redelivery after a crash finishes what was begun).
        The failed outcomes worth something are recorded; the others do not touch the budget
        and are not written at all. Returns how many releases were made."""
        now = self.clock()
        rejected: list[tuple[Record, DeadLetterReason, str]] = []
        outcomes = []
        for record in records:
            try:
                outcomes.append(_outcome_event.validate_json(record.value).data)
            except ValidationError as exc:
                rejected.append((record, DeadLetterReason.invalid, describe(exc)))
        await self.dead_letters.send(rejected)
        failed = [o for o in outcomes
                  if o.status is ActionStatus.failed and o.value.amount > 0]
        await self.store.record_outcomes([
            {"_id": o.idempotency_key, "decision_id": o.decision_id, "status": o.status.value,
             "kind": o.kind.value, "value": format(o.value.amount, "f"),
             "currency": o.value.currency, "at": now} for o in failed])
        if not failed:
            return 0
        current = await self.store.find(sorted({o.decision_id for o in failed}))
        released = 0
        for outcome in failed:
            doc = current.get(outcome.decision_id)
            if doc is None or not doc.get("reservation"):
                continue
            if await self.budget.release(doc["reservation"], outcome.idempotency_key,
                                         outcome.value, now):
                released += 1
                self.metrics.released.labels(outcome.value.currency).inc(
                    float(outcome.value.amount))
        return released

    # --- reviews and choices ------------------------------------------------------------

    async def _current(self, decision_id: str) -> tuple[Doc, Decision]:
        doc = await self.store.get(decision_id)
        if doc is None:
            raise DecisionNotFoundError(f"no decision {decision_id}")
        return doc, Decision.model_validate(stored(doc["decision"]))

    async def _publish_revision(self, revision: Decision, reservation: str | None) -> None:
        now = self.clock()
        doc = decision_doc(revision, reservation=reservation)
        doc["_id"] = f"{revision.decision_id}:{revision.revision}"
        await record_then_publish(self.store.revisions, self.publisher, [
            (doc, outgoing_with_data(self.settings.decisions_topic, _event(revision, now),
                                     doc["decision"]))])
        await self.store.update_current(revision, reservation)

    async def review(self, decision_id: str, verdict: Literal["approved", "rejected"],
                     reviewer: str, reason: str) -> Decision:
        """Approve or reject a held decision. Approving reserves its budget; rejecting
        keeps only the apology. Repeating the same verdict returns the same revision."""
        now = self.clock()
        _, current = await self._current(decision_id)
        if current.review is not None:
            if current.review.verdict == verdict:
                return current
            raise DecisionConflictError(
                f"already {current.review.verdict} by {current.review.reviewer}")
        if current.status is not DecisionStatus.held:
            raise DecisionConflictError(f"decision {decision_id} is {current.status.value}, "
                                        "not held for review")
        reservation = f"{decision_id}:review"
        if verdict == "approved" and current.total_value.amount > 0:
            reserved = await self.budget.reserve(now.date(), self.limit,
                                                 {reservation: current.total_value}, now)
            if reserved is None:
                raise DecisionConflictError("today's budget cannot cover this decision")
            self.metrics.reserved.labels(self.policy.currency).inc(
                float(current.total_value.amount))
        winner = await self.store.claim("reviews", decision_id, {
            "verdict": verdict, "reviewer": reviewer, "reason": reason, "at": now})
        if winner is not None and winner["verdict"] != verdict:
            if verdict == "approved":  # the rejection won: give the reservation back
                await self.budget.release(reservation, f"{decision_id}:review",
                                          current.total_value, now)
            raise DecisionConflictError(f"already {winner['verdict']} by {winner['reviewer']}")
        if winner is not None:
            reviewer, reason, now = winner["reviewer"], winner["reason"], winner["at"]
        review = Review(verdict=verdict, reviewer=reviewer, reason=reason, at=now)
        if verdict == "approved":
            status = (DecisionStatus.awaiting_choice if current.offer is not None
                      else DecisionStatus.approved)
            revision = current.model_copy(update={
                "revision": current.revision + 1, "status": status, "review": review,
                "offer": _reopened(current, now),
                "explanation": f"{current.explanation} Approved by {reviewer}: {reason}"})
        else:
            apology = [a for a in current.actions if a.kind is RemedyKind.apology]
            revision = current.model_copy(update={
                "revision": current.revision + 1, "status": DecisionStatus.rejected,
                "review": review, "actions": apology, "offer": None,
                "total_value": Money(amount=Decimal(0), currency=current.total_value.currency),
                "explanation": f"{current.explanation} After review only the apology is "
                               f"sent: {reason}"})
        await self._publish_revision(revision, reservation if verdict == "approved" else None)
        self.metrics.reviews.labels(verdict).inc()
        return revision

    async def choose(self, decision_id: str, option: int,
                     by: Literal["customer", "default"] = "customer") -> Decision:
        """Settle an offer with `option`; the budget kept for dearer options is given back."""
        now = self.clock()
        doc, current = await self._current(decision_id)
        offer = current.offer
        if current.choice is not None:
            if current.choice.option == option:
                return current
            raise DecisionConflictError(f"option {current.choice.option} "
                                        f"({current.choice.label}) was chosen already")
        if current.status is not DecisionStatus.awaiting_choice or offer is None:
            raise DecisionConflictError(f"decision {decision_id} is {current.status.value}, "
                                        "not awaiting a choice")
        if not 0 <= option < len(offer.options):
            raise DecisionConflictError(f"option must be 0 to {len(offer.options) - 1}")
        if by == "customer" and now > offer.deadline:
            raise DecisionConflictError(
                f"the deadline {offer.deadline.isoformat()} has passed; the default applies")
        winner = await self.store.claim("choices", decision_id,
                                        {"option": option, "by": by, "at": now})
        if winner is not None:
            option, by, now = int(winner["option"]), winner["by"], winner["at"]
        chosen = offer.options[option]
        choice = Choice(option=option, label=chosen.label, by=by, at=now)
        base = _value(current.actions)
        revision = current.model_copy(update={
            "revision": current.revision + 1, "status": DecisionStatus.approved,
            "choice": choice, "actions": [*current.actions, *chosen.actions],
            "total_value": Money(amount=base + _value(chosen.actions),
                                 currency=current.total_value.currency),
            "explanation": f"{current.explanation} "
                           + (f"You chose {chosen.label}." if by == "customer" else
                              f"Without a choice by the deadline you get {chosen.label}.")})
        reservation = doc.get("reservation")
        given_back = current.total_value.amount - revision.total_value.amount
        if reservation and given_back > 0:
            await self.budget.release(reservation, f"{decision_id}:choice",
                                      Money(amount=given_back,
                                            currency=current.total_value.currency), now)
            self.metrics.released.labels(current.total_value.currency).inc(float(given_back))
        await self._publish_revision(revision, reservation)
        self.metrics.choices.labels(by).inc()
        return revision

    async def apply_due_defaults(self, limit: int = 1000) -> int:
        """Settle the offers whose deadline passed with their default option."""
        due = await self.store.offers_due(self.clock(), limit)
        settled = 0
        for doc in due:
            decision = Decision.model_validate(stored(doc["decision"]))
            if decision.offer is None:
                continue
            try:
                await self.choose(decision.decision_id, decision.offer.default_option,
                                  by="default")
                settled += 1
            except DecisionConflictError as exc:  # settled meanwhile by the customer
                log.info("offer of %s not defaulted: %s", decision.decision_id, exc)
        return settled
