"""The compensation policy as data: a YAML file validated into these models.

The semantics (which rules apply, how remedies combine, how caps cut) are those of
`engine.decide` and are documented with examples in docs/policy.md.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from schemas.common import Currency, Tier
from schemas.decision import RemedyKind
from schemas.incident import Detection, IncidentType, Severity


def _policy_decimal(value: Any) -> Any:
    """Amounts in a policy are written as integers or quoted decimals, never as YAML floats
    (0.1 + 0.2 is not 0.3 in binary, and money must add exactly)."""
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")  # noqa: TRY004 - a field error
    if isinstance(value, float):
        raise ValueError(  # noqa: TRY004 - a field error
            f'write {value!r} in quotes ("{value}"): amounts are decimals, not floats')
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, str):
        try:
            return Decimal(value.strip())
        except ArithmeticError as exc:
            raise ValueError(f"is not a decimal number: {value!r}") from exc
    return value


PolicyDecimal = Annotated[
    Decimal,
    BeforeValidator(_policy_decimal),
    PlainSerializer(lambda d: format(d, "f"), return_type=str, when_used="json"),
    WithJsonSchema({"anyOf": [{"type": "integer"},
                              {"type": "string", "pattern": r"^-?\d+(\.\d+)?$"}]}),
]
Amount = Annotated[PolicyDecimal, Field(ge=0)]


def _share(value: Any) -> Any:
    """A share of customers is a fraction, so a YAML float is fine here: it is read as the
    decimal it was written as (0.45, not the binary fraction nearest it), and shares then add
    up exactly."""
    if isinstance(value, float):
        return Decimal(repr(value))
    return _policy_decimal(value)


Share = Annotated[
    Decimal,
    BeforeValidator(_share),
    Field(ge=0, le=1),
    PlainSerializer(lambda d: format(d, "f"), return_type=str, when_used="json"),
    WithJsonSchema({"anyOf": [{"type": "number", "minimum": 0, "maximum": 1},
                              {"type": "string", "pattern": r"^(0(\.\d+)?|1(\.0+)?)$"}]}),
]
Percent = Annotated[PolicyDecimal, Field(gt=0, le=100)]
RuleId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]


class PolicyModel(BaseModel):
    """Policies are written by people: unknown keys are typos and are refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Range(PolicyModel):
    """A numeric condition: every bound given must hold (`gte: 60, lt: 180`)."""

    gte: PolicyDecimal | None = None
    gt: PolicyDecimal | None = None
    lte: PolicyDecimal | None = None
    lt: PolicyDecimal | None = None

    @model_validator(mode="after")
    def _some_bound(self) -> Self:
        if self.gte is None and self.gt is None and self.lte is None and self.lt is None:
            raise ValueError("give at least one of gte, gt, lte, lt")
        return self

    def failure(self, value: Decimal | int) -> str | None:
        """Why `value` is outside the range, or None when it is inside."""
        if self.gte is not None and value < self.gte:
            return f"{value} < {self.gte}"
        if self.gt is not None and value <= self.gt:
            return f"{value} ≤ {self.gt}"
        if self.lte is not None and value > self.lte:
            return f"{value} > {self.lte}"
        if self.lt is not None and value >= self.lt:
            return f"{value} ≥ {self.lt}"
        return None

    def holds(self, value: Decimal | int) -> bool:
        """Whether `value` is inside the range (`failure` without the words)."""
        return not ((self.gte is not None and value < self.gte)
                    or (self.gt is not None and value <= self.gt)
                    or (self.lte is not None and value > self.lte)
                    or (self.lt is not None and value >= self.lt))

    def __str__(self) -> str:
        parts = [f"{op} {bound}" for op, bound in (("≥", self.gte), (">", self.gt),
                                                    ("≤", self.lte), ("<", self.lt))
                 if bound is not None]
        return " and ".join(parts)


