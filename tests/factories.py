"""Builders of upstream events as the JSON an upstream system would send."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from schemas.common import deterministic_id

if TYPE_CHECKING:
    from schemas.upstream import UpstreamEvent


def customer(customer_id: str, *, tier: str = "standard", locale: str = "en",
             email: str | None = None) -> dict[str, Any]:
    return {"id": customer_id, "tier": tier, "locale": locale,
            "lifetime_value": {"amount": "250.00", "currency": "EUR"},
            "contact": {"email": email or f"{customer_id}@example.org",
                        "preferred_channel": "email"}}


def order_delivered(customer_id: str, order_id: str, *, promised: datetime,
                    delivered: datetime, tier: str = "standard", total: str = "42.00",
                    source: str = "shop/orders") -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": deterministic_id("test-event", "order.delivered", order_id),
        "source": source,
        "type": "order.delivered",
        "time": delivered.isoformat(),
        "subject": customer_id,
        "data": {
            "order_id": order_id,
            "customer": customer(customer_id, tier=tier),
            "delivered_at": delivered.isoformat(),
            "promised_delivery_at": promised.isoformat(),
            "total": {"amount": total, "currency": "EUR"},
        },
    }


def late_and_on_time(run: str, base: datetime, late: int, on_time: int
                     ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """`late` deliveries 30..N minutes late and `on_time` ones, each for its own customer."""
    tiers = ["standard", "silver", "gold", "platinum"]
    late_events = [
        order_delivered(f"{run}-late-{i}", f"{run}-o-late-{i}", promised=base,
                        delivered=base + timedelta(minutes=30 + 97 * i), tier=tiers[i % 4])
        for i in range(late)
    ]
    on_time_events = [
        order_delivered(f"{run}-ok-{i}", f"{run}-o-ok-{i}", promised=base,
                        delivered=base - timedelta(minutes=5 + i), tier=tiers[i % 4])
        for i in range(on_time)
    ]
    return late_events, on_time_events


def incident(incident_type: str = "delivery_delayed", *, customer_id: str = "c-1",
             tier: str = "standard", detection: str = "proactive", severity: str = "medium",
             at: datetime | None = None, fact: str = "o-1", **fields: Any) -> dict[str, Any]:
    """An incident as intake publishes it (the `data` of an amends.incident.detected event)."""
    from schemas.incident import IncidentType, incident_id

    at = at or datetime.fromisoformat("2026-11-23T12:00:00+00:00")
    return {"incident_id": incident_id(IncidentType(incident_type), customer_id, fact),
            "type": incident_type, "detection": detection, "severity": severity,
            "customer": customer(customer_id, tier=tier), "occurred_at": at.isoformat(),
            "detected_at": at.isoformat(), "source": "tests", "order_id": fact, **fields}


def event(event_type: str, data: dict[str, Any], *, subject: str, at: datetime,
          source: str = "shop", tenant: str | None = None,
          event_id: str | None = None) -> dict[str, Any]:
    """An upstream CloudEvent around `data`; its id is derived from the data unless given."""
    body = {"specversion": "1.0",
            "id": event_id or deterministic_id("test-event", event_type, repr(sorted(
                (k, str(v)) for k, v in data.items()))),
            "source": source, "type": event_type, "time": at.isoformat(), "subject": subject,
            "data": data}
    if tenant is not None:
        body["tenant"] = tenant
    return body


def eur(amount: str) -> dict[str, str]:
    return {"amount": amount, "currency": "EUR"}


def order_placed(customer_id: str, order_id: str, *, at: datetime,
                 promised: datetime | None, total: str = "42.00",
                 **options: Any) -> dict[str, Any]:
    data = {"order_id": order_id, "customer": customer(customer_id), "placed_at": at.isoformat(),
            "total": eur(total),
            "promised_delivery_at": promised.isoformat() if promised else None}
    return event("order.placed", data, subject=customer_id, at=at, **options)


def delivered(customer_id: str, order_id: str, *, at: datetime,
              promised: datetime | None = None, total: str | None = "42.00",
              **options: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"order_id": order_id, "customer": customer(customer_id),
                            "delivered_at": at.isoformat()}
    if promised is not None:
        data["promised_delivery_at"] = promised.isoformat()
    if total is not None:
        data["total"] = eur(total)
    return event("order.delivered", data, subject=customer_id, at=at, **options)


def order_cancelled(customer_id: str, order_id: str, *, at: datetime, by: str = "merchant",
                    paid: bool = True, total: str = "42.00", **options: Any) -> dict[str, Any]:
    data = {"order_id": order_id, "customer": customer(customer_id),
            "cancelled_at": at.isoformat(), "cancelled_by": by, "paid": paid,
            "total": eur(total)}
    return event("order.cancelled", data, subject=customer_id, at=at, **options)


def item_reported(customer_id: str, order_id: str, *, at: datetime, problem: str = "defective",
                  sku: str = "sku-1", price: str = "19.99", quantity: int = 1,
                  **options: Any) -> dict[str, Any]:
    data = {"order_id": order_id, "customer": customer(customer_id),
            "reported_at": at.isoformat(), "problem": problem,
            "item": {"sku": sku, "name": "a thing", "quantity": quantity, "price": eur(price)},
            "order_total": eur("80.00")}
    return event("order.item_reported", data, subject=customer_id, at=at, **options)


def payment_captured(customer_id: str, order_id: str, payment_id: str, *, at: datetime,
                     amount: str = "42.00", **options: Any) -> dict[str, Any]:
    data = {"payment_id": payment_id, "order_id": order_id, "customer": customer(customer_id),
            "amount": eur(amount), "captured_at": at.isoformat()}
    return event("payment.captured", data, subject=customer_id, at=at, **options)


def ticket_updated(customer_id: str, ticket_id: str, *, opened: datetime, at: datetime,
                   status: str = "open", first_response: datetime | None = None,
                   **options: Any) -> dict[str, Any]:
    data = {"ticket_id": ticket_id, "customer": customer(customer_id), "status": status,
            "opened_at": opened.isoformat(), "updated_at": at.isoformat(),
            "first_response_at": first_response.isoformat() if first_response else None}
    return event("support.ticket_updated", data, subject=customer_id, at=at, **options)


def outage_declared(outage_id: str, *, at: datetime, customers: list[str] | None = None,
                    seen_within_hours: int | None = None, severity: str = "major",
                    **options: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"outage_id": outage_id, "service": "checkout",
                            "severity": severity, "started_at": at.isoformat()}
    if customers is not None:
        data["affected_customers"] = [customer(c) for c in customers]
    if seen_within_hours is not None:
        data["segment"] = {"seen_within_hours": seen_within_hours}
    return event("outage.declared", data, subject=outage_id, at=at, **options)


def outage_resolved(outage_id: str, *, at: datetime, **options: Any) -> dict[str, Any]:
    data = {"outage_id": outage_id, "resolved_at": at.isoformat()}
    return event("outage.resolved", data, subject=outage_id, at=at, **options)


def with_contact(body: dict[str, Any], *, email: str, phone: str) -> dict[str, Any]:
    """`body` with this email and phone in every customer snapshot it carries."""
    data = body["data"]
    for snapshot in [data.get("customer"), *(data.get("affected_customers") or [])]:
        if isinstance(snapshot, dict):
            snapshot["contact"] = {"email": email, "phone": phone, "preferred_channel": "sms"}
    return body


def events_with_contact(customer_id: str, outage_id: str, *, at: datetime, email: str,
                        phone: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Events of every kind carrying a customer's email and phone (`at` to three hours
    later), and a broken one that is dead-lettered with them: what privacy tests feed in."""
    events = [with_contact(e, email=email, phone=phone) for e in (
        order_placed(customer_id, "o-1", at=at, promised=at),
        delivered(customer_id, "o-1", at=at + timedelta(hours=3), promised=at),
        item_reported(customer_id, "o-1", at=at),
        payment_captured(customer_id, "o-1", "p-1", at=at),
        payment_captured(customer_id, "o-1", "p-2", at=at),
        ticket_updated(customer_id, "t-1", opened=at - timedelta(days=1), at=at),
        outage_declared(outage_id, at=at, customers=[customer_id]),
    )]
    broken = with_contact(delivered(customer_id, "o-9", at=at), email=email, phone=phone)
    broken["data"]["delivered_at"] = "yesterday"
    return events, broken


