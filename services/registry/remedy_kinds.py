"""One entry per remedy kind: everything the product needs to know of it, in one place.

An entry says which grant of a policy makes the remedy and what it is worth (`make`), how
two grants of it combine (`merge`), how a cap cuts it, whether it can be restitution, its
English words (`describe`) and what fulfilment does with it (`effect`, and a task's words,
hours and priority). Its words per locale live in the templates' `remedy` macro, under the
branch the entry names. The engine and the backtest dispatch through `REMEDY_KINDS`;
`tests/unit/test_registry.py` fails, naming what is missing, when a kind or a part is."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Literal

from pydantic import BaseModel

from schemas.decision import RemedyKind
from schemas.incident import Incident
from services.decision.domain.history import ZERO
from services.decision.domain.policy import (
    FreeDeliveryGrant,
    FreeUpgradeGrant,
    GiftGrant,
    Grant,
    PersonalCallGrant,
    Policy,
    PrioritySupportGrant,
    RefundGrant,
    ReplacementGrant,
    Rule,
    StoreCreditGrant,
    VoucherGrant,
)
from services.decision.domain.remedies import Item, amount_in, cent, rounded

Combines = Literal["adds_up", "most_generous", "once", "once_per_item"]
Cut = Literal["reduced", "reduced_if_amount", "dropped", "never"]
Effect = Literal["message", "refund", "ledger", "voucher", "perk", "task"]
Make = Callable[[Grant, Rule, Policy, Incident], "Item | str"]
"""What a rule's grant gives for an incident: the item (valued), or why it cannot be given."""


@dataclass(frozen=True, slots=True)
class Task:
    """The task for a person that fulfilment creates for the remedy."""

    words: str  # with `{note}`, the action's note
    hours: int  # due after, when the action names no deadline
    priority: Literal["high", "normal"]


@dataclass(frozen=True, slots=True)
class RemedyEntry:
    kind: RemedyKind
    grant: type[BaseModel] | type[int] | None  # the policy's grant model (None: never granted)
    make: Make | None  # None: never granted by a rule (the apology)
    valuation: str  # how its money equivalent is computed, in words
    combines: Combines  # once_per_item: once per gift or upgrade named
    merge: Callable[[Item, Item], None]  # adds the second to the first, as `combines` says
    cut: Cut  # never: outside the default cut_order (a policy listing it drops it whole)
    can_be_restitution: bool
    describe: Callable[[Item, str], str]  # English words, with the policy's currency
    effect: Effect
    task: Task | None  # for the effect "task"
    macro_branch: str | None  # the `remedy` macro's branch in `_remedies.txt.j2` (None: the
    # remedy is the message itself, the apology)


class RegistryError(LookupError):
    """An entry or a part of one is missing."""


def missing_remedy_parts(entries: Mapping[RemedyKind, RemedyEntry]) -> list[str]:
    """What the registry lacks, each named by kind and part (empty: nothing)."""
    problems = [f"remedy kind {kind.value}: no entry" for kind in RemedyKind
                if kind not in entries]
    for kind, entry in entries.items():
        granted = kind is not RemedyKind.apology
        for part in fields(RemedyEntry):
            value = getattr(entry, part.name)
            needed = (granted if part.name in {"grant", "make"}
                      else entry.effect == "task" if part.name == "task"
                      else entry.effect != "message" if part.name == "macro_branch" else True)
            if needed and (value is None or value == ""):
                problems.append(f"remedy kind {kind.value}: no {part.name}")
        if entry.kind is not kind:
            problems.append(f"remedy kind {kind.value}: its entry is for {entry.kind.value}")
    return problems


# --- values: what a grant gives (`make`) ---------------------------------------------------


def _refund(grant: Grant, rule: Rule, policy: Policy, incident: Incident) -> Item | str:
    refund, currency = grant.refund, policy.currency
    assert refund is not None
    unit = cent(currency)
    if refund.percent is not None:
        basis = {
            "item": lambda: amount_in(incident.item_value or incident.order_value, currency),
            "charge": lambda: amount_in(incident.charged_amount, currency),
            "order": lambda: amount_in(incident.order_value, currency),
        }[refund.of]()
        if basis is None:
            return f"refund of {refund.percent}% of the {refund.of}: its value is unknown"
        amount = rounded(basis * refund.percent / 100, unit)
    else:
        amount = refund.fixed or ZERO
    if refund.max is not None:
        amount = min(amount, refund.max)
    amount = rounded(amount, unit)
    return Item(RemedyKind.refund, amount, rule.id, rule.because, amount,
                restitution=refund.restitution)


def _points(grant: Grant, rule: Rule, policy: Policy, _incident: Incident) -> Item:
    assert grant.points is not None
    value = rounded(grant.points * policy.values.point, cent(policy.currency))
    return Item(RemedyKind.points, value, rule.id, rule.because, points=grant.points)