class When(PolicyModel):
    """Conditions of a rule; all given must hold. Lists mean "one of". Money ranges are in
    the policy's currency. The `*_in_window` counts look back `window_days` from now over
    the customer's earlier incidents, plus the current one for `claims_in_window`."""

    type: list[IncidentType] | None = None
    severity: list[Severity] | None = None
    detection: list[Detection] | None = None
    tier: list[Tier] | None = None
    locale: list[str] | None = None
    tenant: list[str] | None = None
    delay_minutes: Range | None = None
    wait_minutes: Range | None = None
    outage_minutes: Range | None = None
    order_value: Range | None = None
    item_value: Range | None = None
    lifetime_value: Range | None = None
    incidents_in_window: Range | None = Field(
        default=None, description="earlier incidents of the customer in the window")
    same_type_in_window: Range | None = Field(
        default=None, description="earlier incidents of the same type in the window")
    claims_in_window: Range | None = Field(
        default=None, description="customer-reported incidents in the window, this one included")
    compensation_in_window: Range | None = Field(
        default=None, description="money equivalent granted to the customer in the window")


class RefundGrant(PolicyModel):
    """A refund: `percent` of the order, the item or the duplicate charge, or a `fixed`
    amount; never more than `max`, nor than what was captured for the order.

    `restitution: true` marks money we took by mistake and give back (a duplicate charge, a
    paid order we cancelled, an item charged and never delivered): it is refunded in full,
    never cut by a cap or the daily budget, nor held for its size; so it must be 100 percent
    of its basis, without `max`. Any other refund is goodwill, like points and vouchers."""

    percent: Percent | None = None
    of: Literal["order", "item", "charge"] = "order"
    fixed: Amount | None = None
    max: Amount | None = None
    restitution: bool = Field(
        default=False, description="money taken by mistake, given back in full: never cut "
        "by caps or budgets nor held for its size (percent: 100, no max)")

    @model_validator(mode="after")
    def _one_basis(self) -> Self:
        if (self.percent is None) == (self.fixed is None):
            raise ValueError("give either percent (with of: order|item|charge) or fixed")
        if self.restitution and (self.percent != 100 or self.max is not None):
            raise ValueError("restitution gives back in full: percent: 100 of the order, the "
                             "item or the charge, without fixed or max")
        return self


class VoucherGrant(PolicyModel):
    """A voucher for the next purchase: an `amount` off, or a `percent` off (valued at
    `percent` of the order, or of the policy's `values.typical_order` without one)."""

    amount: Amount | None = None
    percent: Percent | None = None
    expires_days: int = Field(default=90, ge=1, le=3650)

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        if (self.amount is None) == (self.percent is None):
            raise ValueError("give either amount or percent")
        return self


class FreeDeliveryGrant(PolicyModel):
    orders: int = Field(default=1, ge=1, le=100)


class ReplacementGrant(PolicyModel):
    """A replacement of the item (or the whole order without an item), shipped at once."""

    express: bool = True


class GiftGrant(PolicyModel):
    item: str = Field(min_length=1, max_length=200)
    value: Amount


class PrioritySupportGrant(PolicyModel):
    days: int = Field(default=30, ge=1, le=3650)


class FreeUpgradeGrant(PolicyModel):
    to: str = Field(min_length=1, max_length=200, description="what the customer gets")
    value: Amount


class PersonalCallGrant(PolicyModel):
    within_hours: int = Field(default=24, ge=1, le=168)


class StoreCreditGrant(PolicyModel):
    """Money on the customer's account: an `amount`, or a `percent` of the order (of the
    policy's `values.typical_order` without one)."""

    amount: Amount | None = None
    percent: Percent | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        if (self.amount is None) == (self.percent is None):
            raise ValueError("give either amount or percent")
        return self