def outage_of_75_minutes(outage_id: str, customers: list[str], *, at: datetime
                         ) -> tuple[UpstreamEvent, UpstreamEvent]:
    """An outage declared at `at` for `customers`, and its resolution 75 minutes later, parsed
    as intake's consumer parses them."""
    from schemas.upstream import upstream_event_adapter

    return (upstream_event_adapter.validate_python(
                outage_declared(outage_id, at=at, customers=customers)),
            upstream_event_adapter.validate_python(
                outage_resolved(outage_id, at=at + timedelta(minutes=75))))


@dataclass(frozen=True)
class EveryRule:
    """Upstream events that trip every detection rule once (and some that must not), by
    topic, with the incidents they give: one scenario for the component and the
    integration layers."""

    payments: list[dict[str, Any]]
    orders: list[dict[str, Any]]
    support: list[dict[str, Any]]
    outages: list[dict[str, Any]]
    expected: Counter[str]

    def check(self, incidents: list[dict[str, Any]]) -> None:
        """Assert that `incidents` are what these events give, field by field."""
        from schemas.incident import IncidentType, incident_id

        assert Counter(i["type"] for i in incidents) == self.expected
        by_type = {i["type"]: i for i in incidents}
        late = by_type["delivery_delayed"]
        assert (late["delay_band"], late["delay_minutes"]) == ("late_2h", 300)
        assert late["delivered_at"] is not None
        assert late["incident_id"] == incident_id(IncidentType.delivery_delayed, "o-late",
                                                  "late_2h")
        assert {i["order_id"] for i in incidents if i["type"] == "order_cancelled"} == {
            "o-cancel", "o-captured"}
        assert by_type["double_charge"]["charged_amount"] == eur("42.00")
        assert by_type["support_wait_exceeded"]["wait_minutes"] == 500
        detection = {i["type"]: i["detection"] for i in incidents}
        assert detection["item_defective"] == "customer_reported"
        assert {detection[t] for t in self.expected
                if not t.startswith(("item", "wrong"))} == {"proactive"}