def _voucher(grant: Grant, rule: Rule, policy: Policy, incident: Incident) -> Item:
    voucher, unit = grant.voucher, cent(policy.currency)
    assert voucher is not None
    if voucher.amount is not None:
        amount = rounded(voucher.amount, unit)
        return Item(RemedyKind.voucher, amount, rule.id, rule.because, amount=amount,
                    expires_days=voucher.expires_days)
    share = voucher.percent or ZERO
    basis = amount_in(incident.order_value, policy.currency) or policy.values.typical_order
    return Item(RemedyKind.voucher, rounded(basis * share / 100, unit), rule.id, rule.because,
                percent=share, expires_days=voucher.expires_days)


def _store_credit(grant: Grant, rule: Rule, policy: Policy, incident: Incident) -> Item:
    credit, unit = grant.store_credit, cent(policy.currency)
    assert credit is not None
    if credit.amount is not None:
        amount = rounded(credit.amount, unit)
    else:
        basis = amount_in(incident.order_value, policy.currency) or policy.values.typical_order
        amount = rounded(basis * (credit.percent or ZERO) / 100, unit)
    return Item(RemedyKind.store_credit, amount, rule.id, rule.because, amount=amount)


def _free_delivery(grant: Grant, rule: Rule, policy: Policy, _incident: Incident) -> Item:
    assert grant.free_delivery is not None
    orders = grant.free_delivery.orders
    value = rounded(policy.values.free_delivery * orders, cent(policy.currency))
    return Item(RemedyKind.free_delivery, value, rule.id, rule.because, quantity=orders)


def _replacement(grant: Grant, rule: Rule, policy: Policy, incident: Incident) -> Item:
    assert grant.replacement is not None
    value = (amount_in(incident.item_value or incident.order_value, policy.currency)
             or policy.values.replacement_without_value)
    return Item(RemedyKind.replacement, rounded(value, cent(policy.currency)), rule.id,
                rule.because, label="express" if grant.replacement.express else "")


def _gift(grant: Grant, rule: Rule, policy: Policy, _incident: Incident) -> Item:
    assert grant.gift is not None
    value = rounded(grant.gift.value, cent(policy.currency))
    return Item(RemedyKind.gift, value, rule.id, rule.because, label=grant.gift.item)


def _priority_support(grant: Grant, rule: Rule, policy: Policy, _incident: Incident) -> Item:
    assert grant.priority_support is not None
    value = rounded(policy.values.priority_support, cent(policy.currency))
    return Item(RemedyKind.priority_support, value, rule.id, rule.because,
                quantity=grant.priority_support.days)


def _free_upgrade(grant: Grant, rule: Rule, policy: Policy, _incident: Incident) -> Item:
    assert grant.free_upgrade is not None
    value = rounded(grant.free_upgrade.value, cent(policy.currency))
    return Item(RemedyKind.free_upgrade, value, rule.id, rule.because,
                label=grant.free_upgrade.to)


def _personal_call(grant: Grant, rule: Rule, policy: Policy, _incident: Incident) -> Item:
    assert grant.personal_call is not None
    value = rounded(policy.values.personal_call, cent(policy.currency))
    return Item(RemedyKind.personal_call, value, rule.id, rule.because,
                due_hours=grant.personal_call.within_hours)


# --- combining two grants of one kind (`merge`) ----------------------------------------------


def _add_amount(have: Item, item: Item) -> None:
    have.amount = (have.amount or ZERO) + (item.amount or ZERO)
    have.value = have.amount


def _add_points(have: Item, item: Item) -> None:
    have.points = (have.points or 0) + (item.points or 0)
    have.value += item.value


def _add_voucher(have: Item, item: Item) -> None:
    """Amount vouchers add up; of percent vouchers (combined apart), the largest wins."""
    if have.percent is None:
        _add_amount(have, item)
    elif (item.percent or ZERO) > (have.percent or ZERO):
        have.percent, have.value = item.percent, item.value
    have.expires_days = max(have.expires_days or 0, item.expires_days or 0)


def _add_quantity(have: Item, item: Item) -> None:
    have.quantity = (have.quantity or 0) + (item.quantity or 0)
    have.value += item.value


def _longest(have: Item, item: Item) -> None:
    have.quantity = max(have.quantity or 0, item.quantity or 0)


def _soonest(have: Item, item: Item) -> None:
    have.due_hours = min(have.due_hours or 24, item.due_hours or 24)


def _once(_have: Item, _item: Item) -> None:
    """Given once: the first grant stands."""


# --- words ---------------------------------------------------------------------------------


def _voucher_words(item: Item, currency: str) -> str:
    if item.percent is not None:
        return f"a {item.percent.normalize():f}% voucher valid {item.expires_days} days"
    return f"a {item.amount} {currency} voucher valid {item.expires_days} days"


def _free_delivery_words(item: Item, _currency: str) -> str:
    n = item.quantity or 1
    return ("free delivery on your next order" if n == 1
            else f"free delivery on your next {n} orders")


