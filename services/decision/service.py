"""Decision's service layer: decide incidents in batches under the policy, record the
decisions, book their goodwill against the budget and publish them (a redelivery reuses what
was recorded); settle reviews and customers' choices; give budget back for actions that
failed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
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
from services.decision.adapters.budget import Budget
from services.decision.adapters.mongo import DecisionStore, decision_doc, goodwill, refunded
from services.decision.domain.engine import decide
from services.decision.domain.history import CustomerHistory, PastIncident
from services.decision.domain.policy import Policy
from services.decision.domain.topup import given_by
from services.decision.settings import DecisionSettings

log = logging.getLogger(__name__)

_incident_event: TypeAdapter[IncidentDetected] = TypeAdapter(IncidentDetected)
_outcome_event: TypeAdapter[OutcomeRecorded] = TypeAdapter(OutcomeRecorded)
_NO_HISTORY = CustomerHistory()


class DecisionMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.decisions = Counter("amends_decisions_total", "Decisions made (new ones only)",
                                 ["status"], registry=registry)
        self.caps = Counter("amends_caps_applied_total",
                            "Decisions whose remedies a cap cut", ["cap"], registry=registry)
        self.reserved = Counter("amends_budget_reserved_total",
                                "Goodwill (money equivalent) booked against the daily budget",
                                ["currency"], registry=registry)
        self.restitution = Counter(
            "amends_restitution_decided_total",
            "Money given back as restitution by decisions carried out (never budgeted)",
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


def _value(actions: Sequence[Action], *, restitution: bool | None = None) -> Decimal:
    """What `actions` are worth (only their restitution, or only their goodwill, if told)."""
    return sum((a.value.amount for a in actions
                if restitution is None or a.restitution is restitution), Decimal(0))


def _reservation(decision: Decision) -> str | None:
    """The key a new decision's goodwill is booked under; None when it books nothing now (a
    held decision books when approved)."""
    return (decision.decision_id
            if decision.status.executable and goodwill(decision) > 0 else None)


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
        """Decide a batch once: decide the new incidents, record the decisions under their
        ids, then book their goodwill against the budget and publish them. An incident
        decided before reuses its recorded decision (its remedies, amounts and budget day,
        whatever the clock, the policy or the budget say now), and what a crash interrupted
        is finished: booked if not booked, published if not published. Returns the
        decisions made now."""
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
        orders = sorted({i.order_id for i in incidents.values() if i.order_id is not None})
        outages = sorted({i.outage_id for i in incidents.values()
                          if i.outage_id is not None and i.order_id is None})
        known, histories = await asyncio.gather(
            self.store.known(list(by_id)),
            self.store.histories(sorted({i.customer.id for i in incidents.values()}), since,
                                 orders, outages))
        fresh = [i for did, i in by_id.items() if did not in known]
        made = await self._decide(fresh, histories, now) if fresh else []

        docs = {d.decision_id: decision_doc(d, reservation=_reservation(d)) for d in made}
        new = await self.store.decisions.add_new(list(docs.values()))
        lost = [did for did in docs if did not in new]  # a racing decider recorded it first
        if lost:
            known.update(await self.store.find(lost))
        await self._book([*(docs[did] for did in docs if did in new), *known.values()], now)

        items: list[tuple[str, Outgoing]] = [
            (d.decision_id, outgoing_with_data(self.settings.decisions_topic, _event(d, now),
                                               docs[d.decision_id]["decision"]))
            for d in made if d.decision_id in new]
        # A decision recorded before a crash but never published is published now, as made.
        published = await self.store.decisions.published(list(known))
        for doc in known.values():
            if doc["_id"] not in published:
                kept = Decision.model_validate(stored(doc["decision"]))
                if kept.revision == 0:
                    items.append((doc["_id"], outgoing(self.settings.decisions_topic,
                                                       _event(kept, kept.decided_at))))
        await self.publisher.publish_all([message for _, message in items])
        await self.store.decisions.mark_published([did for did, _ in items])

        fresh_made = [d for d in made if d.decision_id in new]
        for decision in fresh_made:
            self.metrics.decisions.labels(decision.status.value).inc()
            for cap in {c.cap for c in decision.caps}:
                self.metrics.caps.labels(cap).inc()
            if decision.status.executable:
                self._count_restitution(decision.actions)
        return fresh_made

    async def _decide(self, incidents: Sequence[Incident],
                      histories: Mapping[str, CustomerHistory],
                      now: datetime) -> list[Decision]:
        """Decide with what is left of today's budget as it stands now; each decision of
        the batch sees the ones before it (the budget they take, the customer's history)."""
        state = await self.budget.state(now.date(), self.limit)
        remaining = state.remaining.amount
        made: list[Decision] = []
        seen = dict(histories)
        for incident in incidents:
            customer = incident.customer.id
            history = seen.get(customer, _NO_HISTORY)
            decision = decide(incident, history, self.policy, now, budget_remaining=remaining)
            made.append(decision)
            if decision.status.executable:
                remaining -= goodwill(decision)
            seen[customer] = history.plus(PastIncident(
                incident_id=incident.incident_id, type=incident.type,
                detection=incident.detection, decided_at=now, value=goodwill(decision),
                order_id=incident.order_id, outage_id=incident.outage_id,
                refunded=refunded(decision),
                given=tuple(given_by(decision).items())))
        self._budget_gauges(state.limit.amount, remaining)
        return made

    async def _book(self, docs: Sequence[Doc], now: datetime) -> None:
        """Book recorded decisions' goodwill on the day each was decided, under its id and
        at its recorded amount; the budget books each id once, so a redelivery books only
        what a crash left unbooked."""
        by_day: dict[date, dict[str, Money]] = {}
        for doc in docs:
            if doc.get("reservation") != doc["_id"]:
                continue  # held (booked when approved) or worth no goodwill
            amount = Decimal(str(doc.get("goodwill", doc["value"])))
            if amount <= 0:
                continue
            day = (date.fromisoformat(doc["budget_day"]) if "budget_day" in doc
                   else doc["decided_at"].date())
            by_day.setdefault(day, {})[doc["_id"]] = Money(amount=amount,
                                                           currency=doc["currency"])
        for day, amounts in sorted(by_day.items()):
            before = await self.budget.book(day, self.limit, amounts, now)
            booked = sum((m.amount for did, m in amounts.items() if did not in before),
                         Decimal(0))
            if booked:
                self.metrics.reserved.labels(self.policy.currency).inc(float(booked))

    def _count_restitution(self, actions: Sequence[Action]) -> None:
        """Restitution carried out is counted apart from the goodwill the budget counts (an
        offer's option when it is chosen)."""
        owed = _value(actions, restitution=True)
        if owed > 0:
            self.metrics.restitution.labels(self.policy.currency).inc(float(owed))

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
        owed = {key for doc in current.values() for key in _restitution_keys(doc)}
        released = 0
        for outcome in failed:
            doc = current.get(outcome.decision_id)
            if doc is None or not doc.get("reservation") or outcome.idempotency_key in owed:
                continue  # nothing booked for it (restitution is never booked)
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
        """Approve or reject a held decision. Approving reserves its goodwill, refused when
        today's budget cannot cover it, unless the decision gives money back: restitution
        is owed whatever the budget, so its goodwill is booked all the same. Rejecting keeps
        only the apology. Repeating the same verdict returns the same revision."""
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
        value = Money(amount=goodwill(current), currency=current.total_value.currency)
        if verdict == "approved" and value.amount > 0:
            reserved = await self.budget.reserve(now.date(), self.limit,
                                                 {reservation: value}, now)
            owed = current.restitution_value
            if reserved is None and (owed is None or owed.amount <= 0):
                raise DecisionConflictError("today's budget cannot cover this decision")
            if reserved is None:
                await self.budget.book(now.date(), self.limit, {reservation: value}, now)
            self.metrics.reserved.labels(self.policy.currency).inc(float(value.amount))
        winner = await self.store.claim("reviews", decision_id, {
            "verdict": verdict, "reviewer": reviewer, "reason": reason, "at": now})
        if winner is not None and winner["verdict"] != verdict:
            if verdict == "approved":  # the rejection won: give the reservation back
                await self.budget.release(reservation, f"{decision_id}:review", value, now)
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
            self._count_restitution(current.actions)
        else:
            apology = [a for a in current.actions if a.kind is RemedyKind.apology]
            nothing = Money(amount=Decimal(0), currency=current.total_value.currency)
            revision = current.model_copy(update={
                "revision": current.revision + 1, "status": DecisionStatus.rejected,
                "review": review, "actions": apology, "offer": None, "total_value": nothing,
                "goodwill_value": nothing, "restitution_value": nothing,
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
        actions = [*current.actions, *chosen.actions]
        currency = current.total_value.currency
        revision = current.model_copy(update={
            "revision": current.revision + 1, "status": DecisionStatus.approved,
            "choice": choice, "actions": actions,
            "total_value": Money(amount=_value(actions), currency=currency),
            "goodwill_value": Money(amount=_value(actions, restitution=False),
                                    currency=currency),
            "restitution_value": Money(amount=_value(actions, restitution=True),
                                       currency=currency),
            "explanation": f"{current.explanation} "
                           + (f"You chose {chosen.label}." if by == "customer" else
                              f"Without a choice by the deadline you get {chosen.label}.")})
        reservation = doc.get("reservation")
        given_back = goodwill(current) - goodwill(revision)
        if reservation and given_back > 0:
            await self.budget.release(reservation, f"{decision_id}:choice",
                                      Money(amount=given_back,
                                            currency=current.total_value.currency), now)
            self.metrics.released.labels(current.total_value.currency).inc(float(given_back))
        await self._publish_revision(revision, reservation)
        self.metrics.choices.labels(by).inc()
        self._count_restitution(chosen.actions)
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


def _restitution_keys(doc: Doc) -> list[str]:
    """The idempotency keys of a recorded decision's restitution actions (its offer's too)."""
    decision = Decision.model_validate(stored(doc["decision"]))
    options = decision.offer.options if decision.offer is not None else []
    return [a.idempotency_key for a in [*decision.actions, *(a for o in options
                                                               for a in o.actions)]
            if a.restitution]