def every_rule(c: str, outage_id: str, at: datetime) -> EveryRule:
    """The events of customers `{c}1`...`{c}12` around `at`, to be read ten minutes after
    it; the outage `outage_id`, of 75 minutes, touches `{c}11` and `{c}12`."""
    def minutes(n: float) -> timedelta:
        return timedelta(minutes=n)

    return EveryRule(
        payments=[
            payment_captured(f"{c}5", "o-captured", "p-5", at=at),
            payment_captured(f"{c}7", "o-twice", "p-1", at=at),
            payment_captured(f"{c}7", "o-twice", "p-2", at=at + minutes(1)),
            payment_captured(f"{c}8", "o-once", "p-3", at=at),
        ],
        orders=[
            delivered(f"{c}1", "o-late", at=at + minutes(300), promised=at),   # late_2h
            delivered(f"{c}2", "o-ok", at=at + minutes(5), promised=at),        # in the grace
            order_cancelled(f"{c}3", "o-cancel", at=at),                        # merchant, paid
            order_cancelled(f"{c}4", "o-mine", at=at, by="customer"),           # the customer's
            order_cancelled(f"{c}5", "o-captured", at=at + minutes(9), paid=False),
            item_reported(f"{c}6", "o-items", at=at, problem="defective", sku="a"),
            item_reported(f"{c}6", "o-items", at=at, problem="wrong_item", sku="b"),
            item_reported(f"{c}6", "o-items", at=at, problem="missing", sku="c"),
        ],
        support=[
            ticket_updated(f"{c}9", "t-late", opened=at - minutes(600), at=at,
                           status="answered", first_response=at - minutes(100)),
            ticket_updated(f"{c}10", "t-ok", opened=at - minutes(60), at=at,
                           status="answered", first_response=at - minutes(30)),
        ],
        outages=[
            outage_declared(outage_id, at=at - minutes(90),
                            customers=[f"{c}11", f"{c}12", f"{c}11"]),
            outage_resolved(outage_id, at=at - minutes(15)),
        ],
        expected=Counter({"delivery_delayed": 1, "order_cancelled": 2, "item_defective": 1,
                          "wrong_item": 1, "item_missing": 1, "double_charge": 1,
                          "support_wait_exceeded": 1, "service_outage": 2}))