class Grant(PolicyModel):
    """One remedy: exactly one key. The apology is not granted by rules: every decision has
    one."""

    refund: RefundGrant | None = None
    points: int | None = Field(default=None, ge=1)
    voucher: VoucherGrant | None = None
    free_delivery: FreeDeliveryGrant | None = None
    replacement: ReplacementGrant | None = None
    gift: GiftGrant | None = None
    priority_support: PrioritySupportGrant | None = None
    free_upgrade: FreeUpgradeGrant | None = None
    personal_call: PersonalCallGrant | None = None
    store_credit: StoreCreditGrant | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        given = [k for k in type(self).model_fields if getattr(self, k) is not None]
        if len(given) != 1:
            kinds = ", ".join(type(self).model_fields)
            raise ValueError(f"a grant names exactly one remedy ({kinds}); got "
                             f"{', '.join(given) or 'none'}")
        return self

    @property
    def kind(self) -> RemedyKind:
        for name in type(self).model_fields:
            if getattr(self, name) is not None:
                return RemedyKind(name)
        raise AssertionError("validated to name one remedy")  # pragma: no cover


class OfferOptionSpec(PolicyModel):
    label: str = Field(min_length=1, max_length=80)
    grant: list[Grant] = Field(min_length=1)


class OfferSpec(PolicyModel):
    """A choice for the customer; `default` (an index) applies after `deadline_hours`."""

    options: list[OfferOptionSpec] = Field(min_length=2, max_length=5)
    default: int = Field(default=0, ge=0)
    deadline_hours: int = Field(default=72, ge=1, le=24 * 60)

    @model_validator(mode="after")
    def _default_exists(self) -> Self:
        if self.default >= len(self.options):
            raise ValueError(f"default is {self.default} but there are only "
                             f"{len(self.options)} options (counted from 0)")
        return self


class Rule(PolicyModel):
    id: RuleId
    description: str = Field(default="", max_length=500)
    group: str | None = Field(
        default=None, description="of the rules sharing a group, only the first match applies")
    extra: bool = Field(default=False,
                        description="an 'exceed expectations' extra, named so in explanations")
    when: When = Field(default_factory=When)
    grant: list[Grant] = Field(default_factory=list)
    offer: OfferSpec | None = None
    because: str = Field(default="", max_length=200,
                         description="the reason in the customer's words, e.g. 'for the delay'")


class Variant(PolicyModel):
    """One arm of an experiment: what the varied rule grants the customers assigned to it."""

    id: RuleId
    share: Share = Field(description="the fraction of customers assigned to this arm")
    grant: list[Grant] = Field(
        default_factory=list, description="replaces the rule's grant (its offer stays)")


class Holdout(PolicyModel):
    """The customers an experiment leaves out, to compare the variants with."""

    share: Share
    gets: Literal["rule", "apology"] = Field(
        default="rule", description="rule: the rule's own remedies (and offer); apology: the "
        "rule grants nothing, so the apology and what other rules grant")


HOLDOUT = "holdout"  # the holdout's arm, as decisions record it


class Experiment(PolicyModel):
    """Variants of one rule's remedies, each given to a share of customers. A customer's arm
    is a hash of the experiment's id and theirs, so it is the same in every decision; a
    decision records it only when the varied rule applied."""

    id: RuleId
    description: str = Field(default="", max_length=500)
    rule: RuleId = Field(description="the rule whose remedies the variants replace")
    variants: list[Variant] = Field(min_length=2)
    holdout: Holdout | None = None
    stopped: bool = Field(
        default=False, description="no one is assigned: the rule grants its own remedies")
    until: AwareDatetime | None = Field(
        default=None, description="stopped from this time on (of the decision, never a clock)")

    @model_validator(mode="after")
    def _arms(self) -> Self:
        ids = [v.id for v in self.variants]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ValueError(f"variant id {', '.join(map(repr, twice))} is used twice")
        if HOLDOUT in ids:
            raise ValueError(f"{HOLDOUT!r} names the holdout; call the variant otherwise")
        total = sum((v.share for v in self.variants), Decimal(0)) + (
            self.holdout.share if self.holdout is not None else Decimal(0))
        if total != 1:
            parts = " + ".join(format(v.share, "f") for v in self.variants) + (
                f" + holdout {self.holdout.share:f}" if self.holdout is not None else "")
            raise ValueError(f"the shares of the variants and the holdout must add up to 1; "
                             f"they add up to {total:f} ({parts})")
        return self

    def running(self, now: datetime) -> bool:
        """Whether customers are assigned at `now` (the decision's time)."""
        return not self.stopped and (self.until is None or now < self.until)


