"""Remedies being decided (`Item`): made from a policy's grants, combined, and put in words.

Grants whose remedy does not depend on the incident (points, an amount voucher, free
delivery, a gift, ...) are made once per policy, with their words and money (`Dressed`): such
a template is shared by every evaluation and never changed; `Item.copy()` gives one that may
be. `built` makes contract models from values the engine typed itself, without validation."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

from pydantic import BaseModel

from schemas.common import Money
from schemas.decision import RemedyKind
from schemas.incident import Incident
from services.decision.domain import remedies
from services.decision.domain.history import ZERO
from services.decision.domain.policy import Grant, Policy, Rule
from services.decision.domain.remedies import amount_in, cent, rounded
from services.registry.remedy_kinds import REMEDY_KINDS

M = TypeVar("M", bound=BaseModel)
_REFUND, _POINTS, _VOUCHER = RemedyKind.refund, RemedyKind.points, RemedyKind.voucher
_REPLACEMENT = RemedyKind.replacement
# Reduced by a cap, as each kind's registry entry says (amount vouchers apart, below).
DIVISIBLE = frozenset(k for k, e in REMEDY_KINDS.items() if e.cut == "reduced")
_new = object.__new__
_FIELDS: dict[type[BaseModel], set[str]] = {}


def _slot_setter(name: str) -> Callable[[BaseModel, Any], None]:
    """A setter of one of `BaseModel`'s own slots, as `model_construct` sets them with
    `object.__setattr__` (the models are frozen), through the slot's descriptor: faster."""
    descriptor = BaseModel.__dict__.get(name)
    if descriptor is None:  # pragma: no cover - another layout of pydantic's models
        return lambda model, value: object.__setattr__(model, name, value)
    setter: Callable[[BaseModel, Any], None] = descriptor.__set__
    return setter


_set_dict = _slot_setter("__dict__")
_set_fields_set = _slot_setter("__pydantic_fields_set__")
_set_extra = _slot_setter("__pydantic_extra__")
_set_private = _slot_setter("__pydantic_private__")


def built(cls: type[M], **fields: Any) -> M:
    """An instance of a contract model from values the engine built and typed itself: the
    hot path skips re-validation (`model_construct` without its per-field bookkeeping).
    Every field must be given, in the order of the model (its JSON follows that order)."""
    # `built_from`'s body, without a second call: this is the engine's most frequent call.
    names = _FIELDS.get(cls)
    if names is None or len(fields) != len(names):
        return built_from(cls, fields)  # the first of its class, or a field missing
    model = _new(cls)
    _set_dict(model, fields)
    _set_fields_set(model, names)
    _set_extra(model, None)
    _set_private(model, None)
    return model


def built_from(cls: type[M], fields: dict[str, Any]) -> M:
    """`built` from a dict of every field, which becomes the instance's own. The instances
    of a class share the set of the names of the fields set: the models are frozen, and
    pydantic copies that set before it changes one."""
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = set(cls.model_fields)
    if len(fields) != len(names):
        missing = ", ".join(sorted(names - set(fields)))
        raise TypeError(f"{cls.__name__}: every field must be given; missing {missing}")
    model = _new(cls)
    _set_dict(model, fields)
    _set_fields_set(model, names)
    _set_extra(model, None)
    _set_private(model, None)
    return model


def money(amount: Decimal, currency: str) -> Money:
    return built(Money, amount=amount, currency=currency)


@dataclass(frozen=True, slots=True)
class Dressed:
    """What an `Action` shows of a shared item (a policy's template, or a sum of templates
    kept by the engine): made once."""

    note: str
    value: Money
    amount: Money | None
    action: dict[str, Any]  # the action's fields (`action_fields`): copied, never changed


def action_fields(item: Item, note: str, value: Money, amount: Money | None) -> dict[str, Any]:
    """The fields of an `Action` for `item`, in the model's order; its position and key, and
    the times that depend on the decision's, are left for the decision to set."""
    return {
        "position": 0,
        "idempotency_key": "",
        "kind": item.kind,
        "amount": amount,
        "percent": item.percent,
        "points": item.points,
        "expires_at": None,
        "value": value,
        "note": note,
        "rule_id": item.rule_id,
        "quantity": item.quantity,
        "due_by": None,
        "restitution": item.restitution,
    }


@dataclass(slots=True)
class Item(remedies.Item):
    """The domain's `Item`, which may be shared: `dressed` is set when it is (a policy's
    template, or a sum of templates kept by the engine), and then it is never changed."""

    dressed: Dressed | None = None

    @property
    def divisible(self) -> bool:
        return self.kind in DIVISIBLE or (self.kind is _VOUCHER and self.amount is not None)


def total(items: Iterable[Item]) -> Decimal:
    value = ZERO
    for item in items:
        value += item.value
    return value


def goodwill(items: Iterable[Item]) -> Decimal:
    """What `items` are worth as goodwill: caps, budgets and size-based review count this."""
    value = ZERO
    for item in items:
        if not item.restitution:
            value += item.value
    return value


def restitution(items: Iterable[Item]) -> Decimal:
    """What `items` give back as restitution."""
    value = ZERO
    for item in items:
        if item.restitution:
            value += item.value
    return value


# --- making items from grants ---------------------------------------------------------

