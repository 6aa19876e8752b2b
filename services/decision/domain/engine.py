"""The reference policy engine: `decide(incident, history, policy, now)`, pure and deterministic.

It follows the steps of docs/policy.md ("Semantics"), in their order and under their numbers:
1. the rules, traced, and 4. the first offer (`apply_rules`); 2. the apology (`decide`);
3. combining per kind (`combine`) and, for a later stage of a failure, only the difference
(`topup.top_up`); 5. no refund above what was captured (`refunds.within_captured`), then the
caps on goodwill (`apply_caps`; an outage's own budget: `outages.py`); 6. the review
triggers (`review_reason`). `evaluate` runs them and the engine's own invariants, named
checks. What an incident type or a remedy kind does is asked of the registries
(`services/registry/`). `services/decision/fast/` makes the same decisions sooner;
`tests/unit/decision/test_fast_engine.py` holds the two to the same bytes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal

from schemas.common import CustomerSnapshot, Money, Tier
from schemas.decision import (
    Action,
    Assignment,
    CapApplied,
    Decision,
    DecisionStatus,
    Offer,
    OfferOption,
    RemedyKind,
    RuleTrace,
    action_key,
)
from schemas.incident import Incident
from services.decision.domain.conditions import matches
from services.decision.domain.experiments import arm_words, as_applied, assigned
from services.decision.domain.history import ZERO, CustomerHistory, WindowFacts
from services.decision.domain.ids import decision_id
from services.decision.domain.outages import OutageShare, applies, outage_share
from services.decision.domain.policy import Grant, Policy, ReviewTrigger, Rule
from services.decision.domain.refunds import refund_room, within_captured
from services.decision.domain.remedies import (
    Item,
    cent,
    goodwill,
    paid,
    restitution,
    rounded,
    total,
)
from services.decision.domain.topup import Earlier, earlier, top_up
from services.registry.incident_types import INCIDENT_TYPES
from services.registry.remedy_kinds import REMEDY_KINDS

Options = list[tuple[str, list[Item]]]


@dataclass(frozen=True, slots=True)
class Cut:
    """What a cap cut, from the remedies outside an offer or from one option (`option`)."""

    cap: str
    limit: Decimal
    cut: Decimal
    option: str | None


@dataclass(slots=True)
class Draft:
    """What the policy grants, as the steps shape it."""

    base: list[Item] = field(default_factory=list)
    options: Options = field(default_factory=list)
    offer_rule: Rule | None = None
    traces: list[RuleTrace] = field(default_factory=list)
    cuts: list[Cut] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    applied: list[str] = field(default_factory=list)  # the rules that matched, in order
    granted: Decimal = ZERO  # goodwill the earlier stages of the same failure granted
    outage: OutageShare | None = None  # the outage budget's shares, when it pays


# --- 1. and 4. the rules and the offer ----------------------------------------------------

def apply_rules(policy: Policy, incident: Incident, facts: WindowFacts) -> Draft:
    """Every rule, in file order, traced; of a group only the first that matches applies;
    the first rule with an offer makes it."""
    draft = Draft()
    groups: dict[str, str] = {}  # the rule that applied, by group
    for rule in policy.rules:
        types = rule.when.type
        if types is not None and incident.type not in types:
            draft.traces.append(RuleTrace(rule_id=rule.id, matched=False, reason=(
                f"type {incident.type.value} not in {', '.join(str(t) for t in types)}")))
            continue
        if rule.group is not None and rule.group in groups:
            draft.traces.append(RuleTrace(rule_id=rule.id, matched=False, reason=(
                f"group {rule.group} already applied by {groups[rule.group]}")))
            continue
        matched, reason = matches(rule.when, incident, facts, policy.currency)
        if matched and rule.offer is not None and draft.offer_rule is not None:
            reason += f"; its offer is ignored: {draft.offer_rule.id} made one first"
        draft.traces.append(RuleTrace(rule_id=rule.id, matched=matched, reason=reason))
        if matched:
            if rule.group is not None:
                groups[rule.group] = rule.id
            grant(rule, policy, incident, draft)
    return draft


def grant(rule: Rule, policy: Policy, incident: Incident, draft: Draft) -> None:
    """What an applying rule grants (each remedy made by its kind's entry), and its offer
    if it is the first."""
    draft.applied.append(rule.id)
    draft.base += _made(rule.grant, rule, policy, incident, notes=draft.notes,
                        prefix=f"{rule.id}: ")
    if rule.offer is not None and draft.offer_rule is None:
        draft.offer_rule = rule
        draft.options = [
            (option.label, _made(option.grant, rule, policy, incident, notes=draft.notes,
                                 prefix=f"{rule.id} ({option.label}): "))
            for option in rule.offer.options
        ]


def _made(grants: list[Grant], rule: Rule, policy: Policy, incident: Incident, *,
          notes: list[str], prefix: str) -> list[Item]:
    items = []
    for one in grants:
        make = REMEDY_KINDS[one.kind].make
        assert make is not None, "the registry names what makes every granted kind"
        made = make(one, rule, policy, incident)
        if isinstance(made, str):
            notes.append(prefix + made)  # why it cannot be given
        else:
            items.append(made)
    return items


# --- 3. combining (then the top-up: topup.py) ---------------------------------------------


def combine(items: list[Item], incident: Incident, currency: str) -> list[Item]:
    """One remedy per kind (per item for gifts and upgrades; percent, amount and restitution
    apart), merged as its entry says; a refund never exceeds what was paid."""
    out: dict[tuple[RemedyKind, str], Item] = {}
    for item in items:
        sub = (item.label if REMEDY_KINDS[item.kind].combines == "once_per_item"
               else "percent" if item.percent is not None
               else "restitution" if item.restitution else "")
        have = out.get((item.kind, sub))
        if have is None:
            out[item.kind, sub] = item.copy()
            continue
        if item.rule_id not in have.rule_id.split("+"):
            have.rule_id = f"{have.rule_id}+{item.rule_id}"
        have.because = have.because or item.because
        REMEDY_KINDS[item.kind].merge(have, item)
    ceiling = paid(incident, currency)
    for item in out.values():
        if item.kind is RemedyKind.refund and ceiling is not None and item.value > ceiling:
            item.amount = item.value = ceiling
    return list(out.values())


# --- 5. caps (after the refund ceiling: refunds.py) ---------------------------------------


def dearest(options: Options, worth: Callable[[list[Item]], Decimal] = goodwill) -> Decimal:
    """The `worth` of the dearest option (goodwill unless told), or zero."""
    return max((worth(items) for _, items in options), default=ZERO)


def cut_to(items: list[Item], limit: Decimal, policy: Policy) -> tuple[list[Item], Decimal]:
    """The goodwill of `items` cut to `limit`, as `cut_order` says (the last of a kind first):
    divisible remedies reduced, the others dropped whole, restitution never; and what was
    cut."""
    excess = goodwill(items) - limit
    left: list[Item | None] = list(items)  # None: dropped whole
    cut, point, unit = ZERO, policy.values.point, cent(policy.currency)
    for kind in policy.cut_order:
        for n in range(len(left) - 1, -1, -1):
            item = left[n]
            if excess <= 0 or item is None or item.kind is not kind or item.value <= 0 \
                    or item.restitution:
                continue
            before, value = item.value, ZERO
            if _divisible(item) and before > excess:
                item = item.copy()
                if kind is RemedyKind.points:
                    item.points = (int(((before - excess) / point).to_integral_value(
                        rounding=ROUND_DOWN)) if point > 0 else 0)
                    item.value = rounded(item.points * point, unit)
                else:
                    item.amount = item.value = (before - excess).quantize(unit, ROUND_DOWN)
                value = item.value if item.value > 0 else ZERO
            left[n] = item if value > 0 else None
            cut += before - value
            excess -= before - value
    return [item for item in left if item is not None], cut


def _divisible(item: Item) -> bool:
    how = REMEDY_KINDS[item.kind].cut
    return how == "reduced" or (how == "reduced_if_amount" and item.amount is not None)


def apply_caps(draft: Draft, policy: Policy, facts: WindowFacts,
               budget_remaining: Decimal | None, tier: Tier = Tier.standard) -> Decimal:
    """The incident cap (less what the earlier stages of the failure granted), the customer's
    room under the per-customer cap, then the customer's share of the outage budget (less
    the same) or else the day's budget, in order; returns the goodwill left."""
    guards = policy.guards
    limits = [("incident", max(ZERO, guards.incident_cap - draft.granted)
               if draft.granted > 0 else guards.incident_cap),
              ("customer", max(ZERO, guards.customer_cap - facts.compensation))]
    if draft.outage is not None:
        limits.append(("outage", max(ZERO, draft.outage.shares[tier] - draft.granted)))
    elif budget_remaining is not None:
        limits.append(("budget", max(ZERO, budget_remaining)))
    value = goodwill(draft.base) + dearest(draft.options)
    for cap, limit in limits:
        if value > limit:
            draft.base, cut = cut_to(draft.base, limit, policy)
            value = goodwill(draft.base)
            options = []
            for label, items in draft.options:  # cut against what the base leaves
                kept, option_cut = cut_to(items, limit - value, policy)
                options.append((label, kept))
                if option_cut > 0:
                    draft.cuts.append(Cut(cap, limit, option_cut, label))
            draft.options = options
            if cut > 0:
                draft.cuts.append(Cut(cap, limit, cut, None))
            value += dearest(draft.options)
    return value


