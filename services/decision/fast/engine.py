"""The engine's fast path: `decide(incident, history, policy, now)` as the reference engine
(`services.decision.domain.engine`) makes it, byte for byte, sooner.

Semantics, in the order they are applied (docs/policy.md has examples):

1. Every rule is considered in file order and traced. A rule matches when all its
   conditions hold. Of the rules sharing a `group`, only the first that matches applies;
   rules without a group all apply. A running experiment first gives its rule the remedies
   of the customer's arm (`compiled.CompiledExperiment`: one compiled plan per arm).
2. Every decision starts with an apology. The remedies of the applying rules are combined
   per kind: amounts, points and free-delivery orders add up; for percent vouchers,
   priority-support days and call deadlines the most generous wins; a replacement, and a
   gift or an upgrade of one item, is given once. No refund for an order passes what was
   captured for it, across all its incidents (`refund_room`).
3. The first applying rule with an `offer` makes the decision an offer: its options are
   valued, and the decision waits for the customer's choice (or the default at the
   deadline); the remedies outside the offer are carried out at once.
4. Caps on goodwill, in order: the per-incident cap (for a later stage of a failure, what the
   earlier stages left of it: the cap bounds the whole failure), the customer's room under
   the per-customer cap for the window, and the customer's share of the outage budget
   (`domain/outages.py`) or else the day's remaining budget. When the goodwill is
   worth more than a cap, the cut follows `cut_order`: refunds, points and amount vouchers
   are reduced, the other remedies dropped whole, until the total fits. Options of an offer
   are cut against what the remedies outside it leave. The apology and restitution (refunds
   the policy marks `restitution`) are never cut (`restitution_never_cut`).
5. Review triggers are checked last; if one fires the decision is held, with its reason,
   and nothing (not even the apology) goes out until a reviewer approves or rejects it.
   Their thresholds count goodwill only. An incident in a currency other than the policy's
   is held too.

How it runs: a policy is compiled once (`compiled.py`) into, per incident type, the rules to
evaluate with their conditions as functions and the remedies and traces that do not depend
on the incident; what the engine makes often (traces, combined remedies) is kept and shared.
Kept things are never changed, so none of it changes a decision: the same inputs give the
same decision, byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import NamedTuple

from schemas.common import Tier
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
from schemas.incident import Incident, IncidentType
from services.decision.domain.engine import cap_detail, listing, outage_share_of, topped_up
from services.decision.domain.experiments import arm_words
from services.decision.domain.history import ZERO, CustomerHistory, WindowFacts
from services.decision.domain.ids import decision_id
from services.decision.domain.outages import OutageShare
from services.decision.domain.policy import Policy, Rule
from services.decision.domain.refunds import within_captured
from services.decision.domain.remedies import paid, rounded
from services.decision.domain.topup import Earlier, earlier, top_up
from services.decision.fast.compiled import (
    CompiledPolicy,
    Granted,
    RuleStep,
    TypeRules,
    compiled,
)
from services.decision.fast.remedies import (
    Item,
    action_fields,
    built,
    built_from,
    describe,
    dressed,
    goodwill,
    money,
    restitution,
    total,
)
from services.registry.incident_types import INCIDENT_TYPES
from services.registry.remedy_kinds import REMEDY_KINDS

__all__ = [
    "Cut",
    "Draft",
    "Evaluation",
    "Item",
    "applying_rules",
    "built",
    "decide",
    "describe",
    "evaluate",
    "explain",
    "rules_read_compensation",
]

# Enum members as module constants: attribute access on an enum class is slow on the hot path.
_REFUND, _POINTS, _VOUCHER = RemedyKind.refund, RemedyKind.points, RemedyKind.voucher
_DOUBLE_CHARGE = IncidentType.double_charge
_LABELLED = frozenset({RemedyKind.gift, RemedyKind.free_upgrade})
_HELD, _AWAITING, _APPROVED = (
    DecisionStatus.held,
    DecisionStatus.awaiting_choice,
    DecisionStatus.approved,
)


class Cut(NamedTuple):
    """What a cap cut, from the remedies outside an offer or from one of its options (a
    `CapApplied`, without the words until a decision needs them)."""

    cap: str
    limit: Decimal
    cut: Decimal
    option: str | None


@dataclass(slots=True)
class Draft:
    base: list[Item]
    options: list[tuple[str, list[Item]]]
    offer_rule: Rule | None
    traces: list[RuleTrace]
    cuts: list[Cut]
    notes: list[str]
    applied: list[str]  # the rules that matched, in order
    granted: Decimal = ZERO  # goodwill the earlier stages of the same failure granted
    outage: OutageShare | None = None  # the outage budget's shares, when it pays


# --- rules -----------------------------------------------------------------------------


def _apply_rules(
    plan: CompiledPolicy,
    incident: Incident,
    facts: WindowFacts,
    trace: bool,
    applying: Sequence[int] | None = None,
) -> Draft:
    rules = plan.rules[incident.type]
    traces: list[RuleTrace] = []
    if trace:
        applying = _traced_rules(rules, incident, facts, traces)
    elif applying is None:
        applying = _applying(rules, incident, facts)
    draft = _granted(plan, rules, incident, applying)
    draft.traces = traces
    return draft


def _applying(rules: TypeRules, incident: Incident, facts: WindowFacts) -> list[int]:
    """The rules that apply, by position among the rules of the incident's type."""
    groups: set[str] = set()  # that a rule applied in
    applying = []
    for position, (group, test, _) in enumerate(rules.quick):
        if group is not None and group in groups:
            continue
        if test is not None and not test(incident, facts):
            continue
        if group is not None:
            groups.add(group)
        applying.append(position)
    return applying


