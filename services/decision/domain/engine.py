"""The policy engine: `decide(incident, history, policy, now)`, pure and deterministic.

Semantics, in the order they are applied (docs/policy.md has examples):

1. Every rule is considered in file order and traced. A rule matches when all its
   conditions hold. Of the rules sharing a `group`, only the first that matches applies;
   rules without a group all apply.
2. Every decision starts with an apology. The remedies of the applying rules are combined
   per kind: amounts, points and free-delivery orders add up; for percent vouchers,
   priority-support days and call deadlines the most generous wins; a replacement, and a
   gift or an upgrade of one item, is given once. A refund never exceeds what was paid.
3. The first applying rule with an `offer` makes the decision an offer: its options are
   valued, and the decision waits for the customer's choice (or the default at the
   deadline); the remedies outside the offer are carried out at once.
4. Caps, in order: the per-incident cap, the customer's room under the per-customer cap
   for the window, and the day's remaining budget. When the remedies are worth more than
   a cap, the cut follows `cut_order`: refunds, points and amount vouchers are reduced,
   the other remedies dropped whole, until the total fits. Options of an offer are cut
   against what the remedies outside it leave. The apology is never cut.
5. Review triggers are checked last; if one fires the decision is held, with its reason,
   and nothing (not even the apology) goes out until a reviewer approves or rejects it.
   An incident in a currency other than the policy's is held too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import Any, TypeVar

from pydantic import BaseModel

from schemas.common import Money, minor_exponent
from schemas.decision import (
    Action,
    CapApplied,
    Decision,
    DecisionStatus,
    Offer,
    OfferOption,
    RemedyKind,
    RuleTrace,
    action_key,
    decision_id,
)
from schemas.incident import Detection, Incident, IncidentType
from services.decision.domain.history import ZERO, CustomerHistory, WindowFacts
from services.decision.domain.policy import Grant, Policy, Range, Rule, When

DIVISIBLE = frozenset({RemedyKind.refund, RemedyKind.points})
# Enum members as module constants: attribute access on an enum class is slow on the hot path.
_REFUND, _POINTS, _VOUCHER = RemedyKind.refund, RemedyKind.points, RemedyKind.voucher
_LABELLED = frozenset({RemedyKind.gift, RemedyKind.free_upgrade})
M = TypeVar("M", bound=BaseModel)


def built(cls: type[M], **fields: Any) -> M:
    """An instance of a contract model from values the engine built and typed itself: the
    hot path skips re-validation (`model_construct` without its per-field bookkeeping).
    Every field must be given."""
    model = cls.__new__(cls)
    object.__setattr__(model, "__dict__", fields)
    object.__setattr__(model, "__pydantic_fields_set__", set(fields))
    object.__setattr__(model, "__pydantic_extra__", None)
    object.__setattr__(model, "__pydantic_private__", None)
    return model


@dataclass(slots=True)
class Item:
    """A remedy being decided, before it becomes an `Action`."""

    kind: RemedyKind
    value: Decimal
    rule_id: str
    because: str = ""
    amount: Decimal | None = None
    percent: Decimal | None = None
    points: int | None = None
    expires_days: int | None = None
    quantity: int | None = None
    due_hours: int | None = None
    label: str = ""  # the gift or upgrade
    dropped: bool = False  # cut whole by a cap

    @property
    def divisible(self) -> bool:
        return self.kind in DIVISIBLE or (self.kind is _VOUCHER and self.amount is not None)

    def copy(self) -> Item:
        return Item(self.kind, self.value, self.rule_id, self.because, self.amount,
                    self.percent, self.points, self.expires_days, self.quantity,
                    self.due_hours, self.label, self.dropped)


@dataclass(frozen=True, slots=True)
class Context:
    incident: Incident
    facts: WindowFacts
    policy: Policy
    cent: Decimal
    trace: bool = True  # False: no rule traces or reasons (a backtest needs only the sums)

    def money(self, value: Decimal) -> Decimal:
        return value.quantize(self.cent, rounding=ROUND_HALF_UP)


# --- conditions ------------------------------------------------------------------------


def _in_list(name: str, value: str | None, allowed: Iterable[str]) -> str | None:
    allowed = [str(a) for a in allowed]
    if value is None:
        return f"{name} unknown"
    return None if value in allowed else f"{name} {value} not in {', '.join(allowed)}"


def _money_value(ctx: Context, money: Money | None) -> Decimal | None:
    if money is None or money.currency != ctx.policy.currency:
        return None
    return money.amount


_Getter = Callable[[Context], Any]
_GETTERS: dict[str, _Getter] = {
    "type": lambda c: c.incident.type,
    "severity": lambda c: c.incident.severity,
    "detection": lambda c: c.incident.detection,
    "tier": lambda c: c.incident.customer.tier,
    "locale": lambda c: c.incident.customer.locale,
    "tenant": lambda c: c.incident.tenant,
    "delay_minutes": lambda c: c.incident.delay_minutes,
    "wait_minutes": lambda c: c.incident.wait_minutes,
    "outage_minutes": lambda c: c.incident.outage_minutes,
    "order_value": lambda c: _money_value(c, c.incident.order_value),
    "item_value": lambda c: _money_value(c, c.incident.item_value),
    "lifetime_value": lambda c: _money_value(c, c.incident.customer.lifetime_value),
    "incidents_in_window": lambda c: c.facts.incidents,
    "same_type_in_window": lambda c: c.facts.same_type,
    "claims_in_window": lambda c: c.facts.claims + (
        c.incident.detection is not Detection.proactive),
    "compensation_in_window": lambda c: c.facts.compensation,
}
# name, getter, the allowed values (a list condition) or the bounds (a range condition)
_Condition = tuple[str, _Getter, frozenset[Any] | None, tuple[str, ...], Range | None]
_COMPILED: dict[int, tuple[When, list[_Condition]]] = {}


def _conditions(when: When) -> list[_Condition]:
    """The conditions a `When` sets, compiled once (policies are immutable)."""
    cached = _COMPILED.get(id(when))
    if cached is not None and cached[0] is when:
        return cached[1]
    compiled: list[_Condition] = []
    for name in type(when).model_fields:
        value = getattr(when, name)
        if value is None:
            continue
        if isinstance(value, Range):
            compiled.append((name, _GETTERS[name], None, (), value))
        else:
            compiled.append((name, _GETTERS[name], frozenset(value),
                             tuple(str(v) for v in value), None))
    if len(_COMPILED) > 4096:
        _COMPILED.clear()
    _COMPILED[id(when)] = (when, compiled)
    return compiled


def holds(when: When, ctx: Context) -> bool:
    """Whether `when` holds (`check` without the reason, for when none is kept)."""
    for _name, get, allowed, _shown, bounds in _conditions(when):
        value = get(ctx)
        if value is None:
            return False
        if allowed is not None:
            if value not in allowed:
                return False
        elif not bounds.holds(value):  # type: ignore[union-attr]
            return False
    return True


def check(when: When, ctx: Context) -> tuple[bool, str]:
    """Whether `when` holds, and a reason naming what decided it."""
    if not ctx.trace:
        return holds(when, ctx), ""
    held: list[str] = []
    for name, get, allowed, shown, bounds in _conditions(when):
        value = get(ctx)
        if value is None:
            return False, f"{name} unknown"
        if allowed is not None:
            if value not in allowed:
                return False, f"{name} {value} not in {', '.join(shown)}"
            if ctx.trace:
                held.append(f"{name} {value}")
            continue
        assert bounds is not None
        failure = bounds.failure(value)
        if failure is not None:
            return False, f"{name} {failure}"
        if ctx.trace:
            held.append(f"{name} {value} ({bounds})")
    return True, "; ".join(held) or "no conditions"


# --- remedies --------------------------------------------------------------------------


def _refund_basis(ctx: Context, of: str) -> Decimal | None:
    incident = ctx.incident
    if of == "item":
        return _money_value(ctx, incident.item_value or incident.order_value)
    if of == "charge":
        return _money_value(ctx, incident.charged_amount)
    return _money_value(ctx, incident.order_value)


def paid(ctx: Context) -> Decimal | None:
    """What the customer paid for the order (or was charged twice), the refund ceiling."""
    return _money_value(ctx, ctx.incident.charged_amount or ctx.incident.order_value)


# Grants whose remedy does not depend on the incident (points, a fixed voucher, free
# delivery, ...) are made once per policy and copied: (grant, rule, policy, the item).
_FIXED = frozenset({"points", "free_delivery", "gift", "priority_support", "free_upgrade",
                    "personal_call"})
_TEMPLATES: dict[tuple[int, int], tuple[Grant, Rule, Policy, Item | None]] = {}


def _fixed(grant: Grant) -> bool:
    if grant.voucher is not None:
        return grant.voucher.amount is not None
    return any(getattr(grant, name) is not None for name in _FIXED)


def item_of(grant: Grant, rule: Rule, ctx: Context) -> Item | str:
    """The remedy a grant gives in this context, or why it cannot be given."""
    key = (id(grant), id(rule))
    cached = _TEMPLATES.get(key)
    if (cached is not None and cached[0] is grant and cached[1] is rule
            and cached[2] is ctx.policy):
        template = cached[3]
        if template is not None:
            return template.copy()
    made = _item_of(grant, rule, ctx)
    if isinstance(made, Item):
        made.value = ctx.money(made.value)
        if made.amount is not None:
            made.amount = ctx.money(made.amount)
    if cached is None or cached[0] is not grant or cached[1] is not rule:
        if len(_TEMPLATES) > 4096:
            _TEMPLATES.clear()
        _TEMPLATES[key] = (grant, rule, ctx.policy, made.copy() if (
            isinstance(made, Item) and _fixed(grant)) else None)
    return made


def _item_of(grant: Grant, rule: Rule, ctx: Context) -> Item | str:
    values = ctx.policy.values
    if grant.refund is not None:
        spec = grant.refund
        if spec.percent is not None:
            basis = _refund_basis(ctx, spec.of)
            if basis is None:
                return f"refund of {spec.percent}% of the {spec.of}: its value is unknown"
            amount = ctx.money(basis * spec.percent / 100)
        else:
            amount = spec.fixed or ZERO
        if spec.max is not None:
            amount = min(amount, spec.max)
        return Item(RemedyKind.refund, amount, rule.id, rule.because, amount=amount)
    if grant.points is not None:
        return Item(RemedyKind.points, ctx.money(grant.points * values.point), rule.id,
                    rule.because, points=grant.points)
    if grant.voucher is not None:
        spec_v = grant.voucher
        if spec_v.amount is not None:
            return Item(RemedyKind.voucher, spec_v.amount, rule.id, rule.because,
                        amount=spec_v.amount, expires_days=spec_v.expires_days)
        percent = spec_v.percent or ZERO
        basis = _money_value(ctx, ctx.incident.order_value) or values.typical_order
        return Item(RemedyKind.voucher, ctx.money(basis * percent / 100), rule.id, rule.because,
                    percent=percent, expires_days=spec_v.expires_days)
    if grant.free_delivery is not None:
        orders = grant.free_delivery.orders
        return Item(RemedyKind.free_delivery, values.free_delivery * orders, rule.id, rule.because,
                    quantity=orders)
    if grant.replacement is not None:
        value = (_money_value(ctx, ctx.incident.item_value or ctx.incident.order_value)
                 or values.replacement_without_value)
        return Item(RemedyKind.replacement, value, rule.id, rule.because,
                    label="express" if grant.replacement.express else "")
    if grant.gift is not None:
        return Item(RemedyKind.gift, grant.gift.value, rule.id, rule.because, label=grant.gift.item)
    if grant.priority_support is not None:
        return Item(RemedyKind.priority_support, values.priority_support, rule.id, rule.because,
                    quantity=grant.priority_support.days)
    if grant.free_upgrade is not None:
        return Item(RemedyKind.free_upgrade, grant.free_upgrade.value, rule.id, rule.because,
                    label=grant.free_upgrade.to)
    assert grant.personal_call is not None
    return Item(RemedyKind.personal_call, values.personal_call, rule.id, rule.because,
                due_hours=grant.personal_call.within_hours)


def _joined(a: str, b: str) -> str:
    return a if b in a.split("+") else f"{a}+{b}"


def combine(items: list[Item], ctx: Context) -> list[Item]:
    """One remedy per kind (per item for gifts and upgrades, per type for vouchers)."""
    out: dict[tuple[RemedyKind, str], Item] = {}
    for item in items:
        sub = item.label if item.kind in _LABELLED else (
            "percent" if item.percent is not None else "")
        key = (item.kind, sub)
        have = out.get(key)
        if have is None:
            out[key] = item  # items are made afresh for each evaluation
            continue
        have.rule_id = _joined(have.rule_id, item.rule_id)
        have.because = have.because or item.because
        match item.kind:
            case RemedyKind.refund:
                have.amount = (have.amount or ZERO) + (item.amount or ZERO)
                have.value = have.amount
            case RemedyKind.points:
                have.points = (have.points or 0) + (item.points or 0)
                have.value += item.value
            case RemedyKind.voucher if have.percent is None:
                have.amount = (have.amount or ZERO) + (item.amount or ZERO)
                have.value = have.amount
                have.expires_days = max(have.expires_days or 0, item.expires_days or 0)
            case RemedyKind.voucher:
                if (item.percent or ZERO) > (have.percent or ZERO):
                    have.percent, have.value = item.percent, item.value
                have.expires_days = max(have.expires_days or 0, item.expires_days or 0)
            case RemedyKind.free_delivery:
                have.quantity = (have.quantity or 0) + (item.quantity or 0)
                have.value += item.value
            case RemedyKind.priority_support:
                have.quantity = max(have.quantity or 0, item.quantity or 0)
            case RemedyKind.personal_call:
                have.due_hours = min(have.due_hours or 24, item.due_hours or 24)
            case _:
                pass  # a replacement, or the same gift or upgrade: given once
    combined = list(out.values())
    ceiling = paid(ctx)
    for item in combined:
        if item.kind is _REFUND and ceiling is not None and item.value > ceiling:
            item.amount = item.value = ceiling
    return combined


# --- caps ------------------------------------------------------------------------------


def total(items: Iterable[Item]) -> Decimal:
    value = ZERO
    for item in items:
        value += item.value
    return value


def cut_to(items: list[Item], limit: Decimal, ctx: Context) -> tuple[list[Item], Decimal]:
    """Cut `items` to be worth at most `limit`; returns what is left and what was cut."""
    excess = total(items) - limit
    if excess <= 0:
        return items, ZERO
    left = [i.copy() for i in items]
    cut = ZERO
    point = ctx.policy.values.point
    for kind in ctx.policy.cut_order:
        for item in reversed([i for i in left if i.kind is kind and i.value > 0]):
            if excess <= 0:
                break
            before = item.value
            if item.divisible and before > excess:
                if item.kind is _POINTS:
                    item.points = int(((item.value - excess) / point).to_integral_value(
                        rounding=ROUND_DOWN)) if point > 0 else 0
                    item.value = ctx.money(item.points * point)
                else:
                    item.amount = (item.value - excess).quantize(ctx.cent, rounding=ROUND_DOWN)
                    item.value = item.amount
            if item.value <= 0 or not item.divisible or before <= excess:
                item.value, item.dropped = ZERO, True
            cut += before - item.value
            excess -= before - item.value
    return [i for i in left if not i.dropped], cut


# --- the decision ----------------------------------------------------------------------


@dataclass(slots=True)
class Draft:
    base: list[Item]
    options: list[tuple[str, list[Item]]]
    offer_rule: Rule | None
    traces: list[RuleTrace]
    caps: list[CapApplied]
    notes: list[str]


def _cent(currency: str) -> Decimal:
    return Decimal(1).scaleb(-minor_exponent(currency))


def _foreign_currency(incident: Incident, currency: str) -> str | None:
    for name, money in (("order_value", incident.order_value),
                        ("item_value", incident.item_value),
                        ("charged_amount", incident.charged_amount)):
        if money is not None and money.currency != currency:
            return f"{name} is in {money.currency}, the policy in {currency}"
    return None


# Per incident type: each rule with the trace of its type condition ruling it out (None for
# the rules to evaluate), and only the rules to evaluate (for evaluations without traces).
_Gates = tuple[list[tuple[Rule, RuleTrace | None]], list[tuple[Rule, RuleTrace | None]]]
_TYPE_GATES: dict[int, tuple[Policy, dict[IncidentType, _Gates]]] = {}


def _type_gates(policy: Policy) -> dict[IncidentType, _Gates]:
    """Most rules are about one type, so most need no evaluation for a given incident."""
    cached = _TYPE_GATES.get(id(policy))
    if cached is not None and cached[0] is policy:
        return cached[1]
    gates: dict[IncidentType, _Gates] = {}
    for incident_type in IncidentType:
        every: list[tuple[Rule, RuleTrace | None]] = [
            (rule, RuleTrace(rule_id=rule.id, matched=False, reason=_in_list(
                "type", incident_type.value, rule.when.type) or "")
             if rule.when.type is not None and incident_type not in rule.when.type else None)
            for rule in policy.rules]
        gates[incident_type] = (every, [(rule, gate) for rule, gate in every if gate is None])
    if len(_TYPE_GATES) > 64:
        _TYPE_GATES.clear()
    _TYPE_GATES[id(policy)] = (policy, gates)
    return gates


def _apply_rules(ctx: Context) -> Draft:
    draft = Draft([], [], None, [], [], [])
    groups: dict[str, str] = {}
    every, evaluated = _type_gates(ctx.policy)[ctx.incident.type]
    for rule, gate in (every if ctx.trace else evaluated):
        if gate is not None:
            if ctx.trace:
                draft.traces.append(gate)
            continue
        if rule.group is not None and rule.group in groups:
            if ctx.trace:
                draft.traces.append(built(RuleTrace, rule_id=rule.id, matched=False, reason=(
                    f"group {rule.group} already applied by {groups[rule.group]}")))
            continue
        matched, reason = check(rule.when, ctx)
        if matched and rule.offer is not None and draft.offer_rule is not None:
            reason += f"; its offer is ignored: {draft.offer_rule.id} made one first"
        if ctx.trace:
            draft.traces.append(built(RuleTrace, rule_id=rule.id, matched=matched,
                                      reason=reason))
        if not matched:
            continue
        if rule.group is not None:
            groups[rule.group] = rule.id
        for grant in rule.grant:
            made = item_of(grant, rule, ctx)
            if isinstance(made, str):
                draft.notes.append(f"{rule.id}: {made}")
            else:
                draft.base.append(made)
        if rule.offer is not None and draft.offer_rule is None:
            draft.offer_rule = rule
            for option in rule.offer.options:
                option_items = []
                for grant in option.grant:
                    made = item_of(grant, rule, ctx)
                    if isinstance(made, str):
                        draft.notes.append(f"{rule.id} ({option.label}): {made}")
                    else:
                        option_items.append(made)
                draft.options.append((option.label, option_items))
    draft.base = combine(draft.base, ctx)
    draft.options = [(label, combine(items, ctx)) for label, items in draft.options]
    return draft


def _cap_detail(cap: str, ctx: Context, limit: Decimal) -> str:
    """The words of a cap, made only when it cuts something."""
    guards, currency = ctx.policy.guards, ctx.policy.currency
    if cap == "incident":
        return f"at most {guards.incident_cap} {currency} per incident"
    if cap == "customer":
        return (f"at most {guards.customer_cap} {currency} per customer in "
                f"{ctx.policy.window_days} days, {ctx.facts.compensation} {currency} granted "
                "before")
    return f"{limit} {currency} left in today's budget"


def _cap_applied(cap: str, ctx: Context, limit: Decimal, cut: Decimal,
                 option: str | None = None) -> CapApplied:
    currency = ctx.policy.currency
    detail = _cap_detail(cap, ctx, limit)
    return built(CapApplied, cap=cap, limit=built(Money, amount=limit, currency=currency),
                 cut=built(Money, amount=cut, currency=currency),
                 detail=detail if option is None else f"{detail}; option {option!r}")


def _apply_caps(draft: Draft, ctx: Context, budget_remaining: Decimal | None) -> None:
    guards = ctx.policy.guards
    limits: list[tuple[str, Decimal]] = [
        ("incident", guards.incident_cap),
        ("customer", max(ZERO, guards.customer_cap - ctx.facts.compensation)),
    ]
    if budget_remaining is not None:
        limits.append(("budget", max(ZERO, budget_remaining)))
    base_total = total(draft.base)
    dearest = max((total(items) for _, items in draft.options), default=ZERO)
    for cap, limit in limits:
        if base_total + dearest <= limit:
            continue  # nothing to cut: the common case
        draft.base, cut = cut_to(draft.base, limit, ctx)
        base_total = total(draft.base)
        room = limit - base_total
        options = []
        for label, items in draft.options:
            kept, option_cut = cut_to(items, room, ctx)
            options.append((label, kept))
            if option_cut > 0:
                draft.caps.append(_cap_applied(cap, ctx, limit, option_cut, label))
        draft.options = options
        dearest = max((total(items) for _, items in draft.options), default=ZERO)
        if cut > 0:
            draft.caps.append(_cap_applied(cap, ctx, limit, cut))


def _review(draft: Draft, ctx: Context) -> str | None:
    worst_option = max((total(items) for _, items in draft.options), default=ZERO)
    refund = total(i for i in draft.base if i.kind is _REFUND) + max(
        (total(i for i in items if i.kind is _REFUND)
         for _, items in draft.options), default=ZERO)
    value = total(draft.base) + worst_option
    for trigger in ctx.policy.guards.review:
        if trigger.when is not None and not holds(trigger.when, ctx):
            continue
        if trigger.refund_above is not None and refund <= trigger.refund_above:
            continue
        if trigger.total_above is not None and value <= trigger.total_above:
            continue
        return f"{trigger.reason} ({trigger.id})"
    return None


def _action(item: Item, did: str, position: int, ctx: Context, now: datetime) -> Action:
    currency = ctx.policy.currency
    amount = (built(Money, amount=item.amount, currency=currency)
              if item.amount is not None else None)
    return built(Action,
        position=position, idempotency_key=action_key(did, position), kind=item.kind,
        amount=amount, percent=item.percent, points=item.points,
        expires_at=now + timedelta(days=item.expires_days) if item.expires_days else None,
        value=built(Money, amount=item.value, currency=currency), note=describe(item, currency),
        rule_id=item.rule_id, quantity=item.quantity,
        due_by=now + timedelta(hours=item.due_hours) if item.due_hours else None)


@dataclass(frozen=True, slots=True)
class Evaluation:
    """What the policy grants, before it is dressed as a `Decision`."""

    draft: Draft
    facts: WindowFacts
    review_reason: str | None

    @property
    def status(self) -> DecisionStatus:
        return (DecisionStatus.held if self.review_reason else
                DecisionStatus.awaiting_choice if self.draft.offer_rule is not None
                else DecisionStatus.approved)

    @property
    def value(self) -> Decimal:
        """The remedies outside an offer and its dearest option."""
        return total(self.draft.base) + max((total(items) for _, items in self.draft.options),
                                            default=ZERO)


def evaluate(incident: Incident, history: CustomerHistory, policy: Policy, now: datetime, *,
             budget_remaining: Decimal | None = None, trace: bool = True) -> Evaluation:
    """Rules, caps and review triggers for `incident` (see the module's docstring)."""
    facts = WindowFacts.of(history, incident.incident_id, incident.type, now,
                           policy.window_days)
    ctx = Context(incident, facts, policy, _cent(policy.currency), trace)
    draft = _apply_rules(ctx)
    _apply_caps(draft, ctx, budget_remaining)
    review_reason = _foreign_currency(incident, policy.currency) or _review(draft, ctx)
    return Evaluation(draft, facts, review_reason)


def decide(incident: Incident, history: CustomerHistory, policy: Policy, now: datetime, *,
           budget_remaining: Decimal | None = None) -> Decision:
    """The decision the policy makes for `incident`, given the customer's history and, if
    known, what is left of today's budget. Pure: the same inputs give the same decision."""
    evaluation = evaluate(incident, history, policy, now, budget_remaining=budget_remaining)
    draft, facts, review_reason = evaluation.draft, evaluation.facts, evaluation.review_reason
    ctx = Context(incident, facts, policy, _cent(policy.currency))
    did = decision_id(incident.incident_id)

    actions = [built(Action,
        position=0, idempotency_key=action_key(did, 0), kind=RemedyKind.apology,
        amount=None, percent=None, points=None, expires_at=None,
        value=built(Money, amount=ZERO, currency=policy.currency), note="an apology", rule_id=None,
        quantity=None, due_by=None)]
    actions += [_action(item, did, n, ctx, now) for n, item in enumerate(draft.base, 1)]
    offer = None
    if draft.offer_rule is not None and draft.offer_rule.offer is not None:
        position = len(actions)
        options = []
        for label, items in draft.options:
            option_actions = [_action(item, did, position + n, ctx, now)
                              for n, item in enumerate(items)]
            position += len(items)
            options.append(built(OfferOption, label=label, actions=option_actions))
        spec = draft.offer_rule.offer
        offer = built(Offer,
            offer_id=did, options=options, default_option=spec.default,
            deadline=now + timedelta(hours=spec.deadline_hours))
    return built(Decision,
        decision_id=did, revision=0, incident=incident, policy_version=policy.version,
        decided_at=now, status=evaluation.status, actions=actions,
        total_value=built(Money, amount=evaluation.value, currency=policy.currency),
        rules=draft.traces,
        caps=draft.caps, offer=offer, review_reason=review_reason, review=None, choice=None,
        explanation=explain(incident, policy, draft, offer=offer,
                            review_reason=review_reason, facts=facts))


# --- words -----------------------------------------------------------------------------


def describe(item: Item, currency: str) -> str:
    """A remedy in plain words."""
    match item.kind:
        case RemedyKind.refund:
            return f"a refund of {item.amount} {currency}"
        case RemedyKind.points:
            return f"{item.points} loyalty points (worth {item.value} {currency})"
        case RemedyKind.voucher if item.percent is not None:
            return f"a {item.percent.normalize():f}% voucher valid {item.expires_days} days"
        case RemedyKind.voucher:
            return f"a {item.amount} {currency} voucher valid {item.expires_days} days"
        case RemedyKind.free_delivery:
            n = item.quantity or 1
            return "free delivery on your next order" if n == 1 else (
                f"free delivery on your next {n} orders")
        case RemedyKind.replacement:
            return "a replacement sent by express" if item.label else "a replacement"
        case RemedyKind.gift:
            return f"a gift ({item.label})"
        case RemedyKind.priority_support:
            return f"priority support for {item.quantity} days"
        case RemedyKind.free_upgrade:
            return f"a free upgrade to {item.label}"
        case RemedyKind.personal_call:
            return f"a call from a manager within {item.due_hours} hours"
        case _:
            return "an apology"


_HARM: dict[IncidentType, Callable[[Incident], str]] = {
    IncidentType.delivery_delayed: lambda i: (
        f"your delivery was {i.delay_minutes} minutes later than we promised"),
    IncidentType.item_defective: lambda _: "an item in your order arrived defective",
    IncidentType.wrong_item: lambda _: "we sent you the wrong item",
    IncidentType.item_missing: lambda _: "an item was missing from your order",
    IncidentType.order_cancelled: lambda _: "we cancelled your order after you had paid",
    IncidentType.double_charge: lambda _: "we charged you twice for one order",
    IncidentType.support_wait_exceeded: lambda i: (
        f"your request waited {i.wait_minutes} minutes for our first answer"),
    IncidentType.service_outage: lambda i: (
        f"our service was unavailable for {i.outage_minutes} minutes"
        if i.outage_minutes else "our service was unavailable"),
}


def _listing(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def explain(incident: Incident, policy: Policy, draft: Draft, *, offer: Offer | None,
            review_reason: str | None, facts: WindowFacts) -> str:
    """One paragraph in plain language: the harm, what is given and why, what cut it."""
    currency = policy.currency
    harm = _HARM[incident.type](incident)
    gifts = ["an apology"]
    for n, item in enumerate(draft.base):
        last_of_reason = n + 1 == len(draft.base) or draft.base[n + 1].because != item.because
        gifts.append(describe(item, currency)
                     + (f" {item.because}" if item.because and last_of_reason else ""))
    text = [f"We are sorry: {harm}. Under policy {policy.version} you get {_listing(gifts)}."]
    if offer is not None:
        labels = [label for label, _ in draft.options]
        text.append(f"You can also choose between {_listing(labels)}; without a choice by "
                    f"{offer.deadline:%Y-%m-%d %H:%M} UTC you get "
                    f"{labels[offer.default_option]}.")
    applied = [t.rule_id for t in draft.traces if t.matched]
    if applied:
        text.append(f"Rules applied: {', '.join(applied)}"
                    + (f" (this is incident {facts.incidents + 1} in {policy.window_days} "
                       "days)." if facts.incidents else "."))
    text.extend(f"The {cap.cap} cap ({cap.detail}) cut {cap.cut}."
                for cap in draft.caps)
    text.extend(f"Not given: {note}." for note in draft.notes)
    if review_reason:
        text.append(f"A person reviews this decision before anything is sent, because "
                    f"{review_reason}.")
    return " ".join(text)
