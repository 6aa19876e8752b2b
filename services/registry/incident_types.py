"""One entry per incident type: everything the product needs to know of it, in one place.

An entry names the upstream events that make the incident (intake's handler table is keyed
by them), the pure detectors that make it (intake's stateful ones in
`services/intake/domain/detection.py`; a stateless type's own `Stateless` detector and its
thresholds, beside its entry here), the English words of its harm (the explanation's first
sentence), the facts its message templates show (fulfilment's formatted ones, or the
incident's own fields), and how a backtest generates one (`Generated`: its weight among
generated incidents and its own random draw). Its message per locale is
`services/fulfilment/templates/<locale>/<type>.txt.j2`.
`tests/unit/test_registry.py` fails, naming what is missing, when a type or a part is."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from schemas.common import Money
from schemas.incident import Detection, Incident, IncidentType, Severity, incident_id
from schemas.upstream import ReviewPostedEvent
from services.intake.domain import detection


@dataclass(frozen=True, slots=True)
class Generated:
    """How a backtest generates an incident of the type, after its customer and order value:
    `draw` takes the type's own random numbers (in a fixed order: the same seed gives the same
    incidents), `fields` turns that draw into the incident's own fields, given the order value
    in cents and a way to make Money of cents."""

    weight: int  # among the generated incidents of all types
    detection: Detection
    draw: Callable[[random.Random], int | None]
    fields: Callable[[int | None, int, Callable[[int], Money]], dict[str, Any]]


Detect = Callable[[Any, datetime, Mapping[str, Any]], Incident | None]
"""A stateless detector: an upstream event, now and the type's thresholds in; an incident or
nothing out."""


@dataclass(frozen=True, slots=True)
class Stateless:
    """How intake detects a type from its trigger alone: nothing in intake but this entry is
    needed. `thresholds` are the defaults by name; intake's settings override any of them as
    "<type>.<name>" (`AMENDS_INTAKE_THRESHOLDS`)."""

    detect: Detect
    thresholds: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class IncidentEntry:
    type: IncidentType
    triggers: tuple[str, ...]  # the upstream event types that make it
    detectors: tuple[Callable[..., Any], ...]  # the pure functions of intake that make it
    harm: Callable[[Incident], str]  # "We are sorry: <harm>."
    template_facts: tuple[str, ...]  # the facts of fulfilment's `_facts` only this type
    # has (beyond the order), which its templates show; may be none
    generated: Generated
    # None: detected by one of intake's stateful handlers (state across events: checks,
    # watermarks, captures, outages), which intake's handler table names by trigger
    stateless: Stateless | None = None


OPTIONAL_PARTS = frozenset({"template_facts", "stateless"})


def missing_incident_parts(entries: Mapping[IncidentType, IncidentEntry]) -> list[str]:
    """What the registry lacks, each named by type and part (empty: nothing)."""
    problems = [f"incident type {t.value}: no entry" for t in IncidentType if t not in entries]
    for kind, entry in entries.items():
        for part in fields(IncidentEntry):
            if part.name in OPTIONAL_PARTS:
                continue  # a type may show no facts of its own, or be detected with state
            if getattr(entry, part.name) in (None, (), ""):
                problems.append(f"incident type {kind.value}: no {part.name}")
        if entry.type is not kind:
            problems.append(f"incident type {kind.value}: its entry is for {entry.type.value}")
    return problems


def triggered_by(entries: Mapping[IncidentType, IncidentEntry]
                 ) -> dict[str, list[IncidentEntry]]:
    """The handler table's keys: each upstream event type and the entries it triggers."""
    table: dict[str, list[IncidentEntry]] = {}
    for entry in entries.values():
        for trigger in entry.triggers:
            table.setdefault(trigger, []).append(entry)
    return table


def threshold_names(entries: Mapping[IncidentType, IncidentEntry]) -> dict[str, Any]:
    """Every stateless threshold by its settings name, "<type>.<name>", with its default."""
    return {f"{kind.value}.{name}": default for kind, entry in entries.items()
            if entry.stateless is not None
            for name, default in entry.stateless.thresholds.items()}