Make = Callable[[Incident], "Item | str"]
"""A grant whose remedy depends on the incident: the item, or why it cannot be given."""


def grant_maker(grant: Grant, rule: Rule, policy: Policy) -> Item | Make:
    """What `grant` of `rule` gives: a template when that does not depend on the incident,
    else a function of the incident."""
    unit = cent(policy.currency)
    made = _fixed_item(grant, rule, policy)
    if made is None:
        return _incident_maker(grant, rule, policy, unit)
    made.value = rounded(made.value, unit)
    if made.amount is not None:
        made.amount = rounded(made.amount, unit)
    made.dressed = dressed(made, policy.currency)
    return made


def dressed(item: Item, currency: str) -> Dressed:
    """The words and money of a remedy that is shared from now on."""
    note, value = describe(item, currency), money(item.value, currency)
    amount = None if item.amount is None else money(item.amount, currency)
    return Dressed(note, value, amount, action_fields(item, note, value, amount))


def _fixed_item(grant: Grant, rule: Rule, policy: Policy) -> Item | None:
    values, rule_id, because = policy.values, rule.id, rule.because
    unit = cent(policy.currency)
    if grant.points is not None:
        return Item(
            RemedyKind.points,
            rounded(grant.points * values.point, unit),
            rule_id,
            because,
            points=grant.points,
        )
    voucher = grant.voucher
    if voucher is not None and voucher.amount is not None:
        return Item(
            RemedyKind.voucher,
            voucher.amount,
            rule_id,
            because,
            amount=voucher.amount,
            expires_days=voucher.expires_days,
        )
    if grant.free_delivery is not None:
        orders = grant.free_delivery.orders
        return Item(
            RemedyKind.free_delivery,
            values.free_delivery * orders,
            rule_id,
            because,
            quantity=orders,
        )
    if grant.gift is not None:
        return Item(RemedyKind.gift, grant.gift.value, rule_id, because, label=grant.gift.item)
    if grant.priority_support is not None:
        return Item(
            RemedyKind.priority_support,
            values.priority_support,
            rule_id,
            because,
            quantity=grant.priority_support.days,
        )
    if grant.free_upgrade is not None:
        return Item(
            RemedyKind.free_upgrade,
            grant.free_upgrade.value,
            rule_id,
            because,
            label=grant.free_upgrade.to,
        )
    if grant.personal_call is not None:
        return Item(
            RemedyKind.personal_call,
            values.personal_call,
            rule_id,
            because,
            due_hours=grant.personal_call.within_hours,
        )
    return None  # a refund, a percent voucher or a replacement


def _incident_maker(grant: Grant, rule: Rule, policy: Policy, unit: Decimal) -> Make:
    values, currency, rule_id, because = policy.values, policy.currency, rule.id, rule.because
    if grant.refund is not None:
        refund = grant.refund
        percent, of, ceiling = refund.percent, refund.of, refund.max
        fixed, owed = refund.fixed or ZERO, refund.restitution

        def make_refund(incident: Incident) -> Item | str:
            if percent is not None:
                if of == "item":
                    basis = amount_in(incident.item_value or incident.order_value, currency)
                elif of == "charge":
                    basis = amount_in(incident.charged_amount, currency)
                else:
                    basis = amount_in(incident.order_value, currency)
                if basis is None:
                    return f"refund of {percent}% of the {of}: its value is unknown"
                amount = rounded(basis * percent / 100, unit)
            else:
                amount = fixed
            if ceiling is not None:
                amount = min(amount, ceiling)
            amount = rounded(amount, unit)
            return Item(_REFUND, amount, rule_id, because, amount, restitution=owed)

        return make_refund
    if grant.voucher is not None:
        voucher = grant.voucher
        share, expires = voucher.percent or ZERO, voucher.expires_days

        def make_voucher(incident: Incident) -> Item | str:
            basis = amount_in(incident.order_value, currency) or values.typical_order
            value = rounded(basis * share / 100, unit)
            return Item(_VOUCHER, value, rule_id, because, None, share, None, expires)

        return make_voucher
    if grant.replacement is None:
        return _registry_maker(grant, rule, policy)
    label = "express" if grant.replacement.express else ""

    def make_replacement(incident: Incident) -> Item | str:
        value = (
            amount_in(incident.item_value or incident.order_value, currency)
            or values.replacement_without_value
        )
        return Item(_REPLACEMENT, rounded(value, unit), rule_id, because, label=label)

    return make_replacement


# --- words ------------------------------------------------------------------------------


def describe(item: Item, currency: str) -> str:
    """A remedy in plain words (its kind's entry says them)."""
    return REMEDY_KINDS[item.kind].describe(item, currency)


def _registry_maker(grant: Grant, rule: Rule, policy: Policy) -> Make:
    """A kind the fast path has no shortcut for is made as the reference makes it, by its
    registry entry: a new remedy kind needs nothing here."""
    make = REMEDY_KINDS[grant.kind].make
    assert make is not None, f"remedy kind {grant.kind.value} is never granted"

    def make_item(incident: Incident) -> Item | str:
        made = make(grant, rule, policy, incident)
        if isinstance(made, str):
            return made
        return Item(made.kind, made.value, made.rule_id, made.because, made.amount,
                    made.percent, made.points, made.expires_days, made.quantity,
                    made.due_hours, made.label, made.restitution)

    return make_item
