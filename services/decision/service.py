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

from schemas.audit import AuditAction
from schemas.common import CustomerSnapshot, Money, deterministic_id, minor_exponent
from schemas.deadletter import DeadLetterReason
from schemas.decision import (
    Action,
    Approval,
    Choice,
    Decision,
    DecisionMade,
    DecisionStatus,
    Offer,
    RemedyKind,
    Review,
    action_key,
    decision_id,
)
from schemas.incident import Detection, Incident, IncidentDetected, IncidentType
from schemas.outcome import ActionStatus, OutcomeRecorded
from services.common.access import Principal
from services.common.adapters.mongo import Doc, stored
from services.common.audit import AuditTrail
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
from services.common.outbox import record_then_publish
from services.decision.adapters.budget import Budget
from services.decision.adapters.mongo import DecisionStore, decision_doc, goodwill, refunded
from services.decision.domain.history import CustomerHistory, PastIncident
from services.decision.domain.policy import Policy
from services.decision.domain.topup import given_by
from services.decision.fast.engine import decide
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


class DecisionRefusedError(Exception):
    """A request the service refuses: `status` and `check` (what refused it) become the
    problem body the HTTP API answers with."""

    def __init__(self, detail: str, *, status: int = 409, check: str = "state") -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.check = check


class DecisionConflictError(DecisionRefusedError):
    """A review or a choice that cannot be taken (wrong state, taken already, no budget)."""


