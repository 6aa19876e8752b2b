"""A policy as the engine runs it, compiled once per policy (policies are immutable).

For each incident type: the rules left to evaluate (most rules are about one type), their
conditions as plain functions, their remedies (made once when they do not depend on the
incident) and the traces that do not depend on the incident either: a rule the type rules
out, a rule passed over because another of its group applied. The traces of conditions on
whole numbers and names are remembered by the values they saw (the first few thousand), so
most are written once. None of this changes what the engine decides or says."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from operator import attrgetter
from typing import Any

from schemas.common import Money
from schemas.decision import RemedyKind, RuleTrace
from schemas.incident import Detection, Incident, IncidentType
from services.decision.domain.engine import cap_detail
from services.decision.domain.experiments import Arm, arms, as_applied, pick
from services.decision.domain.history import ZERO, WindowFacts
from services.decision.domain.policy import Experiment, Policy, Range, Rule, When
from services.decision.domain.remedies import amount_in, cent
from services.decision.fast.remedies import (
    Item,
    Make,
    action_fields,
    built,
    grant_maker,
    money,
)

Getter = Callable[[Incident, WindowFacts], Any]
Test = Callable[[Incident, WindowFacts], bool]
_PROACTIVE = Detection.proactive
_REMEMBERED = 2048  # traces remembered per rule (the first met); later ones are made each time

# Where each condition finds its value: an attribute of the incident or of the window facts,
# an amount of the incident in the policy's currency, or the claims counted with this one.
_SOURCES: dict[str, tuple[str, str]] = {
    "type": ("incident", "type"),
    "severity": ("incident", "severity"),
    "detection": ("incident", "detection"),
    "tier": ("incident", "customer.tier"),
    "locale": ("incident", "customer.locale"),
    "tenant": ("incident", "tenant"),
    "delay_minutes": ("incident", "delay_minutes"),
    "wait_minutes": ("incident", "wait_minutes"),
    "outage_minutes": ("incident", "outage_minutes"),
    "order_value": ("amount", "order_value"),
    "item_value": ("amount", "item_value"),
    "lifetime_value": ("amount", "customer.lifetime_value"),
    "incidents_in_window": ("facts", "incidents"),
    "same_type_in_window": ("facts", "same_type"),
    "claims_in_window": ("claims", ""),
    "compensation_in_window": ("facts", "compensation"),
}
# Values that are whole numbers or names (not amounts): what a trace says of them follows
# from their equality, so traces are remembered by value; and numeric bounds that are whole
# compare as ints.
_EXACT = frozenset(_SOURCES) - {
    "order_value",
    "item_value",
    "lifetime_value",
    "compensation_in_window",
}


def _reader(name: str, currency: str) -> Getter:
    source, path = _SOURCES[name]
    if source == "claims":
        return lambda incident, facts: facts.claims + (incident.detection is not _PROACTIVE)
    get = attrgetter(path)
    if source == "amount":
        return lambda incident, _facts: amount_in(get(incident), currency)
    if source == "facts":
        return lambda _incident, facts: get(facts)
    return lambda incident, _facts: get(incident)


def _bound(bound: Decimal | None, whole: bool) -> Decimal | int | None:
    """A bound as an int when the values are whole numbers and it is one too: the same
    comparisons, made faster."""
    if whole and bound is not None and bound.is_finite() and bound == bound.to_integral_value():
        return int(bound)
    return bound


def _within(bounds: Range, whole: bool) -> Callable[[Any], bool]:
    """`bounds.holds`, specialised for the usual shapes (`gte`, `lt`, both)."""
    gte, lt = _bound(bounds.gte, whole), _bound(bounds.lt, whole)
    if bounds.gt is None and bounds.lte is None:
        if lt is None and gte is not None:
            return lambda value: value >= gte
        if gte is None and lt is not None:
            return lambda value: value < lt
        if gte is not None and lt is not None:
            return lambda value: gte <= value < lt
    return bounds.holds


def _test(
    name: str,
    read: Getter,
    inside: Callable[[Any], bool],
    allowed: frozenset[Any] | None,
    currency: str,
) -> Test:
    """Whether the condition holds, in as few calls as its source allows (`read` and
    `inside` would do, more slowly)."""
    source, path = _SOURCES[name]
    get = attrgetter(path) if path else None
    if source == "incident" and get is not None:
        if allowed is not None:

            def one_of(incident: Incident, _facts: WindowFacts) -> bool:
                return get(incident) in allowed  # None is never allowed

            return one_of

        def on_incident(incident: Incident, _facts: WindowFacts) -> bool:
            value = get(incident)
            return value is not None and inside(value)

        return on_incident
    if source == "facts" and get is not None:  # counts and sums: never unknown
        return lambda _incident, facts: inside(get(facts))
    if source == "amount" and get is not None:

        def amount(incident: Incident, _facts: WindowFacts) -> bool:
            money = get(incident)
            return money is not None and money.currency == currency and inside(money.amount)

        return amount

    def computed(incident: Incident, facts: WindowFacts) -> bool:
        value = read(incident, facts)
        return value is not None and inside(value)

    return computed


@dataclass(frozen=True, slots=True)
class Condition:
    """One condition of a `When`: a list of allowed values or a range."""

    name: str
    read: Getter  # the value it looks at (None: unknown)
    test: Test  # whether it holds (`judged` without the words)
    exact: bool  # a whole number or a name: see `_EXACT`
    shown: str  # the allowed values (a list), or the bounds (a range), in words
    allowed: frozenset[Any] | None
    bounds: Range | None

    def judged(self, value: Any) -> tuple[bool, str]:
        """Whether `value` satisfies the condition, and the reason naming what decided it."""
        if value is None:
            return False, f"{self.name} unknown"
        if self.allowed is not None:
            if value not in self.allowed:
                return False, f"{self.name} {value} not in {self.shown}"
            return True, f"{self.name} {value}"
        assert self.bounds is not None
        failure = self.bounds.failure(value)
        if failure is not None:
            return False, f"{self.name} {failure}"
        return True, f"{self.name} {value} ({self.shown})"


def conditions(when: When, currency: str) -> list[Condition]:
    """The conditions `when` sets, in the order of its fields (`type` first)."""
    made: list[Condition] = []
    for name in type(when).model_fields:
        value = getattr(when, name)
        if value is None:
            continue
        read, exact = _reader(name, currency), name in _EXACT
        if isinstance(value, Range):
            test = _test(name, read, _within(value, exact), None, currency)
            made.append(Condition(name, read, test, exact, str(value), None, value))
        else:
            allowed = frozenset(value)
            test = _test(name, read, allowed.__contains__, allowed, currency)
            shown = ", ".join(str(v) for v in value)
            made.append(Condition(name, read, test, exact, shown, allowed, None))
    return made


def all_of(conditions: tuple[Condition, ...]) -> Test | None:
    """Whether all `conditions` hold, as one function; None when there are none."""
    if not conditions:
        return None
    if len(conditions) == 1:
        return conditions[0].test
    tests = tuple(c.test for c in conditions)

    def every(incident: Incident, facts: WindowFacts) -> bool:
        for test in tests:  # noqa: SIM110 - faster than all() over a generator
            if not test(incident, facts):
                return False
        return True

    return every


Remedy = Item | Make


@dataclass(frozen=True, slots=True)
class RuleStep:
    """A rule as incidents of one type meet it: its type condition, if it has one, holds."""

    rule: Rule
    rule_id: str
    group: str | None
    offers: bool  # the rule has an offer
    conditions: tuple[Condition, ...]  # the others
    test: Test | None  # whether they hold (None: there are none)
    held_type: str  # the words of the type condition that holds, or ""
    remembered: dict[Any, tuple[bool, RuleTrace]] | None  # by the conditions' values
    key: Callable[[Incident, WindowFacts], Any]  # those values
    grants: tuple[Remedy, ...]
    fixed: tuple[Item, ...] | None  # the grants, when none depends on the incident
    options: tuple[tuple[str, tuple[Remedy, ...]], ...]  # of its offer
    constant: bool  # nothing it grants, in its offer either, depends on the incident
    passed_over: dict[str, RuleTrace]  # by the rule of its group that applied before it

    def traced(self, incident: Incident, facts: WindowFacts) -> tuple[bool, RuleTrace]:
        """Whether the rule matches, and its trace."""
        remembered = self.remembered
        if remembered is not None:
            key = self.key(incident, facts)
            known = remembered.get(key)
            if known is not None:
                return known
        held = [self.held_type] if self.held_type else []
        matched, reason = True, ""
        for condition in self.conditions:
            matched, words = condition.judged(condition.read(incident, facts))
            if not matched:
                reason = words
                break
            held.append(words)
        if matched:
            reason = "; ".join(held) or "no conditions"
        result = matched, built(RuleTrace, rule_id=self.rule_id, matched=matched, reason=reason)
        if remembered is not None and len(remembered) < _REMEMBERED:
            remembered[key] = result
        return result

    def passed_over_for(self, applied: str) -> RuleTrace:
        """The trace when `applied`, of the same group, applied before this rule."""
        made = self.passed_over.get(applied)
        if made is None:  # pragma: no cover - every rule of the group is prepared
            made = _passed_over(self.rule, applied)
        return made


def _key(conditions: tuple[Condition, ...]) -> Callable[[Incident, WindowFacts], Any]:
    if not conditions:
        return lambda _incident, _facts: ()
    if len(conditions) == 1:
        return conditions[0].read
    if len(conditions) == 2:  # the usual case, without a generator
        first, second = conditions[0].read, conditions[1].read
        return lambda incident, facts: (first(incident, facts), second(incident, facts))
    gets = tuple(c.read for c in conditions)
    return lambda incident, facts: tuple(get(incident, facts) for get in gets)


def _passed_over(rule: Rule, applied: str) -> RuleTrace:
    return RuleTrace(
        rule_id=rule.id, matched=False, reason=f"group {rule.group} already applied by {applied}"
    )


def _step(rule: Rule, incident_type: IncidentType, policy: Policy) -> RuleStep:
    given = conditions(rule.when, policy.currency)
    rest = tuple(c for c in given if c.name != "type")
    group = [r.id for r in policy.rules if rule.group is not None and r.group == rule.group]
    grants = tuple(grant_maker(g, rule, policy) for g in rule.grant)
    options = tuple(
        (option.label, tuple(grant_maker(g, rule, policy) for g in option.grant))
        for option in (rule.offer.options if rule.offer is not None else ())
    )
    return RuleStep(
        rule=rule,
        rule_id=rule.id,
        group=rule.group,
        offers=rule.offer is not None,
        conditions=rest,
        test=all_of(rest),
        held_type=f"type {incident_type.value}" if rule.when.type is not None else "",
        remembered={} if all(c.exact for c in rest) else None,
        key=_key(rest),
        grants=grants,
        fixed=tuple(g for g in grants if isinstance(g, Item))
        if all(isinstance(g, Item) for g in grants)
        else None,
        options=options,
        constant=all(isinstance(g, Item) for g in grants)
        and all(isinstance(g, Item) for _, made in options for g in made),
        passed_over={other: _passed_over(rule, other) for other in group if other != rule.id},
    )


@dataclass(frozen=True, slots=True)
class Granted:
    """What a set of rules grants, combined, when it does not depend on the incident: shared
    by the evaluations that meet the same rules (its items are never changed)."""

    base: tuple[Item, ...]
    options: tuple[tuple[str, tuple[Item, ...]], ...]
    offer_rule: Rule | None
    applied: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TypeRules:
    """The policy's rules, in order, as incidents of one type meet them."""

    steps: tuple[tuple[tuple[RuleTrace, ...], RuleStep], ...]  # each rule to evaluate, after
    # the traces of the rules before it that the type rules out
    tail: tuple[RuleTrace, ...]  # the traces of those ruled out after the last one
    quick: tuple[tuple[str | None, Test | None, RuleStep], ...]  # for evaluations without
    # traces: each rule's group and test
    granted: dict[tuple[int, ...], Granted]  # by the positions of the rules that apply, what
    # they grant when it does not depend on the incident (filled as evaluations find it)