@dataclass(frozen=True)
class DoubleCharges:
    """Captures that are double charges (the same amount twice, more than the order's total)
    and ones that are not (split shipments, partial captures within the total,
    re-authorisations), then a merchant's cancellation of the order captured above its total."""

    placed: list[dict[str, Any]]
    captures: list[dict[str, Any]]
    cancelled: list[dict[str, Any]]

    @staticmethod
    def check(found: list[dict[str, Any]]) -> None:
        """Assert that `found` are the three incidents these events give, with what each
        took too much and what was captured."""
        from schemas.incident import IncidentType, incident_id

        by_order = {(i["order_id"], i["type"]): i for i in found}
        assert len(found) == 3
        assert set(by_order) == {("o-twice", "double_charge"), ("o-above", "double_charge"),
                                 ("o-above", "order_cancelled")}
        twice = by_order["o-twice", "double_charge"]
        assert (twice["charged_amount"], twice["captured_amount"]) == (eur("42.00"),
                                                                       eur("84.00"))
        assert twice["incident_id"] == incident_id(IncidentType.double_charge, "o-twice",
                                                   "p-t2")
        above = by_order["o-above", "double_charge"]
        assert (above["charged_amount"], above["captured_amount"]) == (eur("18.00"),
                                                                       eur("60.00"))
        assert above["order_value"] == eur("42.00")
        assert by_order["o-above", "order_cancelled"]["captured_amount"] == eur("60.00")


def double_charges(c: str, at: datetime) -> DoubleCharges:
    """The scenario for customer `c`, everything captured at `at`."""
    def capture(order: str, payment: str, amount: str, **data: Any) -> dict[str, Any]:
        body = payment_captured(c, order, payment, at=at, amount=amount)
        body["data"].update(data)
        return body

    return DoubleCharges(
        placed=[order_placed(c, "o-split", at=at, promised=None, total="42.00"),
                order_placed(c, "o-above", at=at, promised=None, total="42.00")],
        captures=[
            capture("o-split", "p-s1", "21.00"), capture("o-split", "p-s2", "21.00"),
            capture("o-partial", "p-p1", "20.00", order_total=eur("42.00")),
            capture("o-partial", "p-p2", "22.00", order_total=eur("42.00")),
            capture("o-reauth", "p-r1", "42.00"),
            capture("o-reauth", "p-r2", "42.00", replaces_payment_id="p-r1"),
            capture("o-twice", "p-t1", "42.00"), capture("o-twice", "p-t2", "42.00"),
            capture("o-above", "p-a1", "30.00"), capture("o-above", "p-a2", "30.00"),
        ],
        cancelled=[order_cancelled(c, "o-above", at=at + timedelta(minutes=5), paid=False)])