def _traced_rules(
    rules: TypeRules, incident: Incident, facts: WindowFacts, traces: list[RuleTrace]
) -> list[int]:
    """`_applying`, keeping the trace of every rule of the policy in `traces`."""
    applying = []
    groups: dict[str, str] = {}  # the rule that applied, by group
    offered_by: str | None = None  # the rule whose offer is made
    for position, (ruled_out, step) in enumerate(rules.steps):
        if ruled_out:
            traces.extend(ruled_out)
        group = step.group
        if group is not None and group in groups:
            traces.append(step.passed_over_for(groups[group]))
            continue
        remembered = step.remembered  # looked up here: most traces are remembered
        known = None if remembered is None else remembered.get(step.key(incident, facts))
        matched, rule_trace = known if known is not None else step.traced(incident, facts)
        if matched and step.offers:
            if offered_by is None:
                offered_by = step.rule_id
            else:
                rule_trace = built(
                    RuleTrace,
                    rule_id=step.rule_id,
                    matched=True,
                    reason=f"{rule_trace.reason}; its offer is ignored: "
                    f"{offered_by} made one first",
                )
        traces.append(rule_trace)
        if not matched:
            continue
        if group is not None:
            groups[group] = step.rule_id
        applying.append(position)
    traces.extend(rules.tail)
    return applying


def _granted(
    plan: CompiledPolicy, rules: TypeRules, incident: Incident, applying: Sequence[int]
) -> Draft:
    """What the rules `applying` grant, combined. When none depends on the incident, that
    is made once per set of rules and kept, with the words and money of its remedies."""
    key = tuple(applying)
    known = rules.granted.get(key)
    if known is not None:
        return Draft(
            list(known.base),
            [(label, list(items)) for label, items in known.options],
            known.offer_rule,
            [],
            [],
            [],
            list(known.applied),
        )
    draft = Draft([], [], None, [], [], [], [])
    steps = rules.quick
    constant = True
    for position in applying:
        step = steps[position][2]
        constant = constant and step.constant
        _grant(step, incident, draft)
    currency = plan.policy.currency
    draft.base = combine(draft.base, incident, currency)
    if draft.options:
        draft.options = [
            (label, combine(items, incident, currency)) for label, items in draft.options
        ]
    if constant and len(rules.granted) < _KEPT:
        for item in draft.base + [item for _, items in draft.options for item in items]:
            if item.dressed is None:  # a sum of templates: from now on shared too
                item.dressed = dressed(item, currency)
        rules.granted[key] = Granted(
            tuple(draft.base),
            tuple((label, tuple(items)) for label, items in draft.options),
            draft.offer_rule,
            tuple(draft.applied),
        )
    return draft