def _type_rules(incident_type: IncidentType, policy: Policy) -> TypeRules:
    steps: list[tuple[tuple[RuleTrace, ...], RuleStep]] = []
    ruled_out: list[RuleTrace] = []
    for rule in policy.rules:
        types = rule.when.type
        if types is not None and incident_type not in types:
            shown = ", ".join(str(t) for t in types)
            ruled_out.append(
                RuleTrace(
                    rule_id=rule.id,
                    matched=False,
                    reason=f"type {incident_type.value} not in {shown}",
                )
            )
            continue
        steps.append((tuple(ruled_out), _step(rule, incident_type, policy)))
        ruled_out = []
    quick = tuple((step.group, step.test, step) for _, step in steps)
    return TypeRules(tuple(steps), tuple(ruled_out), quick, {})


@dataclass(frozen=True, slots=True)
class Trigger:
    """A review trigger: it fires when all it names holds."""

    test: Test | None  # its `when` (None: it has none)
    refund_above: Decimal | None
    total_above: Decimal | None
    reason: str  # with its id


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    policy: Policy
    cent: Decimal
    rules: dict[IncidentType, TypeRules]
    review: tuple[Trigger, ...]
    zero: Money  # the apology's value
    cuttable: frozenset[RemedyKind]  # the kinds a cap cuts
    rules_read_compensation: bool  # a rule has a `compensation_in_window` condition
    caps: dict[str, tuple[Decimal, Money, str]]  # the limit, as Money and in words, of the
    # caps whose limit is known beforehand: the incident cap, and a budget spent
    apology: dict[str, Any]  # the fields of every decision's first action but its key
    experiment: CompiledExperiment | None  # the policy's experiment, if it has one