def cap_detail(cap: str, policy: Policy, compensation: Decimal, limit: Decimal, *,
               granted: Decimal = ZERO, outage: OutageShare | None = None) -> str:
    """The words of a cap that cut something (`compensation`: granted before in the window;
    `granted`: by the earlier stages of the same failure, which the incident cap counts)."""
    guards, currency = policy.guards, policy.currency
    if cap == "incident":
        before = (f", {granted} {currency} granted before for the same failure"
                  if granted > 0 else "")
        return f"at most {guards.incident_cap} {currency} per incident{before}"
    if cap == "customer":
        return (f"at most {guards.customer_cap} {currency} per customer in "
                f"{policy.window_days} days, {compensation} {currency} granted before")
    if cap == "outage" and outage is not None:
        return outage.words(currency)
    return f"{limit} {currency} left in today's budget"


# --- the outage budget (outages.py shares it) ---------------------------------------------


def outage_need(incident: Incident, tier: Tier, policy: Policy) -> Decimal:
    """What the policy grants one customer of `tier` for `incident`'s outage, with no
    history and no experiment: the same for every customer of the tier, so every decider
    shares the budget alike."""
    someone = incident.model_copy(update={"customer": CustomerSnapshot(
        id=f"outage-{tier.value}", tier=tier), "order_id": None})
    facts = WindowFacts.of(CustomerHistory(), someone.incident_id, someone.type,
                           someone.detected_at, policy.window_days,
                           outage_id=someone.outage_id)
    draft = apply_rules(policy, someone, facts)
    value = (goodwill(combine(draft.base, someone, policy.currency))
             + dearest([(label, combine(items, someone, policy.currency))
                        for label, items in draft.options]))
    return min(value, policy.guards.incident_cap)