REMEDY_KINDS: dict[RemedyKind, RemedyEntry] = {
    RemedyKind.apology: RemedyEntry(
        kind=RemedyKind.apology, grant=None, make=None,
        valuation="nothing: every decision has one",
        combines="once", merge=_once, cut="never", can_be_restitution=False,
        describe=lambda _i, _c: "an apology",
        effect="message", task=None, macro_branch=None),
    RemedyKind.refund: RemedyEntry(
        kind=RemedyKind.refund, grant=RefundGrant, make=_refund,
        valuation="its amount: a percent of the order, the item or the charge, or fixed; at "
        "most max",
        combines="adds_up", merge=_add_amount, cut="reduced", can_be_restitution=True,
        describe=lambda i, c: f"a refund of {i.amount} {c}",
        effect="refund", task=None, macro_branch="refund"),
    RemedyKind.points: RemedyEntry(
        kind=RemedyKind.points, grant=int, make=_points,
        valuation="points times values.point",
        combines="adds_up", merge=_add_points, cut="reduced", can_be_restitution=False,
        describe=lambda i, c: f"{i.points} loyalty points (worth {i.value} {c})",
        effect="ledger", task=None, macro_branch="points"),
    RemedyKind.voucher: RemedyEntry(
        kind=RemedyKind.voucher, grant=VoucherGrant, make=_voucher,
        valuation="its amount; a percent voucher: that percent of the order (or "
        "values.typical_order)",
        combines="adds_up", merge=_add_voucher, cut="reduced_if_amount",
        can_be_restitution=False, describe=_voucher_words,
        effect="voucher", task=None, macro_branch="voucher"),
    RemedyKind.free_delivery: RemedyEntry(
        kind=RemedyKind.free_delivery, grant=FreeDeliveryGrant, make=_free_delivery,
        valuation="orders times values.free_delivery",
        combines="adds_up", merge=_add_quantity, cut="dropped", can_be_restitution=False,
        describe=_free_delivery_words,
        effect="perk", task=None, macro_branch="free_delivery"),
    RemedyKind.replacement: RemedyEntry(
        kind=RemedyKind.replacement, grant=ReplacementGrant, make=_replacement,
        valuation="the item's value (else the order's, else "
        "values.replacement_without_value)",
        combines="once", merge=_once, cut="dropped", can_be_restitution=False,
        describe=lambda i, _c: "a replacement sent by express" if i.label else "a replacement",
        effect="task", task=Task("Ship {note} for the affected item, at no charge.", 24, "high"),
        macro_branch="replacement"),
    RemedyKind.gift: RemedyEntry(
        kind=RemedyKind.gift, grant=GiftGrant, make=_gift,
        valuation="the gift's value",
        combines="once_per_item", merge=_once, cut="dropped", can_be_restitution=False,
        describe=lambda i, _c: f"a gift ({i.label})",
        effect="task",
        task=Task("Send the customer {note} with a handwritten thank-you.", 72, "normal"),
        macro_branch="gift"),
    RemedyKind.priority_support: RemedyEntry(
        kind=RemedyKind.priority_support, grant=PrioritySupportGrant, make=_priority_support,
        valuation="values.priority_support",
        combines="most_generous", merge=_longest, cut="never", can_be_restitution=False,
        describe=lambda i, _c: f"priority support for {i.quantity} days",
        effect="task",
        task=Task("Route the customer's requests to the priority queue: {note}.", 1, "normal"),
        macro_branch="priority_support"),
    RemedyKind.free_upgrade: RemedyEntry(
        kind=RemedyKind.free_upgrade, grant=FreeUpgradeGrant, make=_free_upgrade,
        valuation="the upgrade's value",
        combines="once_per_item", merge=_once, cut="dropped", can_be_restitution=False,
        describe=lambda i, _c: f"a free upgrade to {i.label}",
        effect="task", task=Task("Give the customer {note}.", 24, "normal"),
        macro_branch="free_upgrade"),
    RemedyKind.personal_call: RemedyEntry(
        kind=RemedyKind.personal_call, grant=PersonalCallGrant, make=_personal_call,
        valuation="values.personal_call",
        combines="most_generous", merge=_soonest, cut="never", can_be_restitution=False,
        describe=lambda i, _c: f"a call from a manager within {i.due_hours} hours",
        effect="task", task=Task("Call the customer to apologise in person: {note}.", 24, "high"),
        macro_branch="personal_call"),
    RemedyKind.store_credit: RemedyEntry(
        kind=RemedyKind.store_credit, grant=StoreCreditGrant, make=_store_credit,
        valuation="its amount: fixed, or a percent of the order (or values.typical_order)",
        combines="adds_up", merge=_add_amount, cut="reduced", can_be_restitution=False,
        describe=lambda i, c: f"{i.amount} {c} of store credit on your account",
        effect="ledger", task=None, macro_branch="store_credit"),
}