_KEPT = 1024  # sets of rules whose grants are kept, per incident type


def _grant(step: RuleStep, incident: Incident, draft: Draft) -> None:
    """What a rule that applies grants: its remedies, and its offer if it is the first."""
    rule_id = step.rule_id
    draft.applied.append(rule_id)
    if step.fixed is not None:
        draft.base.extend(step.fixed)
    else:
        for grant in step.grants:
            made = grant if isinstance(grant, Item) else grant(incident)
            if isinstance(made, str):
                draft.notes.append(f"{rule_id}: {made}")
            else:
                draft.base.append(made)
    if step.offers and draft.offer_rule is None:
        draft.offer_rule = step.rule
        for label, grants in step.options:
            option_items = []
            for grant in grants:
                made = grant if isinstance(grant, Item) else grant(incident)
                if isinstance(made, str):
                    draft.notes.append(f"{rule_id} ({label}): {made}")
                else:
                    option_items.append(made)
            draft.options.append((label, option_items))


def _joined(a: str, b: str) -> str:
    return a if b in a.split("+") else f"{a}+{b}"


def combine(items: list[Item], incident: Incident, currency: str) -> list[Item]:
    """One remedy per kind (per item for gifts and upgrades, per type for vouchers); a refund
    never exceeds what was paid."""
    combined = items if len(items) < 2 else _merged(items)
    for n, item in enumerate(combined):
        if item.kind is _REFUND:
            ceiling = paid(incident, currency)
            if ceiling is not None and item.value > ceiling:
                if item.dressed is not None:
                    item = combined[n] = item.copy()  # noqa: PLW2901 - the copy replaces it
                item.amount = item.value = ceiling
    return combined


def _merged(items: list[Item]) -> list[Item]:
    out: dict[tuple[RemedyKind, str], Item] = {}
    for item in items:
        kind = item.kind
        sub = (item.label if kind in _LABELLED
               else "percent" if item.percent is not None
               else "restitution" if item.restitution else "")
        key = (kind, sub)
        have = out.get(key)
        if have is None:
            out[key] = item
            continue
        if have.dressed is not None:  # a policy's template: the sum is a new item
            have = out[key] = have.copy()
        have.rule_id = _joined(have.rule_id, item.rule_id)
        have.because = have.because or item.because
        REMEDY_KINDS[kind].merge(have, item)
    return list(out.values())


# --- never more than was paid ------------------------------------------------------------


def _within_captured(
    draft: Draft, incident: Incident, history: CustomerHistory, currency: str
) -> None:
    draft.base, draft.options = within_captured(draft.base, draft.options, incident, history,
                                                currency, notes=draft.notes)


# --- caps ------------------------------------------------------------------------------


def _dearest(
    options: list[tuple[str, list[Item]]], worth: Callable[[list[Item]], Decimal] = goodwill
) -> Decimal:
    """The `worth` of the dearest option (goodwill unless told), or zero."""
    dearest: Decimal | None = None
    for _, items in options:
        value = worth(items)
        if dearest is None or value > dearest:
            dearest = value
    return ZERO if dearest is None else dearest


def cut_to(items: list[Item], limit: Decimal, plan: CompiledPolicy) -> tuple[list[Item], Decimal]:
    """Cut the goodwill of `items` to be worth at most `limit`; returns what is left and what
    was cut. Restitution is never cut. Items reduced are copies; the others are returned as
    they are."""
    excess = goodwill(items) - limit
    if excess <= 0:
        return items, ZERO
    if limit <= 0:
        whole = _cut_whole(items, plan)
        if whole is not None:
            return whole
    left: list[Item | None] = list(items)  # None: dropped whole
    kinds = {item.kind for item in items}
    cut = ZERO
    point, unit = plan.policy.values.point, plan.cent
    for kind in plan.policy.cut_order:
        if excess <= 0:
            break
        if kind not in kinds:
            continue
        for n in range(len(left) - 1, -1, -1):  # the last of a kind first
            item = left[n]
            if item is None or item.kind is not kind or item.value <= 0 or item.restitution:
                continue
            if excess <= 0:
                break
            before, value = item.value, ZERO
            if item.divisible and before > excess:
                item = item.copy()
                if item.kind is _POINTS:
                    item.points = (
                        int(((before - excess) / point).to_integral_value(rounding=ROUND_DOWN))
                        if point > 0
                        else 0
                    )
                    item.value = rounded(item.points * point, unit)
                else:
                    item.amount = (before - excess).quantize(unit, rounding=ROUND_DOWN)
                    item.value = item.amount
                if item.value > 0:
                    value = item.value
            left[n] = item if value > 0 else None
            cut += before - value
            excess -= before - value
    return [i for i in left if i is not None], cut