_SHARES: dict[tuple[object, ...], tuple[Policy, OutageShare]] = {}


def outage_share_of(incident: Incident, policy: Policy) -> OutageShare | None:
    """The shares of `incident`'s outage budget, if it draws on one; computed once per
    outage, stage and policy (an outage's incidents all carry the same facts)."""
    if not applies(policy, incident):
        return None
    key = (id(policy), incident.outage_id, incident.type, incident.severity,
           incident.outage_minutes, incident.tenant, incident.outage_affected,
           tuple(sorted((incident.outage_tiers or {}).items())),
           incident.customer.tier if incident.outage_tiers is None else None)
    kept = _SHARES.get(key)
    if kept is not None and kept[0] is policy:
        return kept[1]
    if len(_SHARES) > 1024:
        _SHARES.clear()
    share = outage_share(incident, policy,
                         lambda one, tier: outage_need(one, tier, policy))
    _SHARES[key] = (policy, share)
    return share


# --- 6. review ----------------------------------------------------------------------------


def review_reason(draft: Draft, policy: Policy, incident: Incident, facts: WindowFacts,
                  value: Decimal) -> str | None:
    """Why the decision is held: an amount in another currency, or the first trigger that
    fires (its sizes count goodwill only)."""
    currency = policy.currency
    for name in ("order_value", "item_value", "charged_amount"):
        money: Money | None = getattr(incident, name)
        if money is not None and money.currency != currency:
            return f"{name} is in {money.currency}, the policy in {currency}"
    refunds = _goodwill_refunds(draft.base) + dearest(draft.options, _goodwill_refunds)
    for trigger in policy.guards.review:
        if _fires(trigger, incident, facts, currency, refunds=refunds, value=value):
            return f"{trigger.reason} ({trigger.id})"
    return None


def _fires(trigger: ReviewTrigger, incident: Incident, facts: WindowFacts, currency: str, *,
           refunds: Decimal, value: Decimal) -> bool:
    return ((trigger.when is None or matches(trigger.when, incident, facts, currency)[0])
            and (trigger.refund_above is None or refunds > trigger.refund_above)
            and (trigger.total_above is None or value > trigger.total_above))


def _goodwill_refunds(items: list[Item]) -> Decimal:
    return sum((i.value for i in items if i.kind is RemedyKind.refund and not i.restitution),
               ZERO)


# --- the engine's invariants --------------------------------------------------------------


