"""Decision's service layer: decide incidents in batches under the policy, record the
decisions, book their goodwill against the budget and publish them (a redelivery reuses what
was recorded); settle reviews and customers' choices; give budget back for actions that
failed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import TypeAdapter, ValidationError

from schemas.audit import AuditAction
from schemas.common import CustomerSnapshot, Money, deterministic_id, minor_exponent, trace_id
from schemas.deadletter import DeadLetterReason
from schemas.decision import (
    Action,
    Approval,
    Choice,
    Decision,
    DecisionMade,
    DecisionStatus,
    RemedyKind,
    Review,
    action_key,
    decision_id,
    slim,
)
from schemas.incident import Detection, Incident, IncidentDetected, IncidentType
from schemas.outage import OutageCostPreview, OutageCostPreviewed
from schemas.outcome import ActionStatus, OutcomeRecorded
from services.common.access import Principal
from services.common.clock import Clock
from services.common.errors import describe
from services.common.messaging import (
    DeadLetters,
    Outgoing,
    Publisher,
    Record,
    outgoing,
)
from services.common.outbox import record_then_publish
from services.decision.domain import lifecycle
from services.decision.domain.history import CustomerHistory, PastIncident
from services.decision.domain.lifecycle import (
    DecisionConflictError,
    DecisionRefusedError,
    goodwill,
    refunded,
    reservation,
    restitution_keys,
    value,
)
from services.decision.domain.outage_window import hold_of
from services.decision.domain.outages import applies
from services.decision.domain.policy import Policy
from services.decision.domain.preview import cost_preview
from services.decision.domain.topup import given_by
from services.decision.fast.engine import decide
from services.decision.ports import Budget, Decisions
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
        self.outage_booked = Counter(
            "amends_outage_budget_booked_total",
            "Goodwill (money equivalent) booked against outages' own budgets, never the daily "
            "one", ["currency"], registry=registry)
        self.outage_previews = Counter("amends_outage_previews_total",
                                       "Outage cost previews published", registry=registry)


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


class Audit(Protocol):
    """Where human actions are recorded (`services.common.audit.AuditTrail`)."""

    async def record(self, principal: Principal, action: AuditAction, target: str, *,
                     customer_id: str | None = None, reason: str = "",
                     before: dict[str, Any] | None = None,
                     after: dict[str, Any] | None = None, key: str | None = None,
                     tenant: str | None = None) -> object: ...


class DecisionNotFoundError(LookupError):
    pass


def _event(decision: Decision, now: datetime) -> DecisionMade:
    event_id = (decision.decision_id if decision.revision == 0
                else f"{decision.decision_id}:{decision.revision}")
    return DecisionMade(id=event_id, source="amends/decision", time=now,
                        subject=decision.incident.customer.id, tenant=decision.incident.tenant,
                        data=slim(decision))


@dataclass
class DecisionService:
    settings: DecisionSettings
    policy: Policy
    store: Decisions
    budget: Budget
    publisher: Publisher
    dead_letters: DeadLetters
    clock: Clock
    metrics: DecisionMetrics
    audit: Audit | None = None
    traced: bool = False  # decisions record their incident's trace id
    # The outages this process previewed (the store keeps one preview per outage anyway).
    _previewed: set[str] = field(default_factory=set)

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

        # Before any remedy of an outage goes out, its cost preview (once per outage).
        await self._preview_outages(list(incidents.values()), now)
        new = await self.store.decisions.add_new([(d.decision_id, d) for d in made])
        lost = [d.decision_id for d in made if d.decision_id not in new]
        if lost:  # a racing decider recorded these first: theirs stand
            known.update(await self.store.find(lost))
        await self._book([*(d for d in made if d.decision_id in new), *known.values()], now)

        items: list[tuple[str, Outgoing]] = [
            (d.decision_id, outgoing(self.settings.decisions_topic, _event(d, now)))
            for d in made if d.decision_id in new]
        # A decision recorded before a crash but never published is published now, as made.
        published = await self.store.decisions.published(list(known))
        for did, kept in known.items():
            if did not in published and kept.revision == 0:
                items.append((did, outgoing(self.settings.decisions_topic,
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
        state = await self.budget.state(now.date(), self.limit, cached=True)
        remaining = state.remaining.amount
        made: list[Decision] = []
        seen = dict(histories)
        for incident in incidents:
            customer = incident.customer.id
            history = seen.get(customer, _NO_HISTORY)
            decision = decide(incident, history, self.policy, now, budget_remaining=remaining)
            if self.traced:
                decision = decision.model_copy(
                    update={"trace_id": trace_id(incident.incident_id)})
            hold = hold_of(decision, timedelta(seconds=self.settings.outage_abort_window_s),
                           apology_at_once=self.policy.outages.apology_at_once)
            if hold is not None:
                decision = decision.model_copy(update={"hold": hold})
            made.append(decision)
            if decision.status.executable and decision.outage_budget is None:
                remaining -= goodwill(decision)
            seen[customer] = history.plus(PastIncident(
                incident_id=incident.incident_id, type=incident.type,
                detection=incident.detection, decided_at=now, value=goodwill(decision),
                order_id=incident.order_id, outage_id=incident.outage_id,
                refunded=refunded(decision),
                given=tuple(given_by(decision).items())))
        self._budget_gauges(state.limit.amount, remaining)
        return made

    async def _book(self, decisions: Sequence[Decision], now: datetime) -> None:
        """Book recorded decisions' goodwill on the day each was decided, under its id and
        at its recorded amount; the budget books each id once, so a redelivery books only
        what a crash left unbooked."""
        by_day: dict[date, dict[str, Money]] = {}
        by_outage: dict[str, dict[str, Money]] = {}
        for decision in decisions:
            did, amount = decision.decision_id, goodwill(decision)
            if decision.outage_budget is not None and amount > 0 and decision.review is None \
                    and decision.status is not DecisionStatus.held:
                by_outage.setdefault(decision.outage_budget, {})[did] = Money(
                    amount=amount, currency=decision.total_value.currency)
            if reservation(decision) != did or amount <= 0:
                continue  # held (booked when approved) or worth no goodwill
            by_day.setdefault(decision.decided_at.date(), {})[did] = Money(
                amount=amount, currency=decision.total_value.currency)
        for day, amounts in sorted(by_day.items()):
            before = await self.budget.book(day, self.limit, amounts, now)
            booked = sum((m.amount for did, m in amounts.items() if did not in before),
                         Decimal(0))
            if booked:
                self.metrics.reserved.labels(self.policy.currency).inc(float(booked))
        await self._book_outages(by_outage, now)

    async def _book_outages(self, by_outage: Mapping[str, Mapping[str, Money]],
                            now: datetime) -> None:
        """Book outage decisions' goodwill in their outage's ledger, once per decision (the
        shares keep the outage within its budget; the ledger shows what it paid)."""
        for outage_id, amounts in sorted(by_outage.items()):
            new = await self.store.outages.book(outage_id, amounts, now)
            booked = sum((amounts[did].amount for did in new), Decimal(0))
            if booked:
                self.metrics.outage_booked.labels(self.policy.currency).inc(float(booked))

    async def _preview_outages(self, incidents: Sequence[Incident], now: datetime) -> None:
        """Publish the cost preview of each outage in `incidents` not previewed yet by this
        process, from the first of its incidents (each carries the outage's size); the
        outbox keeps one per outage, so a redelivery or another instance publishes no
        second one."""
        first: dict[str, Incident] = {}
        for incident in incidents:
            if (incident.outage_id is not None and incident.outage_id not in self._previewed
                    and applies(self.policy, incident)):
                first.setdefault(incident.outage_id, incident)
        if not first:
            return
        state = await self.budget.state(now.date(), self.limit, cached=True)
        items = []
        for outage_id, incident in first.items():
            preview = cost_preview(incident, self.policy, now,
                                   daily_limit=state.limit.amount,
                                   daily_remaining=state.remaining.amount)
            if preview is None:
                continue
            event = OutageCostPreviewed(id=preview.preview_id, source="amends/decision",
                                        time=now, subject=outage_id, tenant=incident.tenant,
                                        data=preview)
            items.append((preview.preview_id, preview,
                          outgoing(self.settings.outage_previews_topic, event)))
        new = await record_then_publish(self.store.outages.previews, self.publisher, items)
        self.metrics.outage_previews.inc(len(new))
        self._previewed.update(first)
        for preview_key, preview, _ in items:
            if preview_key in new:
                log.info("outage %s: cost preview %s of %s for %d customers (budget %s)",
                         preview.outage_id, preview.total.amount, preview.full_cost.amount,
                         preview.affected_customers, preview.outage_budget.amount)

    async def outage_preview(self, outage_id: str) -> OutageCostPreview | None:
        return await self.store.outages.preview(outage_id)

    def _count_restitution(self, actions: Sequence[Action]) -> None:
        """Restitution carried out is counted apart from the goodwill the budget counts (an
        offer's option when it is chosen)."""
        owed = value(actions, restitution=True)
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
        await self.store.record_failures(failed, now)
        if not failed:
            return 0
        current = await self.store.find(sorted({o.decision_id for o in failed}))
        owed = {key for decision in current.values() for key in restitution_keys(decision)}
        released = 0
        for outcome in failed:
            decision = current.get(outcome.decision_id)
            key = reservation(decision) if decision is not None else None
            if key is None or outcome.idempotency_key in owed:
                continue  # nothing booked for it (restitution is never booked)
            if await self.budget.release(key, outcome.idempotency_key, outcome.value, now):
                released += 1
                self.metrics.released.labels(outcome.value.currency).inc(
                    float(outcome.value.amount))
        return released

    # --- reviews and choices ------------------------------------------------------------

    async def current(self, decision_id: str) -> Decision:
        """A decision at its newest revision."""
        decision = await self.store.get(decision_id)
        if decision is None:
            raise DecisionNotFoundError(f"no decision {decision_id}")
        return decision

    async def _publish_revision(self, revision: Decision) -> None:
        now = self.clock()
        await record_then_publish(self.store.revisions, self.publisher, [
            (f"{revision.decision_id}:{revision.revision}", revision,
             outgoing(self.settings.decisions_topic, _event(revision, now)))])
        await self.store.update_current(revision)

    def approvals_needed(self, decision: Decision) -> int:
        return lifecycle.approvals_needed(decision, self.settings.four_eyes_above)

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
                     loaded: Decision | None = None) -> Decision:
        """Approve or reject a held decision as `reviewer` (the authenticated subject): the
        domain makes the revision (`lifecycle`), this books the budget an approval takes
        (refused when today's budget cannot cover it, unless the decision gives money
        back), makes the verdict final against racing reviewers, stores and publishes.
        Repeating the same verdict returns the same revision."""
        now = self.clock()
        subject = reviewer.subject
        action = AuditAction.approve if verdict == "approved" else AuditAction.reject
        # A caller that read the decision to check access passes it: on FerretDB every
        # read scans the collection.
        current = loaded or await self.current(decision_id)
        again = lifecycle.reviewed(current, verdict)
        if again is not None:
            assert again.review is not None
            if again.review.reviewer == subject:  # a retry: its entry, once
                await self._audit(reviewer, action, again, again, reason,
                                  before={"status": DecisionStatus.held.value,
                                          "revision": again.revision - 1})
            return again
        approval = Approval(reviewer=subject, reason=reason, at=now)
        approvals = [approval]
        hold = None
        if verdict == "approved":
            approved = await self._four_eyes(current, reviewer, approval)
            if isinstance(approved, Decision):
                return approved  # the first of two approvals: still held
            approvals = approved or approvals
            hold = lifecycle.approval_reservation(current)
        if hold is not None:
            amounts = {hold.key: hold.amount}
            if await self.budget.reserve(now.date(), self.limit, amounts, now) is None:
                if not hold.owed:
                    raise DecisionConflictError("today's budget cannot cover this decision",
                                                check="budget")
                await self.budget.book(now.date(), self.limit, amounts, now)
            self.metrics.reserved.labels(self.policy.currency).inc(float(hold.amount.amount))
        won = await self.store.claim_review(decision_id, Review(
            verdict=verdict, reviewer=subject, reason=reason, at=now))
        if won.verdict != verdict:
            if hold is not None:  # the rejection won: give the reservation back
                await self.budget.release(hold.key, hold.key, hold.amount, now)
            raise DecisionConflictError(f"already {won.verdict} by {won.reviewer}")
        if verdict == "approved":
            revision = lifecycle.approve(current, won, approvals)
            self._count_restitution(current.actions)
            if current.outage_budget is not None and goodwill(current) > 0:
                await self._book_outages({current.outage_budget: {current.decision_id: Money(
                    amount=goodwill(current), currency=current.total_value.currency)}}, now)
        else:
            revision = lifecycle.reject(current, won)
        await self._publish_revision(revision)
        self.metrics.reviews.labels(verdict).inc()
        if won.reviewer == subject:
            await self._audit(reviewer, action, current, revision, reason)
        return revision

    async def _four_eyes(self, current: Decision, reviewer: Principal, approval: Approval
                         ) -> Decision | list[Approval]:
        """The four-eyes rule before an approval. Above the limit the approval is recorded;
        the approvals so far when they suffice, else the held revision that shows the
        first."""
        limit = self.settings.four_eyes_above
        needed = lifecycle.check_approver(current, approval.reviewer, limit)
        if needed < 2:
            return []
        new, recorded = await self.store.approve(current.decision_id, approval)
        if len({a.reviewer for a in recorded}) >= needed:
            return recorded
        if not new:
            raise lifecycle.approved_twice(approval.reviewer)
        revision = lifecycle.first_approval(current, approval, recorded, limit,
                                            self.policy.currency)
        await self._publish_revision(revision)
        await self._audit(reviewer, AuditAction.approve, current, revision, approval.reason)
        return revision

    async def choose(self, decision_id: str, option: int,
                     by: Literal["customer", "default", "support"] = "customer",
                     operator: Principal | None = None,
                     loaded: Decision | None = None) -> Decision:
        """Settle an offer with `option` (by support: on the customer's behalf, as
        `operator`); the budget kept for dearer options is given back."""
        now = self.clock()
        current = loaded or await self.current(decision_id)
        again = lifecycle.chosen(current, option, by, now)
        if again is not None:
            assert again.choice is not None
            if operator is not None and again.choice.chosen_by == operator.subject:
                await self._audit(operator, AuditAction.choose_on_behalf, again, again,
                                  f"option {option}",
                                  before={"status": DecisionStatus.awaiting_choice.value,
                                          "revision": again.revision - 1})
            return again
        assert current.offer is not None
        chosen_by = operator.subject if operator is not None else None
        won = await self.store.claim_choice(decision_id, Choice(
            option=option, label=current.offer.options[option].label, by=by, at=now,
            chosen_by=chosen_by))
        if operator is not None and won.chosen_by != chosen_by:
            raise DecisionConflictError(f"option {won.option} was chosen already")
        revision, release = lifecycle.choose(current, won.option, won.by, won.at,
                                             won.chosen_by)
        if release is not None:
            await self.budget.release(release.key, release.reason, release.amount, now)
            self.metrics.released.labels(release.amount.currency).inc(
                float(release.amount.amount))
        await self._publish_revision(revision)
        self.metrics.choices.labels(won.by).inc()
        picked = current.offer.options[won.option]
        self._count_restitution(picked.actions)
        if operator is not None:
            await self._audit(operator, AuditAction.choose_on_behalf, current, revision,
                              f"option {won.option}: {picked.label}")
        return revision

    async def customer_choice(self, decision_id: str, option: int, customer_id: str
                              ) -> Decision:
        """The customer's own choice, through their signed link (`customer_id` is whom the
        link names): only for their own decision."""
        loaded = await self.current(decision_id)
        if loaded.incident.customer.id != customer_id:
            raise DecisionRefusedError("the link was issued for another customer",
                                       status=403, check="link_customer")
        return await self.choose(decision_id, option, by="customer", loaded=loaded)

    async def apply_due_defaults(self, limit: int = 1000) -> int:
        """Settle the offers whose deadline passed with their default option."""
        due = await self.store.offers_due(self.clock(), limit)
        settled = 0
        for decision in due:
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
        worth_value = self.manual_value(voucher)
        known = await self.store.known([did])
        if did in known:
            return await self._manual_again(known[did], voucher, worth_value, by)
        guards = self.policy.guards
        if worth_value > guards.incident_cap:
            raise DecisionRefusedError(
                f"the incident cap allows at most {guards.incident_cap} {currency} per "
                f"incident; this voucher is worth {worth_value} {currency}", check="cap")
        since = now - timedelta(days=self.policy.window_days)
        history = (await self.store.histories([voucher.customer.id], since))[
            voucher.customer.id]
        granted = sum((p.value for p in history.incidents if since < p.decided_at <= now),
                      Decimal(0))
        room = guards.customer_cap - granted
        if worth_value > room:
            raise DecisionRefusedError(
                f"the customer cap allows at most {guards.customer_cap} {currency} per "
                f"customer in {self.policy.window_days} days; {granted} {currency} was "
                f"granted before, {max(room, Decimal(0))} {currency} is left", check="cap")
        held = worth_value > self.settings.four_eyes_manual_voucher_above
        worth = Money(amount=worth_value, currency=currency)
        if not held and worth_value > 0:
            if await self.budget.reserve(now.date(), self.limit, {did: worth}, now) is None:
                state = await self.budget.state(now.date(), self.limit)
                raise DecisionRefusedError(
                    f"today's budget cannot cover {worth}: {state.remaining} is left",
                    check="budget")
            self.metrics.reserved.labels(currency).inc(float(worth_value))
        decision = self._manual_decision(voucher, did=did, iid=iid, worth=worth, held=held,
                                         by=by, now=now)
        if not await self.store.decisions.add_new([(did, decision)]):  # a racing retry won
            kept = await self.store.get(did)
            assert kept is not None
            return await self._manual_again(kept, voucher, worth_value, by)
        await self.publisher.publish_all([outgoing(self.settings.decisions_topic,
                                                   _event(decision, now))])
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

    async def _manual_again(self, kept: Decision, voucher: ManualVoucher, value: Decimal,
                            by: Principal) -> Decision:
        """A manual voucher's request seen before: the same decision, published if a crash
        left it unpublished; a different voucher under the same request id is refused."""
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