class ReviewTrigger(PolicyModel):
    """Holds a decision for a human when `when` matches (if given) and, if given, the refund
    or the total granted exceeds its threshold. The thresholds count goodwill only: a
    restitution is never held for its size (a trigger with `when` alone, e.g. on frequent
    claims, still holds it)."""

    id: RuleId
    reason: str = Field(min_length=1, max_length=300)
    when: When | None = None
    refund_above: Amount | None = None
    total_above: Amount | None = None

    @model_validator(mode="after")
    def _has_condition(self) -> Self:
        if self.when is None and self.refund_above is None and self.total_above is None:
            raise ValueError("a review trigger needs when, refund_above or total_above")
        return self


class Guards(PolicyModel):
    incident_cap: Amount = Field(description="money equivalent granted for one incident")
    customer_cap: Amount = Field(
        description="money equivalent granted to one customer within window_days")
    daily_budget: Amount = Field(description="money equivalent granted by all decisions a day")
    review: list[ReviewTrigger] = Field(default_factory=list)


class OutageBudget(PolicyModel):
    """The goodwill one outage may grant, all its customers together, apart from the daily
    budget (restitution is never drawn from it): a sum, or so much per affected customer."""

    total: Amount | None = Field(default=None, description="money equivalent for the outage")
    per_customer: Amount | None = Field(
        default=None, description="money equivalent per affected customer")

    @model_validator(mode="after")
    def _one_basis(self) -> Self:
        if (self.total is None) == (self.per_customer is None):
            raise ValueError("give exactly one of total or per_customer")
        return self

    def of(self, affected: int) -> Decimal:
        """The budget of an outage that affected `affected` customers."""
        if self.total is not None:
            return self.total
        assert self.per_customer is not None, "validated: one basis"
        return self.per_customer * affected


class Outages(PolicyModel):
    """An outage's own budget, and how its goodwill is shared when the budget cannot cover
    everyone at the policy's amounts (docs/policy.md, Outages): `even` scales every
    customer's grant by the same factor; `tiers` covers the tiers in `tier_order` in full,
    one after another, and scales the first one it cannot cover. Never first come, first
    served. And how its decisions go out (the abort window's length is a setting)."""

    budget: OutageBudget | None = Field(
        default=None, description="the outage's own budget; without one, an outage's "
        "goodwill draws on the daily budget like any other")
    partial: Literal["even", "tiers"] = "even"
    tier_order: list[Tier] = Field(
        default_factory=lambda: [Tier.platinum, Tier.gold, Tier.silver, Tier.standard],
        description="with partial: tiers, the tiers covered first, in order")
    apology_at_once: bool = Field(
        default=True, description="the apology goes out at once; the remedies wait for the "
        "abort window either way. false: the apology waits too, and names the remedies")

    @model_validator(mode="after")
    def _every_tier_once(self) -> Self:
        if len(set(self.tier_order)) != len(self.tier_order):
            raise ValueError("tier_order: names a tier twice")
        missing = [t.value for t in Tier if t not in self.tier_order]
        if missing:
            raise ValueError(f"tier_order: must list every tier; missing {', '.join(missing)}")
        return self


class Values(PolicyModel):
    """What remedies without an amount are worth, for caps and budgets."""

    point: Amount = Field(description="the money equivalent of one loyalty point")
    free_delivery: Amount = Decimal(0)
    replacement_without_value: Amount = Field(
        default=Decimal(0), description="a replacement when the incident names no value")
    priority_support: Amount = Decimal(0)
    personal_call: Amount = Decimal(0)
    typical_order: Amount = Field(
        default=Decimal(0), description="basis of a percent voucher without an order value")


CUTTABLE: tuple[RemedyKind, ...] = (
    RemedyKind.gift, RemedyKind.free_upgrade, RemedyKind.voucher, RemedyKind.points,
    RemedyKind.free_delivery, RemedyKind.refund, RemedyKind.replacement,
    RemedyKind.store_credit)