def restitution_never_cut(draft: Draft, owed: Decimal) -> None:
    """Caps and budgets leave restitution as it was owed."""
    left = restitution(draft.base) + dearest(draft.options, restitution)
    if left != owed:  # pragma: no cover - a defect of the engine, never a policy's doing
        raise AssertionError(f"restitution of {owed} was cut to {left}")


def refunds_within_captured(draft: Draft, incident: Incident, history: CustomerHistory,
                            currency: str) -> None:
    """No refund passes what was paid, nor, with the order's other refunds, what was
    captured for it."""
    ceiling, (room, _) = paid(incident, currency), refund_room(incident, history, currency)
    for items in [draft.base, *(items for _, items in draft.options)]:
        refunds = [item.value for item in items if item.kind is RemedyKind.refund]
        if any(ceiling is not None and value > ceiling for value in refunds) or (
                room is not None and sum(refunds, ZERO) > room):  # pragma: no cover
            raise AssertionError(f"refunds of {refunds} pass what was paid or captured")


def top_up_within_worse_band(before: Decimal, after: Decimal) -> None:
    """A top-up gives at most what the worse stage grants on its own."""
    if after > before:  # pragma: no cover - a defect of the engine
        raise AssertionError(f"a top-up of {after} passes the worse band's {before}")


# --- the decision -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Evaluation:
    draft: Draft
    facts: WindowFacts
    review_reason: str | None
    value: Decimal  # goodwill: the remedies outside an offer and its dearest option
    restitution: Decimal  # given back: outside an offer, and the most an option gives back
    assignment: Assignment | None = None  # the experiment's arm, when its rule applied

    @property
    def total(self) -> Decimal:
        return total(self.draft.base) + dearest(self.draft.options, total)

    @property
    def status(self) -> DecisionStatus:
        if self.review_reason:
            return DecisionStatus.held
        if self.draft.offer_rule is not None:
            return DecisionStatus.awaiting_choice
        return DecisionStatus.approved


def evaluate(incident: Incident, history: CustomerHistory, policy: Policy, now: datetime, *,
             budget_remaining: Decimal | None = None) -> Evaluation:
    """The steps of docs/policy.md, in order, before the result is dressed as a decision. A
    running experiment first puts its arm's remedies in the varied rule."""
    currency = policy.currency
    drawn_on = outage_share_of(incident, policy)  # the policy's, whatever arm applies
    arm = assigned(policy, incident.customer.id, now)
    if arm is not None:
        policy = as_applied(policy, arm)
    facts = WindowFacts.of(history, incident.incident_id, incident.type, now, policy.window_days,
                           order_id=incident.order_id, outage_id=incident.outage_id)
    draft = apply_rules(policy, incident, facts)
    draft.base = combine(draft.base, incident, currency)
    draft.options = [(label, combine(items, incident, currency))
                     for label, items in draft.options]
    before = earlier(history, incident)
    if before is not None:  # a later stage of the same failure: only the difference
        worse_band = goodwill(draft.base) + dearest(draft.options)
        draft.base, draft.options = top_up(draft.base, draft.options, before.given,
                                           policy.values.point, cent(currency))
        top_up_within_worse_band(worse_band, goodwill(draft.base) + dearest(draft.options))
        if not draft.options:
            draft.offer_rule = None
        draft.granted = before.goodwill
    draft.base, draft.options = within_captured(draft.base, draft.options, incident, history,
                                                currency, notes=draft.notes)
    owed = restitution(draft.base) + dearest(draft.options, restitution)
    draft.outage = drawn_on
    value = apply_caps(draft, policy, facts, budget_remaining, incident.customer.tier)
    reason = review_reason(draft, policy, incident, facts, value)
    restitution_never_cut(draft, owed)
    refunds_within_captured(draft, incident, history, currency)
    return Evaluation(draft, facts, reason, value, owed,
                      arm.assignment if arm is not None and arm.rule.id in draft.applied
                      else None)


def _money(amount: Decimal, currency: str) -> Money:
    return Money(amount=amount, currency=currency)


def _action(item: Item, did: str, position: int, currency: str, now: datetime) -> Action:
    return Action(
        position=position, idempotency_key=action_key(did, position), kind=item.kind,
        amount=None if item.amount is None else _money(item.amount, currency),
        percent=item.percent, points=item.points,
        expires_at=now + timedelta(days=item.expires_days) if item.expires_days else None,
        value=_money(item.value, currency),
        note=REMEDY_KINDS[item.kind].describe(item, currency), rule_id=item.rule_id,
        quantity=item.quantity,
        due_by=now + timedelta(hours=item.due_hours) if item.due_hours else None,
        restitution=item.restitution)