class FourEyesError(DecisionRefusedError):
    """An approval the four-eyes rule refuses: the same reviewer twice, or a manual
    voucher's own creator."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, status=403, check="four_eyes")


@dataclass(frozen=True)
class ManualVoucher:
    """A voucher an operator grants by hand: a decision like any other, under the policy's
    caps and the budget. `tenant` None is the default tenant."""

    request_id: str
    tenant: str | None
    customer: CustomerSnapshot
    incident_type: IncidentType
    amount: Money | None
    percent: Decimal | None
    expires_in_days: int
    reason: str


def _state(decision: Decision) -> dict[str, str | int]:
    """What an audit entry keeps of a decision: never the customer's details."""
    return {"status": decision.status.value, "revision": decision.revision,
            "goodwill": format(goodwill(decision), "f"),
            "currency": decision.total_value.currency}


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
    audit: AuditTrail | None = None

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
        new = await self.store.decisions.add_new(list(docs.items()))
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

    async def current(self, decision_id: str) -> tuple[Doc, Decision]:
        """A decision as recorded now (its document and its newest revision)."""
        return await self._current(decision_id)

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
            (doc["_id"], doc, outgoing_with_data(self.settings.decisions_topic,
                                                _event(revision, now),
                                     doc["decision"]))])
        await self.store.update_current(revision, reservation)

    def approvals_needed(self, decision: Decision) -> int:
        """Two different reviewers above the four-eyes limit, else one."""
        limit = self.settings.four_eyes_above
        return 2 if limit is not None and goodwill(decision) > limit else 1

    async def _audit(self, who: Principal, action: AuditAction, target: Decision,
                     after: Decision, reason: str, *,
                     before: dict[str, str | int] | None = None) -> None:
        """Record a human action on a decision once: keyed by the revision it made, so a
        retried request that finds its revision made is the same entry."""
        if self.audit is None:
            return
        await self.audit.record(
            who, action, target.decision_id, customer_id=target.incident.customer.id,
            reason=reason, before=before if before is not None else _state(target),
            after=_state(after), key=f"revision-{after.revision}",
            tenant=target.incident.tenant or who.tenant)

    async def review(self, decision_id: str, verdict: Literal["approved", "rejected"],
                     reviewer: Principal, reason: str, *,
                     loaded: tuple[Doc, Decision] | None = None) -> Decision:
        """Approve or reject a held decision as `reviewer` (the authenticated subject).
        Approving reserves its goodwill, refused when today's budget cannot cover it, unless
        the decision gives money back: restitution is owed whatever the budget, so its
        goodwill is booked all the same. Above the four-eyes limit the first approval is
        recorded and the decision stays held until a different reviewer approves it too; a
        manual voucher's creator never approves it. Rejecting keeps only the apology, and
        one rejection ends it. Repeating the same verdict returns the same revision."""
        now = self.clock()
        subject = reviewer.subject
        action = AuditAction.approve if verdict == "approved" else AuditAction.reject
        # A caller that read the decision to check access passes it: on FerretDB every
        # read scans the collection.
        _, current = loaded or await self._current(decision_id)
        if current.review is not None:
            if current.review.verdict == verdict:
                if current.review.reviewer == subject:  # a retry: its entry, once
                    await self._audit(reviewer, action, current, current, reason,
                                      before={"status": DecisionStatus.held.value,
                                              "revision": current.revision - 1})
                return current
            raise DecisionConflictError(
                f"already {current.review.verdict} by {current.review.reviewer}")
        if current.status is not DecisionStatus.held:
            raise DecisionConflictError(f"decision {decision_id} is {current.status.value}, "
                                        "not held for review")
        approvals = [Approval(reviewer=subject, reason=reason, at=now)]
        if verdict == "approved":
            approved = await self._four_eyes(current, reviewer, reason, now)
            if isinstance(approved, Decision):
                return approved  # the first of two approvals: still held
            approvals = approved or approvals
        reservation = f"{decision_id}:review"
        value = Money(amount=goodwill(current), currency=current.total_value.currency)
        if verdict == "approved" and value.amount > 0:
            reserved = await self.budget.reserve(now.date(), self.limit,
                                                 {reservation: value}, now)
            owed = current.restitution_value
            if reserved is None and (owed is None or owed.amount <= 0):
                raise DecisionConflictError("today's budget cannot cover this decision",
                                            check="budget")
            if reserved is None:
                await self.budget.book(now.date(), self.limit, {reservation: value}, now)
            self.metrics.reserved.labels(self.policy.currency).inc(float(value.amount))
        winner = await self.store.claim("reviews", decision_id, {
            "verdict": verdict, "reviewer": subject, "reason": reason, "at": now})
        if winner is not None and winner["verdict"] != verdict:
            if verdict == "approved":  # the rejection won: give the reservation back
                await self.budget.release(reservation, f"{decision_id}:review", value, now)
            raise DecisionConflictError(f"already {winner['verdict']} by {winner['reviewer']}")
        decided_by, why, at = subject, reason, now
        if winner is not None:
            decided_by, why, at = winner["reviewer"], winner["reason"], winner["at"]
        review = Review(verdict=verdict, reviewer=decided_by, reason=why, at=at)
        if verdict == "approved":
            status = (DecisionStatus.awaiting_choice if current.offer is not None
                      else DecisionStatus.approved)
            names = " and ".join(dict.fromkeys(a.reviewer for a in approvals))
            revision = current.model_copy(update={
                "revision": current.revision + 1, "status": status, "review": review,
                "approvals": approvals, "offer": _reopened(current, at),
                "explanation": f"{current.explanation} Approved by {names}: {why}"})
            self._count_restitution(current.actions)
        else:
            apology = [a for a in current.actions if a.kind is RemedyKind.apology]
            nothing = Money(amount=Decimal(0), currency=current.total_value.currency)
            revision = current.model_copy(update={
                "revision": current.revision + 1, "status": DecisionStatus.rejected,
                "review": review, "actions": apology, "offer": None, "total_value": nothing,
                "goodwill_value": nothing, "restitution_value": nothing,
                "explanation": f"{current.explanation} After review only the apology is "
                               f"sent: {why}"})
        await self._publish_revision(revision, reservation if verdict == "approved" else None)
        self.metrics.reviews.labels(verdict).inc()
        if decided_by == subject:
            await self._audit(reviewer, action, current, revision, reason)
        return revision

    async def _four_eyes(self, current: Decision, reviewer: Principal, reason: str,
                         now: datetime) -> Decision | list[Approval]:
        """The four-eyes rule before an approval: a manual voucher's creator is refused, and
        so is a reviewer approving twice. Above the limit the approval is recorded; the
        approvals so far when they suffice, else the held revision that shows the first."""
        subject = reviewer.subject
        if current.requested_by == subject:
            raise FourEyesError(f"{subject} made this manual voucher: another reviewer must "
                                "approve it")
        needed = self.approvals_needed(current)
        if needed < 2:
            return []
        twice = FourEyesError(f"{subject} approved this decision already: it needs a "
                              "second, different reviewer")
        if any(a.reviewer == subject for a in current.approvals):
            raise twice
        new, recorded = await self.store.approve(current.decision_id, subject, reason, now)
        approvals = [Approval(reviewer=d["reviewer"], reason=d["reason"], at=d["at"])
                     for d in recorded]
        if len({a.reviewer for a in approvals}) >= needed:
            return approvals
        if not new:
            raise twice
        return await self._first_approval(current, reviewer, reason, approvals)

    async def _first_approval(self, current: Decision, reviewer: Principal, reason: str,
                              approvals: list[Approval]) -> Decision:
        """Record the first of two approvals on the decision, which stays held."""
        limit = self.settings.four_eyes_above
        revision = current.model_copy(update={
            "revision": current.revision + 1, "approvals": approvals,
            "explanation": f"{current.explanation} Approved by {reviewer.subject}: {reason}; "
                           f"worth more than {limit} {self.policy.currency}, it waits for a "
                           "second reviewer."})
        await self._publish_revision(revision, None)
        await self._audit(reviewer, AuditAction.approve, current, revision, reason)
        return revision

    async def choose(self, decision_id: str, option: int,
                     by: Literal["customer", "default", "support"] = "customer",
                     operator: Principal | None = None,
                     loaded: tuple[Doc, Decision] | None = None) -> Decision:
        """Settle an offer with `option` (by support: on the customer's behalf, as
        `operator`); the budget kept for dearer options is given back."""
        now = self.clock()
        doc, current = loaded or await self._current(decision_id)
        offer = current.offer
        if current.choice is not None:
            if current.choice.option == option:
                if operator is not None and current.choice.chosen_by == operator.subject:
                    await self._audit(operator, AuditAction.choose_on_behalf, current,
                                      current, f"option {option}",
                                      before={"status": DecisionStatus.awaiting_choice.value,
                                              "revision": current.revision - 1})
                return current
            raise DecisionConflictError(f"option {current.choice.option} "
                                        f"({current.choice.label}) was chosen already")
        if current.status is not DecisionStatus.awaiting_choice or offer is None:
            raise DecisionConflictError(f"decision {decision_id} is {current.status.value}, "
                                        "not awaiting a choice")
        if not 0 <= option < len(offer.options):
            raise DecisionConflictError(f"option must be 0 to {len(offer.options) - 1}")
        if by != "default" and now > offer.deadline:
            raise DecisionConflictError(
                f"the deadline {offer.deadline.isoformat()} has passed; the default applies")
        chosen_by = operator.subject if operator is not None else None
        winner = await self.store.claim("choices", decision_id, {
            "option": option, "by": by, "at": now, "chosen_by": chosen_by})
        if winner is not None:
            if operator is not None and winner.get("chosen_by") != chosen_by:
                raise DecisionConflictError(f"option {winner['option']} was chosen already")
            option, by, now = int(winner["option"]), winner["by"], winner["at"]
            chosen_by = winner.get("chosen_by")
        chosen = offer.options[option]
        choice = Choice(option=option, label=chosen.label, by=by, at=now, chosen_by=chosen_by)
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
                           + {"customer": f"You chose {chosen.label}.",
                              "support": f"You chose {chosen.label}, through our support "
                                         "team.",
                              "default": f"Without a choice by the deadline you get "
                                         f"{chosen.label}."}[by]})
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
        if operator is not None:
            await self._audit(operator, AuditAction.choose_on_behalf, current, revision,
                              f"option {option}: {chosen.label}")
        return revision

    async def customer_choice(self, decision_id: str, option: int, customer_id: str
                              ) -> Decision:
        """The customer's own choice, through their signed link (`customer_id` is whom the
        link names): only for their own decision."""
        loaded = await self._current(decision_id)
        if loaded[1].incident.customer.id != customer_id:
            raise DecisionRefusedError("the link was issued for another customer",
                                       status=403, check="link_customer")
        return await self.choose(decision_id, option, by="customer", loaded=loaded)

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


    async def apply_defaults_now(self, operator: Principal) -> int:
        """An operator settles the offers past their deadline now (audited)."""
        settled = await self.apply_due_defaults()
        if self.audit is not None:
            now = self.clock()
            await self.audit.record(operator, AuditAction.apply_defaults, "offers",
                                    reason="offers past their deadline settled by hand",
                                    after={"settled": settled}, key=now.isoformat())
        return settled

    # --- manual vouchers ----------------------------------------------------------------

    def manual_value(self, voucher: ManualVoucher) -> Decimal:
        """What a manual voucher is worth against caps and budgets: its amount, or its
        percent of a typical order (as the policy values a percent voucher)."""
        if voucher.amount is not None:
            return voucher.amount.amount
        assert voucher.percent is not None
        places = Decimal(1).scaleb(-minor_exponent(self.policy.currency))
        return (voucher.percent * self.policy.values.typical_order / 100).quantize(places)

    async def manual_voucher(self, voucher: ManualVoucher, by: Principal) -> Decision:
        """A voucher granted by hand, made a decision like any other: under an id from the
        tenant and the request id (a retry returns the same decision), within the policy's
        incident and customer caps and today's budget (refused, naming the cap, when it does
        not fit), with its reason in the action's note and the explanation, published for
        fulfilment to issue. Above `four_eyes_manual_voucher_above` it is held until a
        reviewer other than its creator approves it."""
        now = self.clock()
        currency = self.policy.currency
        iid = deterministic_id("incident", "manual_voucher", voucher.tenant or "",
                               voucher.request_id)
        did = decision_id(iid)
        value = self.manual_value(voucher)
        known = await self.store.known([did])
        if did in known:
            return await self._manual_again(known[did], voucher, value, by)
        guards = self.policy.guards
        if value > guards.incident_cap:
            raise DecisionRefusedError(
                f"the incident cap allows at most {guards.incident_cap} {currency} per "
                f"incident; this voucher is worth {value} {currency}", check="cap")
        since = now - timedelta(days=self.policy.window_days)
        history = (await self.store.histories([voucher.customer.id], since))[
            voucher.customer.id]
        granted = sum((p.value for p in history.incidents if since < p.decided_at <= now),
                      Decimal(0))
        room = guards.customer_cap - granted
        if value > room:
            raise DecisionRefusedError(
                f"the customer cap allows at most {guards.customer_cap} {currency} per "
                f"customer in {self.policy.window_days} days; {granted} {currency} was "
                f"granted before, {max(room, Decimal(0))} {currency} is left", check="cap")
        held = value > self.settings.four_eyes_manual_voucher_above
        worth = Money(amount=value, currency=currency)
        reservation = None
        if not held and value > 0:
            if await self.budget.reserve(now.date(), self.limit, {did: worth}, now) is None:
                state = await self.budget.state(now.date(), self.limit)
                raise DecisionRefusedError(
                    f"today's budget cannot cover {worth}: {state.remaining} is left",
                    check="budget")
            reservation = did
            self.metrics.reserved.labels(currency).inc(float(value))
        decision = self._manual_decision(voucher, did=did, iid=iid, worth=worth, held=held,
                                         by=by, now=now)
        doc = decision_doc(decision, reservation=reservation)
        if not await self.store.decisions.add_new([(did, doc)]):  # a racing retry recorded it
            kept = await self.store.get(did)
            assert kept is not None
            return await self._manual_again(kept, voucher, value, by)
        await self.publisher.publish_all([outgoing_with_data(
            self.settings.decisions_topic, _event(decision, now), doc["decision"])])
        await self.store.decisions.mark_published([did])
        self.metrics.decisions.labels(decision.status.value).inc()
        await self._audit(by, AuditAction.manual_voucher, decision, decision, voucher.reason,
                          before={})
        return decision

    def _manual_decision(self, voucher: ManualVoucher, *, did: str, iid: str, worth: Money,
                         held: bool, by: Principal, now: datetime) -> Decision:
        currency = worth.currency
        incident = Incident(
            incident_id=iid, type=voucher.incident_type, detection=Detection.agent_reported,
            customer=voucher.customer, tenant=voucher.tenant, occurred_at=now,
            detected_at=now, source="amends/decision/manual-voucher",
            source_event_id=voucher.request_id)
        words = (f"a {worth} voucher" if voucher.amount is not None
                 else f"a {voucher.percent}% voucher")
        actions = [
            Action(position=0, idempotency_key=action_key(did, 0), kind=RemedyKind.apology,
                   value=Money(amount=Decimal(0), currency=currency), note="an apology"),
            Action(position=1, idempotency_key=action_key(did, 1), kind=RemedyKind.voucher,
                   amount=voucher.amount, percent=voucher.percent,
                   expires_at=now + timedelta(days=voucher.expires_in_days), value=worth,
                   note=voucher.reason[:500])]
        limit = self.settings.four_eyes_manual_voucher_above
        review_reason = (f"a manual voucher worth more than {limit} {currency} needs a "
                         "reviewer other than its creator") if held else None
        explanation = (f"We are sorry. Our support team grants you an apology and {words}, "
                       f"valid {voucher.expires_in_days} days, by hand: {voucher.reason}")
        if held:
            explanation += f" A person reviews this decision before anything is sent, " \
                           f"because {review_reason}."
        return Decision(
            decision_id=did, incident=incident, policy_version=self.policy.version,
            decided_at=now, status=DecisionStatus.held if held else DecisionStatus.approved,
            actions=actions, total_value=worth, goodwill_value=worth,
            restitution_value=Money(amount=Decimal(0), currency=currency),
            review_reason=review_reason, requested_by=by.subject, explanation=explanation)

    async def _manual_again(self, doc: Doc, voucher: ManualVoucher, value: Decimal,
                            by: Principal) -> Decision:
        """A manual voucher's request seen before: the same decision, published if a crash
        left it unpublished; a different voucher under the same request id is refused."""
        kept = Decision.model_validate(stored(doc["decision"]))
        worth = next((a.value.amount for a in kept.actions if a.kind is RemedyKind.voucher),
                     value)  # a rejected voucher keeps only its apology
        if kept.incident.customer.id != voucher.customer.id or worth != value:
            raise DecisionRefusedError(f"request {voucher.request_id} made another voucher "
                                       f"({kept.decision_id})", check="request_id")
        if kept.revision == 0 and not await self.store.decisions.published([kept.decision_id]):
            await self.publisher.publish_all([outgoing(self.settings.decisions_topic,
                                                       _event(kept, kept.decided_at))])
            await self.store.decisions.mark_published([kept.decision_id])
        if kept.requested_by == by.subject and kept.revision == 0:
            await self._audit(by, AuditAction.manual_voucher, kept, kept, voucher.reason,
                              before={})
        return kept


def _restitution_keys(doc: Doc) -> list[str]:
    """The idempotency keys of a recorded decision's restitution actions (its offer's too)."""
    decision = Decision.model_validate(stored(doc["decision"]))
    options = decision.offer.options if decision.offer is not None else []
    return [a.idempotency_key for a in [*decision.actions, *(a for o in options
                                                               for a in o.actions)]
            if a.restitution]
