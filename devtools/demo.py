"""A short scenario played through the running services: one customer per kind of failure
(and two who are fine), an outage that hits three more; then what happened to each, read
through fulfilment's operator API (`GET /v1/customers/{id}/case`, as `amends case` reads it)
with the local stack's dev key."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import httpx
from aiokafka import AIOKafkaProducer

from schemas import topics
from schemas.common import deterministic_id

Event = dict[str, Any]
Story = Callable[["Scene"], list[tuple[str, Event]]]


@dataclass(frozen=True)
class Scene:
    run: str
    now: datetime

    def customer(self, name: str, tier: str, locale: str = "en") -> dict[str, Any]:
        return {"id": f"{name}-{self.run}", "tier": tier, "locale": locale,
                "lifetime_value": {"amount": "640.00", "currency": "EUR"},
                "contact": {"email": f"{name}@example.org"}}

    def event(self, kind: str, subject: str, data: dict[str, Any], n: int = 0) -> Event:
        return {"specversion": "1.0", "id": deterministic_id("demo", self.run, kind, subject,
                                                             str(n)),
                "source": "demo/shop", "type": kind, "time": self.now.isoformat(),
                "subject": subject, "data": data}

    def ago(self, minutes: int) -> str:
        return (self.now - timedelta(minutes=minutes)).isoformat()


EUR = "EUR"


def _money(amount: str) -> dict[str, str]:
    return {"amount": amount, "currency": EUR}


def _delivered(name: str, tier: str, late: int) -> Story:
    def story(s: Scene) -> list[tuple[str, Event]]:
        who = s.customer(name, tier)
        return [(topics.ORDERS, s.event("order.delivered", who["id"], {
            "order_id": f"ord-{name}-{s.run}", "customer": who,
            "promised_delivery_at": s.ago(late + 1), "delivered_at": s.ago(1),
            "total": _money("48.90")}))]
    return story


def _on_its_way(name: str, tier: str, late: int) -> Story:
    """The proactive path: an order placed with a promise that has passed, and no delivery;
    intake's check fires on the stream's own time and the apology says it is on its way."""
    def story(s: Scene) -> list[tuple[str, Event]]:
        who = s.customer(name, tier)
        return [(topics.ORDERS, s.event("order.placed", who["id"], {
            "order_id": f"ord-{name}-{s.run}", "customer": who, "placed_at": s.ago(late + 90),
            "promised_delivery_at": s.ago(late), "total": _money("27.40")}))]
    return story


def _charged_twice(s: Scene) -> list[tuple[str, Event]]:
    who = s.customer("dmitri", "silver")
    return [(topics.PAYMENTS, s.event("payment.captured", who["id"], {
        "payment_id": f"pay-{n}-{s.run}", "order_id": f"ord-dmitri-{s.run}", "customer": who,
        "amount": _money("129.00"), "captured_at": s.ago(30 - n)}, n)) for n in (1, 2)]


def _broken_item(s: Scene) -> list[tuple[str, Event]]:
    who = s.customer("elena", "standard", "ro")
    return [(topics.ORDERS, s.event("order.item_reported", who["id"], {
        "order_id": f"ord-elena-{s.run}", "customer": who, "reported_at": s.ago(2),
        "problem": "defective", "order_total": _money("89.00"),
        "item": {"sku": "KTL-2", "name": "kettle", "price": _money("59.00")}}))]


def _cancelled(s: Scene) -> list[tuple[str, Event]]:
    who = s.customer("farid", "standard")
    return [(topics.ORDERS, s.event("order.cancelled", who["id"], {
        "order_id": f"ord-farid-{s.run}", "customer": who, "cancelled_at": s.ago(3),
        "cancelled_by": "merchant", "paid": True, "total": _money("35.00"),
        "reason": "out of stock"}))]


def _ignored(s: Scene) -> list[tuple[str, Event]]:
    who = s.customer("greta", "gold", "ru")
    return [(topics.SUPPORT, s.event("support.ticket_updated", who["id"], {
        "ticket_id": f"t-greta-{s.run}", "customer": who, "status": "answered",
        "opened_at": s.ago(420), "updated_at": s.ago(5), "first_response_at": s.ago(5)}))]


OUTAGE_VICTIMS = (("hugo", "silver"), ("ines", "platinum"), ("jonas", "standard"))


def _outage(s: Scene) -> list[tuple[str, Event]]:
    outage = f"out-{s.run}"
    declared = s.event("outage.declared", outage, {
        "outage_id": outage, "service": "checkout", "severity": "major",
        "started_at": s.ago(80), "description": "payments failed at checkout",
        "affected_customers": [s.customer(n, t) for n, t in OUTAGE_VICTIMS]})
    resolved = s.event("outage.resolved", outage, {"outage_id": outage,
                                                   "resolved_at": s.ago(5)})
    return [(topics.OUTAGES, declared), (topics.OUTAGES, resolved)]


# (customer, tier, what happened to them, the events that tell Amends)
SCENARIO: tuple[tuple[str, str, str, Story], ...] = (
    ("ana", "gold", "delivered 95 minutes late", _delivered("ana", "gold", 95)),
    ("boris", "standard", "delivered on time", _delivered("boris", "standard", -20)),
    ("chloe", "platinum", "delivered 26 hours late", _delivered("chloe", "platinum", 1560)),
    ("dmitri", "silver", "charged twice for one order", _charged_twice),
    ("elena", "standard", "the kettle arrived broken", _broken_item),
    ("farid", "standard", "paid order cancelled by the shop", _cancelled),
    ("greta", "gold", "waited 7 hours for support", _ignored),
    ("hugo", "silver", "checkout outage, 75 minutes", _outage),
    ("ines", "platinum", "checkout outage, 75 minutes", lambda _: []),
    ("jonas", "standard", "checkout outage, 75 minutes", lambda _: []),
    ("karl", "silver", "delivered early", _delivered("karl", "silver", -60)),
    ("lena", "standard", "45 minutes late, still on its way", _on_its_way("lena", "standard", 45)),
)
# Those who were fine: they must get nothing.
FINE = frozenset({"boris", "karl"})


@dataclass(frozen=True)
class Row:
    customer: str
    tier: str
    story: str
    incident: str
    decision: str
    remedies: str
    apology: str
    event_to_apology_ms: float | None
    decision_id: str | None = None
    offer_open: bool = False


async def play(kafka_bootstrap: str, fulfilment: httpx.AsyncClient, *,
               topics_as: Mapping[str, str] | None = None, timeout_s: float = 60.0
               ) -> list[Row]:
    """Send the scenario's events (to `topics_as[topic]` where given), wait until every
    customer let down has a message, and return a row per customer. `fulfilment` is a client
    of fulfilment's operator API that sends an operator's credentials."""
    now = datetime.now(UTC)
    scene = Scene(now.strftime("%H%M%S"), now)
    sends = [item for *_, story in SCENARIO for item in story(scene)]
    rename = topics_as or {}
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        sent_at = time.time()
        for topic, event in sends:
            await producer.send(rename.get(topic, topic), json.dumps(event).encode(),
                                key=event["subject"].encode())
        await producer.flush()
    finally:
        await producer.stop()

    customers = [scene.customer(name, tier)["id"] for name, tier, *_ in SCENARIO]
    let_down = [c for c, (name, *_) in zip(customers, SCENARIO, strict=True)
                if name not in FINE]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        cases = [await _case(fulfilment, c) for c in let_down]
        if all(case["messages"] for case in cases):
            break
        await asyncio.sleep(0.5)
    await asyncio.sleep(0.5)  # let the last outcomes land
    return [row(customer, tier, story, await _case(fulfilment, customer), sent_at)
            for customer, (_, tier, story, _) in zip(customers, SCENARIO, strict=True)]


async def play_on_stack(kafka_bootstrap: str, fulfilment_url: str, token: str) -> list[Row]:
    """The demo on the local stack, read back with its dev key."""
    async with httpx.AsyncClient(base_url=fulfilment_url, timeout=15,
                                 headers={"Authorization": f"Bearer {token}"}) as fulfilment:
        return await play(kafka_bootstrap, fulfilment)


async def _case(api: httpx.AsyncClient, customer: str) -> dict[str, Any]:
    response = await api.get(f"/v1/customers/{quote(customer, safe='')}/case")
    response.raise_for_status()
    case: dict[str, Any] = response.json()
    return case


def _remedy(action: dict[str, Any]) -> str | None:
    kind = action["kind"]
    money = action.get("amount")
    amount = f"{Decimal(money['amount']):.2f} {money['currency']}" if money else ""
    match kind:
        case "apology":
            return None
        case "points":
            return f"{action['points']} points"
        case "refund" | "voucher" | "gift":
            percent = action.get("percent") or "0"
            return f"{kind} {amount or f'{Decimal(percent):g}%'}"
        case "free_delivery":
            return f"free delivery x{action.get('quantity') or 1}"
        case _:
            return str(kind).replace("_", " ")


def _remedies(decision: dict[str, Any]) -> str:
    given = [r for a in decision["actions"] if (r := _remedy(a))]
    offer = decision.get("offer")
    if offer and decision.get("choice") is None:
        options = [" + ".join(r for a in o["actions"] if (r := _remedy(a)))
                   for o in offer["options"]]
        given.append("choice: " + " or ".join(options))
    return ", ".join(given) or "-"


def row(customer: str, tier: str, story: str, case: dict[str, Any], sent_at: float) -> Row:
    """One customer's row from their case (newest records first); the apology is their first
    message."""
    incident = case["incidents"][0] if case["incidents"] else None
    decision = case["decisions"][0] if case["decisions"] else None
    message = case["messages"][-1] if case["messages"] else None
    latency = None
    if message is not None and message.get("sent_at") is not None:
        sent = datetime.fromisoformat(message["sent_at"]).timestamp()
        latency = max(0.0, (sent - sent_at) * 1000)
    return Row(
        customer=customer, tier=tier, story=story,
        incident=f"{incident['type']} ({incident['detection']})" if incident else "-",
        decision=decision["status"] if decision else "-",
        remedies=_remedies(decision) if decision else "-",
        apology=(("recorded" if message["channel"] == "record"
                  else f"sent by {message['channel']}") + f" ({message['locale']})"
                 if message else "-"),
        event_to_apology_ms=latency,
        decision_id=decision.get("decision_id") if decision else None,
        offer_open=bool(decision and decision.get("offer") and decision.get("choice") is None),
    )


def customer_link(rows: list[Row], page_url: str, link_keys: Mapping[str, str], kid: str,
                  now: datetime) -> str | None:
    """A link to a customer's page like the one their apology carries (signed with the local
    stack's link key): one whose offer is still open when there is one, so the page has a
    choice to make."""
    from pydantic import SecretStr  # noqa: PLC0415 - the services' parts only when asked

    from services.common.links import CustomerLinks  # noqa: PLC0415

    apologised = [r for r in rows if r.decision_id and r.apology != "-"]
    chosen = next((r for r in apologised if r.offer_open), apologised[0] if apologised else None)
    if chosen is None or chosen.decision_id is None:
        return None
    links = CustomerLinks({k: SecretStr(v) for k, v in link_keys.items()}, kid,
                          timedelta(days=30))
    token = links.sign(chosen.customer, chosen.decision_id, now)
    return page_url.format(decision_id=chosen.decision_id, token=token)