def thresholds_of(entry: IncidentEntry, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """An entry's thresholds: its defaults, with the settings' overrides of its own names."""
    assert entry.stateless is not None
    return {name: overrides.get(f"{entry.type.value}.{name}", default)
            for name, default in entry.stateless.thresholds.items()}


def share(cents: int, percent: int) -> int:
    """`percent` of `cents`, rounded to a cent half to even: the same as
    `(Decimal(cents).scaleb(-2) * percent / 100).quantize(Decimal("0.01"))` in the default
    decimal context, in cents."""
    whole, rest = divmod(cents * percent, 100)
    return whole + (rest > 50 or (rest == 50 and whole % 2 == 1))


def _nothing(_rng: random.Random) -> None:
    return None


def _item_share(rng: random.Random) -> int:
    return rng.randrange(10, 100)  # the item's share of the order, in percent


def _minutes(mean: int) -> Callable[[random.Random], int]:
    def draw(rng: random.Random) -> int:
        return int(rng.expovariate(1 / mean))

    return draw


def _field(name: str) -> Callable[[int | None, int, Callable[[int], Money]], dict[str, Any]]:
    return lambda own, _cents, _money: {name: own}


def _item(own: int | None, cents: int, money: Callable[[int], Money]) -> dict[str, Any]:
    assert own is not None
    return {"item_value": money(share(cents, own))}


def _no_fields(_own: int | None, _cents: int, _money: Callable[[int], Money]) -> dict[str, Any]:
    return {}


def _delay_words(i: Incident) -> str:
    if i.delivered_at is not None or i.delay_band is None:
        return f"your delivery was {i.delay_minutes} minutes later than we promised"
    return f"your delivery is already {i.delay_minutes} minutes later than we promised"


def negative_review(event: ReviewPostedEvent, now: datetime,
                    limits: Mapping[str, Any]) -> Incident | None:
    """A public review at or below `max_rating` stars. The incident carries the rating,
    platform and address the messages name, never the review's text (personal data)."""
    data = event.data
    if data.rating > limits["max_rating"]:
        return None
    return Incident(
        incident_id=incident_id(IncidentType.negative_review, data.platform, data.review_id),
        type=IncidentType.negative_review, detection=Detection.proactive,
        severity=Severity.high if data.rating == 1 else Severity.medium,
        customer=data.customer, tenant=event.tenant, occurred_at=data.posted_at,
        detected_at=now, source=event.source, source_event_id=event.id,
        order_id=data.order_id, rating=data.rating, review_platform=data.platform,
        review_url=data.url,
        summary=f"{data.rating}-star review {data.review_id} on {data.platform}"[:500])


def _stars(rng: random.Random) -> int:
    return rng.choice((1, 2))


_ITEM_TRIGGERS = ("order.item_reported",)
# One detector for the three item types (the event says which): intake runs it once.
_ITEM = Stateless(lambda event, now, _limits: detection.item_reported(event, now))
_REPORTED, _PROACTIVE = Detection.customer_reported, Detection.proactive

INCIDENT_TYPES: dict[IncidentType, IncidentEntry] = {
    IncidentType.delivery_delayed: IncidentEntry(
        type=IncidentType.delivery_delayed,
        triggers=("order.placed", "order.delivered"),
        detectors=(detection.run_check, detection.late_delivery),
        harm=_delay_words, template_facts=("delay",),
        generated=Generated(45, _PROACTIVE, _minutes(240), _field("delay_minutes"))),
    IncidentType.item_defective: IncidentEntry(
        type=IncidentType.item_defective, triggers=_ITEM_TRIGGERS,
        detectors=(detection.item_reported,),
        harm=lambda _i: "an item in your order arrived defective", template_facts=(),
        generated=Generated(10, _REPORTED, _item_share, _item), stateless=_ITEM),
    IncidentType.wrong_item: IncidentEntry(
        type=IncidentType.wrong_item, triggers=_ITEM_TRIGGERS,
        detectors=(detection.item_reported,),
        harm=lambda _i: "we sent you the wrong item", template_facts=(),
        generated=Generated(6, _REPORTED, _item_share, _item), stateless=_ITEM),
    IncidentType.item_missing: IncidentEntry(
        type=IncidentType.item_missing, triggers=_ITEM_TRIGGERS,
        detectors=(detection.item_reported,),
        harm=lambda _i: "an item was missing from your order", template_facts=(),
        generated=Generated(6, _REPORTED, _item_share, _item), stateless=_ITEM),
    IncidentType.order_cancelled: IncidentEntry(
        type=IncidentType.order_cancelled, triggers=("order.cancelled",),
        detectors=(detection.merchant_cancellation,),
        harm=lambda _i: "we cancelled your order after you had paid", template_facts=(),
        generated=Generated(5, _PROACTIVE, _nothing, _no_fields)),
    IncidentType.double_charge: IncidentEntry(
        type=IncidentType.double_charge, triggers=("payment.captured",),
        detectors=(detection.double_charge,),
        harm=lambda _i: "we charged you twice for one order", template_facts=("charged",),
        generated=Generated(3, _PROACTIVE, _nothing,
                            lambda _own, cents, money: {"charged_amount": money(cents)})),
    IncidentType.support_wait_exceeded: IncidentEntry(
        type=IncidentType.support_wait_exceeded, triggers=("support.ticket_updated",),
        detectors=(detection.support_ticket,),
        harm=lambda i: f"your request waited {i.wait_minutes} minutes for our first answer",
        template_facts=("wait", "ticket"),
        generated=Generated(15, _PROACTIVE, _minutes(600), _field("wait_minutes"))),
    IncidentType.service_outage: IncidentEntry(
        type=IncidentType.service_outage, triggers=("outage.declared", "outage.resolved"),
        detectors=(detection.outage_incidents, detection.outage_resolved_incidents),
        harm=lambda i: (f"our service was unavailable for {i.outage_minutes} minutes"
                        if i.outage_minutes else "our service was unavailable"),
        template_facts=("outage",),
        generated=Generated(10, _PROACTIVE, _minutes(90), _field("outage_minutes"))),
    IncidentType.negative_review: IncidentEntry(
        type=IncidentType.negative_review, triggers=("review.posted",),
        detectors=(negative_review,),
        harm=lambda i: f"your experience with us earned a {i.rating}-star review, and rightly",
        template_facts=("rating", "review_platform"),
        # weight 0: the golden incidents are drawn as before; a backtest asks for it by name
        generated=Generated(0, _PROACTIVE, _stars,
                            lambda own, _cents, _money: {
                                "rating": own, "review_platform": "trustpilot",
                                "review_url": "https://reviews.example/r"}),
        stateless=Stateless(negative_review, {"max_rating": 2})),
}