def decide(incident: Incident, history: CustomerHistory, policy: Policy, now: datetime, *,
           budget_remaining: Decimal | None = None) -> Decision:
    """The decision the policy makes for `incident`, given the customer's history and, if
    known, what is left of today's budget. Pure: the same inputs give the same decision."""
    result = evaluate(incident, history, policy, now, budget_remaining=budget_remaining)
    draft, currency, did = result.draft, policy.currency, decision_id(incident.incident_id)
    actions = [Action(position=0, idempotency_key=action_key(did, 0), kind=RemedyKind.apology,
                      value=_money(ZERO, currency), note="an apology")]
    actions += [_action(item, did, n, currency, now) for n, item in enumerate(draft.base, 1)]
    offer = None
    if draft.offer_rule is not None and draft.offer_rule.offer is not None:
        spec, position, options = draft.offer_rule.offer, len(actions), []
        for label, items in draft.options:
            options.append(OfferOption(label=label, actions=[
                _action(item, did, position + n, currency, now) for n, item in enumerate(items)]))
            position += len(items)
        offer = Offer(offer_id=did, options=options, default_option=spec.default,
                      deadline=now + timedelta(hours=spec.deadline_hours))
    caps = [CapApplied(cap=cut.cap, limit=_money(cut.limit, currency),
                       cut=_money(cut.cut, currency),
                       detail=cap_detail(cut.cap, policy, result.facts.compensation, cut.limit,
                                         granted=draft.granted, outage=draft.outage)
                       + ("" if cut.option is None else f"; option {cut.option!r}"))
            for cut in draft.cuts]
    before = earlier(history, incident)
    return Decision(
        decision_id=did, revision=0, incident=incident, policy_version=policy.version,
        decided_at=now, status=result.status, actions=actions,
        total_value=_money(result.total, currency),
        goodwill_value=_money(result.value, currency),
        restitution_value=_money(result.restitution, currency),
        rules=draft.traces, caps=caps, offer=offer, review_reason=result.review_reason,
        review=None, approvals=[], requested_by=None, choice=None,
        explanation=explain(incident, policy, draft, [a.note for a in actions[1:]], caps=caps,
                            offer=offer, result=result)
        + (arm_words(result.assignment, policy) if result.assignment is not None else "")
        + topped_up(incident, before),
        top_up_of=list(before.decision_ids) if before is not None else [],
        experiment=result.assignment,
        outage_budget=draft.outage.outage_id if draft.outage is not None else None)


# --- words --------------------------------------------------------------------------------


def listing(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def explain(incident: Incident, policy: Policy, draft: Draft, described: list[str], *,
            caps: list[CapApplied], offer: Offer | None, result: Evaluation) -> str:
    """One paragraph in plain language: the harm (its type's entry says it), what is given
    and why, what cut it, why it is held."""
    harm = INCIDENT_TYPES[incident.type].harm(incident)
    gifts = ["an apology"]
    for n, item in enumerate(draft.base):
        last_of_reason = n == len(draft.base) - 1 or draft.base[n + 1].because != item.because
        gifts.append(f"{described[n]} {item.because}" if item.because and last_of_reason
                     else described[n])
    text = [f"We are sorry: {harm}. Under policy {policy.version} you get {listing(gifts)}."]
    if offer is not None:
        labels = [label for label, _ in draft.options]
        text.append(f"You can also choose between {listing(labels)}; without a choice by "
                    f"{offer.deadline:%Y-%m-%d %H:%M} UTC you get {labels[offer.default_option]}.")
    if draft.applied:
        incidents = result.facts.incidents
        text.append(f"Rules applied: {', '.join(draft.applied)}" + (
            f" (this is incident {incidents + 1} in {policy.window_days} days)."
            if incidents else "."))
    text.extend(f"The {cap.cap} cap ({cap.detail}) cut {cap.cut}." for cap in caps)
    text.extend(f"Not given: {note}." for note in draft.notes)
    if result.review_reason:
        text.append("A person reviews this decision before anything is sent, because "
                    f"{result.review_reason}.")
    return " ".join(text)


def topped_up(incident: Incident, before: Earlier | None) -> str:
    if before is None:
        return ""
    failure = (f"order {incident.order_id}" if incident.order_id is not None
               else f"outage {incident.outage_id}")
    n = len(before.decision_ids)
    return (f" This adds to what we gave before for {failure}: what the policy grants now, "
            f"less what {n} earlier decision{'s' if n > 1 else ''} gave.")