class PublicPosts(PolicyModel):
    """The public side of a failure: one status post per outage (and per incident of the other
    types listed), and whether a person approves each before it is published."""

    types: list[IncidentType] = Field(
        default_factory=lambda: [IncidentType.service_outage],
        description="incident types that get a public status post")
    approval: bool = Field(default=False,
                           description="hold every status post for a reviewer's approval")


class Policy(PolicyModel):
    version: str = Field(min_length=1, max_length=64)
    currency: Currency
    description: str = ""
    window_days: int = Field(default=30, ge=1, le=366)
    values: Values
    cut_order: list[RemedyKind] = Field(
        default_factory=lambda: list(CUTTABLE),
        description="which remedies a cap cuts first; divisible ones (refund, points, "
                    "amount vouchers) are reduced, the others dropped whole")
    guards: Guards
    rules: list[Rule] = Field(min_length=1)
    outages: Outages = Field(
        default_factory=Outages, description="an outage's own budget, apart from the daily "
        "budget, how it is shared when it cannot cover everyone, and whether its apology "
        "waits for the abort window (docs/policy.md, Outages)")
    experiment: Experiment | None = Field(
        default=None, description="variants of one rule's remedies for shares of customers "
        "(one experiment at a time; docs/policy.md, Experiments)")
    public: PublicPosts = Field(
        default_factory=PublicPosts,
        description="which incidents get one public status post (docs/policy.md, Public "
        "status posts)")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.id in seen:
                raise ValueError(f"rule id {rule.id!r} is used twice")
            seen.add(rule.id)
        if self.experiment is not None and self.experiment.rule not in seen:
            raise ValueError(f"experiment.rule: the policy has no rule {self.experiment.rule!r}")
        missing = [k.value for k in CUTTABLE if k not in self.cut_order]
        if missing:
            raise ValueError(f"cut_order must list every remedy with a value; missing "
                             f"{', '.join(missing)}")
        return self


class PolicyError(ValueError):
    """A policy file that does not load; `problems` are "line N: field: problem" lines."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: " + "; ".join(problems))


def _line_index(node: yaml.Node, path: tuple[str | int, ...],
                lines: dict[tuple[str | int, ...], int]) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = (*path, str(key.value))
            lines[child] = key.start_mark.line + 1
            _line_index(value, child, lines)
            lines[child] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_index(item, (*path, i), lines)


def _where(loc: tuple[str | int, ...], lines: dict[tuple[str | int, ...], int]) -> str:
    for depth in range(len(loc), -1, -1):
        if loc[:depth] in lines:
            return f"line {lines[loc[:depth]]}"
    return "line ?"


_NAMED = re.compile(r"^([a-z_]+(?:\.[a-z0-9_]+)*): ")


def parse_policy(text: str, origin: str = "<policy>") -> Policy:
    """Validate a policy's YAML text; errors name the line, the field and the problem."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(origin, [f"not valid YAML: {exc}"]) from exc
    if not isinstance(data, dict) or node is None:
        raise PolicyError(origin, ["line 1: the policy must be a mapping (version, currency, "
                                   "values, guards, rules)"])
    lines: dict[tuple[str | int, ...], int] = {}
    _line_index(node, (), lines)
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and
                                                         p.startswith("function-")))
            message = str(error["msg"]).removeprefix("Value error, ")
            named = _NAMED.match(message) if not loc else None
            if named:  # a check across fields that names the one at fault: point at it
                loc = tuple(int(p) if p.isdigit() else p for p in named[1].split("."))
                message = message[named.end():]
            field = ".".join(str(p) for p in loc) or "(policy)"
            problems.append(f"{_where(loc, lines)}: {field}: {message}")
        raise PolicyError(origin, problems) from exc


def load_policy(path: str | Path) -> Policy:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(str(path), [f"cannot read the file: {exc.strerror}"]) from exc
    return parse_policy(text, str(path))


def policy_json_schema() -> dict[str, Any]:
    """The JSON Schema editors use to check and complete policy files."""
    schema = Policy.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Amends compensation policy"
    return schema