def _cut_whole(items: list[Item], plan: CompiledPolicy) -> tuple[list[Item], Decimal] | None:
    """`cut_to` a limit of zero or less, when no item has a negative value: then everything
    a cap can cut is cut whole (the excess is never less than the item being cut)."""
    cuttable = plan.cuttable
    kept: list[Item] = []
    cut = ZERO
    for item in items:
        value = item.value
        if value < 0:
            return None
        if value > 0 and item.kind in cuttable and not item.restitution:
            cut += value
        else:
            kept.append(item)
    return kept, cut


def _cap_applied(
    plan: CompiledPolicy, facts: WindowFacts, cut: Cut, granted: Decimal = ZERO,
    outage: OutageShare | None = None,
) -> CapApplied:
    """`granted`: the goodwill the earlier stages of the same failure gave."""
    currency = plan.policy.currency
    known = plan.caps.get(cut.cap)
    if known is not None and known[0] is cut.limit:  # the incident cap, or no budget left
        limit, detail = known[1], known[2]
    else:
        limit = money(cut.limit, currency)
        detail = cap_detail(cut.cap, plan.policy, facts.compensation, cut.limit,
                            granted=granted, outage=outage)
    return built(
        CapApplied,
        cap=cut.cap,
        limit=limit,
        cut=money(cut.cut, currency),
        detail=detail if cut.option is None else f"{detail}; option {cut.option!r}",
    )


def _apply_caps(
    draft: Draft, plan: CompiledPolicy, facts: WindowFacts, budget_remaining: Decimal | None,
    tier: Tier,
) -> Decimal:
    """Cut the draft's goodwill to the caps, in order; returns what is left of it (the
    remedies outside an offer and its dearest option). Restitution is never cut. The
    incident cap bounds the whole failure: a later stage gets what its earlier stages
    (`draft.granted`) left of it, never less than nothing."""
    guards = plan.policy.guards
    value = goodwill(draft.base) + _dearest(draft.options)
    limit = guards.incident_cap  # itself, when nothing was granted: its words are kept
    if draft.granted > 0:
        limit = max(ZERO, limit - draft.granted)
    if value > limit:
        value = _cut(draft, plan, "incident", limit)
    limit = max(ZERO, guards.customer_cap - facts.compensation)
    if value > limit:
        value = _cut(draft, plan, "customer", limit)
    if draft.outage is not None:  # the outage budget pays, not the day's
        limit = max(ZERO, draft.outage.shares[tier] - draft.granted)
        if value > limit:
            value = _cut(draft, plan, "outage", limit)
    elif budget_remaining is not None:
        limit = max(ZERO, budget_remaining)
        if value > limit:
            value = _cut(draft, plan, "budget", limit)
    return value


def _cut(draft: Draft, plan: CompiledPolicy, cap: str, limit: Decimal) -> Decimal:
    """Cut the remedies outside an offer to `limit`, and each option to what they leave;
    returns the value left."""
    draft.base, cut = cut_to(draft.base, limit, plan)
    base_total = goodwill(draft.base)
    if draft.options:
        room = limit - base_total
        options = []
        for label, items in draft.options:
            kept, option_cut = cut_to(items, room, plan)
            options.append((label, kept))
            if option_cut > 0:
                draft.cuts.append(Cut(cap, limit, option_cut, label))
        draft.options = options
    if cut > 0:
        draft.cuts.append(Cut(cap, limit, cut, None))
    return base_total + _dearest(draft.options)


# --- review ----------------------------------------------------------------------------