@dataclass(frozen=True, slots=True)
class CompiledExperiment:
    """An experiment's arms, each with the policy as it applies them, compiled."""

    experiment: Experiment
    arms: tuple[Arm, ...]
    plans: dict[str, CompiledPolicy]  # by arm

    def plan_for(self, customer_id: str) -> tuple[Arm, CompiledPolicy]:
        arm = pick(self.arms, self.experiment.id, customer_id)
        return arm, self.plans[arm.id]


def _experiment(policy: Policy) -> CompiledExperiment | None:
    experiment = policy.experiment
    if experiment is None:
        return None
    rule = next(r for r in policy.rules if r.id == experiment.rule)
    made = arms(experiment, rule)
    return CompiledExperiment(experiment, made,
                              {arm.id: _compile(as_applied(policy, arm)) for arm in made})


def _compile(policy: Policy) -> CompiledPolicy:
    currency, incident_cap = policy.currency, policy.guards.incident_cap
    zero = money(ZERO, currency)
    return CompiledPolicy(
        policy=policy,
        cent=cent(currency),
        rules={t: _type_rules(t, policy) for t in IncidentType},
        review=tuple(
            Trigger(
                None if t.when is None else all_of(tuple(conditions(t.when, currency))),
                t.refund_above,
                t.total_above,
                f"{t.reason} ({t.id})",
            )
            for t in policy.guards.review
        ),
        zero=zero,
        cuttable=frozenset(policy.cut_order),
        rules_read_compensation=any(
            rule.when.compensation_in_window is not None for rule in policy.rules
        ),
        caps={
            "incident": (
                incident_cap,
                money(incident_cap, currency),
                cap_detail("incident", policy, ZERO, incident_cap),
            ),
            "budget": (ZERO, zero, cap_detail("budget", policy, ZERO, ZERO)),
        },
        apology=action_fields(Item(RemedyKind.apology, ZERO, ""), "an apology", zero, None)
        | {"rule_id": None},
        experiment=_experiment(policy),
    )


_COMPILED: dict[int, CompiledPolicy] = {}


def compiled(policy: Policy) -> CompiledPolicy:
    """`policy` compiled, made on first use and kept while the policy is in use."""
    made = _COMPILED.get(id(policy))
    if made is not None and made.policy is policy:
        return made
    if len(_COMPILED) >= 64:
        _COMPILED.clear()
    made = _COMPILED[id(policy)] = _compile(policy)
    return made