def _refunded(items: list[Item], *, goodwill_only: bool = True) -> Decimal:
    """Refunds among `items`: those that are goodwill, which size-based review triggers
    count (a restitution is never held for its size), or all of them."""
    value = ZERO
    for item in items:
        if item.kind is _REFUND and not (goodwill_only and item.restitution):
            value += item.value
    return value


def _review(
    draft: Draft, plan: CompiledPolicy, incident: Incident, facts: WindowFacts, value: Decimal
) -> str | None:
    refund: Decimal | None = None
    for trigger in plan.review:
        if trigger.test is not None and not trigger.test(incident, facts):
            continue
        if trigger.refund_above is not None:
            if refund is None:
                refund = _refunded(draft.base) + max(
                    (_refunded(items) for _, items in draft.options), default=ZERO
                )
            if refund <= trigger.refund_above:
                continue
        if trigger.total_above is not None and value <= trigger.total_above:
            continue
        return trigger.reason
    return None


def _foreign_currency(incident: Incident, currency: str) -> str | None:
    order, item, charged = incident.order_value, incident.item_value, incident.charged_amount
    if (
        (order is None or order.currency == currency)
        and (item is None or item.currency == currency)
        and (charged is None or charged.currency == currency)
    ):
        return None
    for name, value in (
        ("order_value", incident.order_value),
        ("item_value", incident.item_value),
        ("charged_amount", incident.charged_amount),
    ):
        if value is not None and value.currency != currency:
            return f"{name} is in {value.currency}, the policy in {currency}"
    return None


# --- the decision ----------------------------------------------------------------------


class Evaluation(NamedTuple):
    """What the policy grants, before it is dressed as a `Decision` (immutable, and cheaper
    to make as a named tuple than as a frozen dataclass)."""

    draft: Draft
    facts: WindowFacts
    review_reason: str | None
    value: Decimal  # goodwill: the remedies outside an offer and its dearest option
    plan: CompiledPolicy
    restitution: Decimal  # given back: outside an offer, and the most an option gives back
    before: Earlier | None  # the earlier stages of the same failure, if any
    assignment: Assignment | None  # the experiment's arm, when its rule applied

    @property
    def total(self) -> Decimal:
        """What the decision may cost: the remedies outside an offer and its dearest option,
        restitution and goodwill together."""
        draft = self.draft
        return total(draft.base) + _dearest(draft.options, total)

    @property
    def caps(self) -> list[CapApplied]:
        """What the caps cut, as a decision records it."""
        granted, outage = self.draft.granted, self.draft.outage
        return [_cap_applied(self.plan, self.facts, cut, granted, outage)
                for cut in self.draft.cuts]

    @property
    def status(self) -> DecisionStatus:
        return (
            _HELD
            if self.review_reason
            else _AWAITING
            if self.draft.offer_rule is not None
            else _APPROVED
        )


def _evaluate(
    plan: CompiledPolicy,
    incident: Incident,
    history: CustomerHistory,
    now: datetime,
    *,
    budget_remaining: Decimal | None,
    trace: bool,
    applying: Sequence[int] | None = None,
) -> Evaluation:
    arm = None
    drawn_on = (outage_share_of(incident, plan.policy)  # the policy's, whatever the arm
                if incident.outage_affected is not None else None)
    experiment = plan.experiment
    if experiment is not None and experiment.experiment.running(now):
        # the arm's policy: the same rules in the same places, so `applying` still holds
        arm, plan = experiment.plan_for(incident.customer.id)
    policy = plan.policy
    facts = WindowFacts.of(history, incident.incident_id, incident.type, now, policy.window_days,
                           order_id=incident.order_id, outage_id=incident.outage_id)
    draft = _apply_rules(plan, incident, facts, trace, applying)
    before = earlier(history, incident)
    if before is not None:  # a later stage of the same failure: only the difference
        draft.base, draft.options = top_up(draft.base, draft.options, before.given,
                                           policy.values.point, plan.cent)
        if not draft.options:
            draft.offer_rule = None
        draft.granted = before.goodwill  # the incident cap counts it
    owed, refunds = ZERO, _refunds(draft)
    if refunds:
        _within_captured(draft, incident, history, policy.currency)
        owed = restitution(draft.base) + _dearest(draft.options, restitution)
    draft.outage = drawn_on
    value = _apply_caps(draft, plan, facts, budget_remaining, incident.customer.tier)
    review_reason = _foreign_currency(incident, policy.currency) or _review(
        draft, plan, incident, facts, value
    )
    if refunds:
        restitution_never_cut(draft, owed)
    assignment = (arm.assignment if arm is not None and arm.rule.id in draft.applied
                  else None)
    return Evaluation(draft, facts, review_reason, value, plan, owed, before, assignment)


def _refunds(draft: Draft) -> bool:
    for item in draft.base:
        if item.kind is _REFUND:
            return True
    return any(item.kind is _REFUND for _, items in draft.options for item in items)


def restitution_never_cut(draft: Draft, owed: Decimal) -> None:
    """The engine's invariant: caps and budgets leave restitution as it was owed."""
    left = restitution(draft.base) + _dearest(draft.options, restitution)
    if left != owed:  # pragma: no cover - a defect of the engine, never a policy's doing
        raise AssertionError(f"restitution of {owed} was cut to {left}")


def evaluate(
    incident: Incident,
    history: CustomerHistory,
    policy: Policy,
    now: datetime,
    *,
    budget_remaining: Decimal | None = None,
    trace: bool = True,
    applying: Sequence[int] | None = None,
) -> Evaluation:
    """Rules, caps and review triggers for `incident` (see the module's docstring); without
    `trace`, the rules' traces are not kept (a backtest needs only the sums). `applying`,
    when given, is what `applying_rules` found for the same incident and history, computed
    beforehand (without traces only)."""
    if applying is not None and trace:
        raise ValueError("rules found beforehand leave no traces: give trace=False")
    plan = compiled(policy)
    return _evaluate(
        plan,
        incident,
        history,
        now,
        budget_remaining=budget_remaining,
        trace=trace,
        applying=applying,
    )


def applying_rules(
    incident: Incident, history: CustomerHistory, policy: Policy, now: datetime
) -> tuple[int, ...]:
    """The rules that apply to `incident`, by position among the rules of its type, for
    `evaluate(..., applying=...)`. Unless the rules look at the compensation granted before
    (`rules_read_compensation`), the values in `history` play no part: the rules can be
    found before the earlier decisions are settled (a backtest does it in another process)."""
    plan = compiled(policy)
    facts = WindowFacts.of(history, incident.incident_id, incident.type, now, policy.window_days,
                           order_id=incident.order_id, outage_id=incident.outage_id)
    return tuple(_applying(plan.rules[incident.type], incident, facts))


def rules_read_compensation(policy: Policy) -> bool:
    """Whether a rule of `policy` looks at the compensation granted in the window."""
    return compiled(policy).rules_read_compensation


# Spans by their length: a policy names few (expiries, deadlines, call windows).
_DAYS: dict[int, timedelta] = {}
_HOURS: dict[int, timedelta] = {}


def _days(n: int) -> timedelta:
    span = _DAYS.get(n)
    if span is None:
        span = _DAYS[n] = timedelta(days=n)
    return span


def _hours(n: int) -> timedelta:
    span = _HOURS.get(n)
    if span is None:
        span = _HOURS[n] = timedelta(hours=n)
    return span


def _action(item: Item, did: str, position: int, currency: str, now: datetime) -> Action:
    ready = item.dressed
    if ready is not None:  # a shared item: its action's fields are made already
        fields = ready.action.copy()
    else:
        fields = action_fields(item, describe(item, currency), money(item.value, currency),
                               None if item.amount is None else money(item.amount, currency))
    fields["position"] = position
    fields["idempotency_key"] = action_key(did, position)
    if item.expires_days:
        fields["expires_at"] = now + _days(item.expires_days)
    if item.due_hours:
        fields["due_by"] = now + _hours(item.due_hours)
    return built_from(Action, fields)


def decide(
    incident: Incident,
    history: CustomerHistory,
    policy: Policy,
    now: datetime,
    *,
    budget_remaining: Decimal | None = None,
) -> Decision:
    """The decision the policy makes for `incident`, given the customer's history and, if
    known, what is left of today's budget. Pure: the same inputs give the same decision."""
    plan = compiled(policy)
    evaluation = _evaluate(
        plan, incident, history, now, budget_remaining=budget_remaining, trace=True
    )
    draft, review_reason, caps = evaluation.draft, evaluation.review_reason, evaluation.caps
    assignment = evaluation.assignment
    currency = policy.currency
    did = decision_id(incident.incident_id)
    before = evaluation.before

    apology = plan.apology.copy()
    apology["idempotency_key"] = action_key(did, 0)
    actions = [built_from(Action, apology)]
    actions += [_action(item, did, n, currency, now) for n, item in enumerate(draft.base, 1)]
    described = [action.note for action in actions[1:]]
    offer = None
    if draft.offer_rule is not None and draft.offer_rule.offer is not None:
        position = len(actions)
        options = []
        for label, items in draft.options:
            option_actions = [
                _action(item, did, position + n, currency, now) for n, item in enumerate(items)
            ]
            position += len(items)
            options.append(built(OfferOption, label=label, actions=option_actions))
        spec = draft.offer_rule.offer
        offer = built(
            Offer,
            offer_id=did,
            options=options,
            default_option=spec.default,
            deadline=now + _hours(spec.deadline_hours),
        )
    return built(
        Decision,
        decision_id=did,
        revision=0,
        incident=incident,
        policy_version=policy.version,
        decided_at=now,
        status=evaluation.status,
        actions=actions,
        total_value=money(evaluation.total, currency),
        goodwill_value=money(evaluation.value, currency),
        restitution_value=money(evaluation.restitution, currency),
        rules=draft.traces,
        caps=caps,
        offer=offer,
        review_reason=review_reason,
        review=None,
        approvals=[],
        requested_by=None,
        choice=None,
        explanation=explain(
            incident,
            policy,
            draft,
            described,
            caps,
            offer=offer,
            review_reason=review_reason,
            facts=evaluation.facts,
        )
        + (arm_words(assignment, policy) if assignment is not None else "")
        + topped_up(incident, before),
        top_up_of=list(before.decision_ids) if before is not None else [],
        experiment=assignment,
        trace_id=None,  # operational, not the policy's: the service sets it when tracing
        outage_budget=draft.outage.outage_id if draft.outage is not None else None,
        hold=None,  # the service stamps an outage's abort window (settings, ADR 0015)
        amended=None,
    )


# --- words -----------------------------------------------------------------------------

def explain(
    incident: Incident,
    policy: Policy,
    draft: Draft,
    described: list[str],
    caps: list[CapApplied],
    *,
    offer: Offer | None,
    review_reason: str | None,
    facts: WindowFacts,
) -> str:
    """One paragraph in plain language: the harm, what is given and why, what cut it.
    `described` are the remedies outside the offer in words (`describe`), in order; `caps`
    what the caps cut."""
    harm = INCIDENT_TYPES[incident.type].harm(incident)
    gifts = ["an apology"]
    base = draft.base
    last = len(base) - 1
    for n, item in enumerate(base):
        because = item.because
        if because and (n == last or base[n + 1].because != because):
            gifts.append(f"{described[n]} {because}")
        else:
            gifts.append(described[n])
    text = [f"We are sorry: {harm}. Under policy {policy.version} you get {listing(gifts)}."]
    if offer is not None:
        labels = [label for label, _ in draft.options]
        text.append(
            f"You can also choose between {listing(labels)}; without a choice by "
            f"{offer.deadline:%Y-%m-%d %H:%M} UTC you get "
            f"{labels[offer.default_option]}."
        )
    if draft.applied:
        text.append(
            f"Rules applied: {', '.join(draft.applied)}"
            + (
                f" (this is incident {facts.incidents + 1} in {policy.window_days} days)."
                if facts.incidents
                else "."
            )
        )
    if caps:
        text.extend(f"The {cap.cap} cap ({cap.detail}) cut {cap.cut}." for cap in caps)
    if draft.notes:
        text.extend(f"Not given: {note}." for note in draft.notes)
    if review_reason:
        text.append(
            f"A person reviews this decision before anything is sent, because {review_reason}."
        )
    return " ".join(text)
