"""Intake's HTTP API in memory (httpx over ASGI, the fakes behind it): signed events and
reports, each accepted once however often and however concurrently it is posted, and every
refusal with its reason."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import generate_latest

from tests import factories as f
from tests.component.intake.harness import Intake, intake
from tests.upstream import signed

pytestmark = pytest.mark.component

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
NOW = int(T0.timestamp())


@pytest.fixture
def app() -> Intake:
    return intake(T0)


@pytest.fixture
async def client(app: Intake) -> AsyncIterator[httpx.AsyncClient]:
    async with app.client() as http:
        yield http


async def post(client: httpx.AsyncClient, path: str, body: Any, source: str = "shop",
               **options: Any) -> httpx.Response:
    raw, headers = signed(source, body, options.pop("at", NOW), **options)
    return await client.post(path, content=raw, headers=headers)


def late(order: str = "o-1", **options: Any) -> dict[str, Any]:
    return f.delivered("c", order, at=T0 - timedelta(minutes=1),
                       promised=T0 - timedelta(hours=2), tenant="brand-a", **options)


async def test_a_signed_event_is_accepted_once_with_its_incident(
        client: httpx.AsyncClient, app: Intake) -> None:
    first = await post(client, "/v1/events", late())
    assert first.status_code == 202, first.text
    (accepted,) = first.json()["events"]
    assert not accepted["duplicate"]
    assert len(accepted["incident_ids"]) == 1
    again = await post(client, "/v1/events", late())  # a webhook retry
    assert again.status_code == 202
    assert again.json()["events"][0] == {**accepted, "duplicate": True}
    batch = [late(), late("o-2"), f.order_placed("c", "o-3", at=T0, promised=None,
                                                 tenant="brand-a")]
    answer = await post(client, "/v1/events", batch)
    assert answer.status_code == 202
    assert [e["duplicate"] for e in answer.json()["events"]] == [True, False, False]
    assert len(answer.json()["incident_ids"]) == 2
    assert len(app.store.incidents.kept) == len(app.incidents()) == 2
    assert set(app.store.claims) == set(app.store.receipts)  # every receipt completed


async def test_a_reported_incident_is_accepted_once(client: httpx.AsyncClient,
                                                    app: Intake) -> None:
    report = {"report_id": "r-1", "type": "item_missing", "customer": f.customer("c"),
              "occurred_at": T0.isoformat(), "order_id": "o-1", "item_sku": "s-1",
              "item_value": f.eur("9.90"), "tenant": "brand-b"}
    first = await post(client, "/v1/incidents", report, "desk")
    assert first.status_code == 202, first.text
    assert not first.json()["duplicate"]
    again = await post(client, "/v1/incidents", report, "desk")
    assert again.json() == {**first.json(), "duplicate": True}
    refused = await post(client, "/v1/incidents", report, "shop")
    assert refused.status_code == 403
    assert "may not report incidents" in refused.text
    assert len(app.incidents()) == 1


async def test_a_reported_charge_carries_what_was_captured_for_its_order(
        client: httpx.AsyncClient, app: Intake) -> None:
    await app.consume([f.payment_captured("c", "o-1", "p-1", at=T0)])
    report = {"report_id": "r-2", "type": "double_charge", "order_id": "o-1",
              "customer": f.customer("c"), "occurred_at": T0.isoformat(),
              "charged_amount": f.eur("42.00")}
    answer = await post(client, "/v1/incidents", report, "desk")
    assert answer.status_code == 202, answer.text
    [incident] = app.incidents()
    assert incident["captured_amount"] == f.eur("42.00")


@pytest.mark.parametrize(("case", "detail"), [
    ("bad", "does not match"), ("stale", "outside the 300 s tolerance"),
    ("future", "outside the 300 s tolerance"), ("unsigned", "header is missing"),
    ("stranger", "unknown source"), ("old-secret", None)])
async def test_bad_or_stale_signatures_are_refused(client: httpx.AsyncClient,
                                                   case: str, detail: str | None) -> None:
    raw, headers = signed("shop", late(), NOW)
    if case == "bad":
        headers = signed("shop", late(), NOW, secret="guessed")[1]
    elif case == "stale":
        headers = signed("shop", late(), NOW - 301)[1]
    elif case == "future":
        headers = signed("shop", late(), NOW + 400)[1]
    elif case == "unsigned":
        del headers["X-Amends-Signature"]
    elif case == "stranger":
        headers["X-Amends-Source"] = "stranger"
    elif case == "old-secret":  # the second active secret, during a rotation
        headers = signed("shop", late(), NOW, secret="shop-secret-0")[1]
    answer = await client.post("/v1/events", content=raw, headers=headers)
    if detail is None:
        assert answer.status_code == 202
        return
    assert answer.status_code == 401
    assert answer.json()["error"] == "signature"
    assert detail in answer.json()["detail"]
    assert "secret" not in answer.text.replace("active secret", "")


async def test_foreign_event_types_and_tenants_are_forbidden(client: httpx.AsyncClient) -> None:
    ticket = f.ticket_updated("c", "t-1", opened=T0, at=T0, tenant="brand-a")
    assert (await post(client, "/v1/events", ticket, "desk")).status_code == 202
    answer = await post(client, "/v1/events", [late()], "desk")
    assert answer.status_code == 403
    assert answer.json()["fields"] == [{"field": "[0].type", "problem":
                                        "source desk may not send order.delivered events"}]
    other = f.delivered("c", "o-1", at=T0, promised=T0, tenant="brand-z")
    answer = await post(client, "/v1/events", other)
    assert answer.status_code == 403
    assert answer.json()["fields"][0]["field"] == "tenant"
    assert "brand-z" in answer.json()["fields"][0]["problem"]


async def test_bodies_over_the_cap_are_refused(client: httpx.AsyncClient) -> None:
    answer = await post(client, "/v1/events", [late(f"o-{n}") for n in range(200)])
    assert answer.status_code == 413
    assert answer.json()["error"] == "body_too_large"


async def test_invalid_events_name_each_bad_field(client: httpx.AsyncClient) -> None:
    wrong = late()
    wrong["data"]["total"] = {"amount": 12.5, "currency": "EUR"}
    del wrong["data"]["delivered_at"]
    unknown = {**late(), "type": "order.teleported"}
    answer = await post(client, "/v1/events", [late(), wrong, unknown])
    assert answer.status_code == 422
    fields = {p["field"]: p["problem"] for p in answer.json()["fields"]}
    assert set(fields) == {"[1].data.total.amount", "[1].data.delivered_at", "[2].type"}
    assert "decimal string" in fields["[1].data.total.amount"]
    assert "order.teleported" in fields["[2].type"]
    answer = await post(client, "/v1/events", b"{not json")
    assert answer.status_code == 400
    assert answer.json()["error"] == "malformed"
    assert (await post(client, "/v1/events", [])).status_code == 422


async def test_amounts_finer_than_their_currency_negative_or_of_the_wrong_type_are_refused(
        client: httpx.AsyncClient, app: Intake) -> None:
    fine = late("o-fine")
    fine["data"]["total"] = f.eur("10.005")
    negative = f.payment_captured("c", "o-2", "p-2", at=T0, amount="-42.00", tenant="brand-a")
    number = late("o-3")
    number["data"]["delivered_at"] = NOW  # seconds since 1970 are not a date-time
    number["time"] = str(NOW)
    counted = f.item_reported("c", "o-4", at=T0, tenant="brand-a")
    counted["data"]["item"]["quantity"] = "2"
    yen = f.payment_captured("c", "o-5", "p-5", at=T0, tenant="brand-a")
    yen["data"]["amount"] = {"amount": "4200.5", "currency": "JPY"}
    answer = await post(client, "/v1/events", [fine, negative, number, counted, yen])
    assert answer.status_code == 422, answer.text
    fields = {p["field"]: p["problem"] for p in answer.json()["fields"]}
    assert set(fields) == {"[0].data.total", "[1].data.amount", "[2].data.delivered_at",
                           "[2].time", "[3].data.item.quantity", "[4].data.amount"}
    assert "amount 10.005 has more decimals than EUR allows (2)" in fields["[0].data.total"]
    assert "amount -42.00 is negative" in fields["[1].data.amount"]
    assert "not a JSON number" in fields["[2].data.delivered_at"]
    assert "date-time" in fields["[2].time"]
    assert "more decimals than JPY allows (0)" in fields["[4].data.amount"]
    report = {"report_id": "r", "type": "double_charge", "order_id": "o-9",
              "customer": f.customer("c"), "occurred_at": T0.isoformat(),
              "charged_amount": f.eur("49.999")}
    answer = await post(client, "/v1/incidents", report, source="desk")
    assert answer.status_code == 422, answer.text
    assert [p["field"] for p in answer.json()["fields"]] == ["charged_amount"]
    assert app.publisher.sent == []


async def test_the_same_webhook_posted_twice_at_once_publishes_its_incident_once(
        client: httpx.AsyncClient, app: Intake) -> None:
    body = [late(f"o-{n}") for n in range(20)]
    answers = await asyncio.gather(*(post(client, "/v1/events", body) for _ in range(3)))
    assert [a.status_code for a in answers] == [202, 202, 202]
    ids = [a.json()["incident_ids"] for a in answers]
    assert len(ids[0]) == 20
    assert ids[1] == ids[2] == ids[0]
    duplicates = sorted(sum(e["duplicate"] for e in a.json()["events"]) for a in answers)
    assert duplicates == [0, 20, 20]
    assert sorted(m["id"] for m in app.publisher.bodies("incidents")) == sorted(ids[0])


async def test_the_same_webhook_posted_at_once_to_two_instances_publishes_once(
        client: httpx.AsyncClient, app: Intake) -> None:
    two = intake(T0)
    two.service.store = app.store  # one database, two instances
    body = [late(f"o-{n}") for n in range(20)]
    async with two.client() as other:
        answers = await asyncio.gather(post(client, "/v1/events", body),
                                       post(other, "/v1/events", body))
    assert [a.status_code for a in answers] == [202, 202]
    assert answers[0].json()["incident_ids"] == answers[1].json()["incident_ids"]
    duplicates = sorted(sum(e["duplicate"] for e in a.json()["events"]) for a in answers)
    assert duplicates == [0, 20]
    published = app.publisher.bodies("incidents") + two.publisher.bodies("incidents")
    assert sorted(m["id"] for m in published) == sorted(answers[0].json()["incident_ids"])


async def test_a_failed_request_releases_its_claims_so_a_retry_processes_the_event(
        client: httpx.AsyncClient, app: Intake) -> None:
    app.publisher.failing = ConnectionError("the broker is down")
    with pytest.raises(ConnectionError):
        await post(client, "/v1/events", late())
    assert app.store.claims == {}
    app.publisher.failing = None
    answer = await post(client, "/v1/events", late())
    assert answer.status_code == 202
    assert answer.json()["events"][0]["duplicate"] is False
    assert len(app.incidents()) == 1


async def test_the_same_report_posted_twice_at_once_publishes_its_incident_once(
        client: httpx.AsyncClient, app: Intake) -> None:
    report = {"report_id": "r", "type": "item_missing", "order_id": "o-1",
              "item_sku": "sku-1", "customer": f.customer("c"),
              "occurred_at": T0.isoformat(), "item_value": f.eur("19.99")}
    answers = await asyncio.gather(*(post(client, "/v1/incidents", report, source="desk")
                                     for _ in range(3)))
    assert [a.status_code for a in answers] == [202, 202, 202]
    assert len({a.json()["incident_id"] for a in answers}) == 1
    assert sorted(a.json()["duplicate"] for a in answers) == [False, True, True]
    assert len(app.incidents()) == 1


async def test_a_source_over_its_rate_gets_429_with_retry_after(
        client: httpx.AsyncClient, app: Intake) -> None:
    body = f.ticket_updated("c", "t-1", opened=T0, at=T0)
    codes = [(await post(client, "/v1/events", body, "slow")).status_code for _ in range(2)]
    assert codes == [202, 202]
    limited = await post(client, "/v1/events", body, "slow")
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "1"
    assert limited.json()["error"] == "rate_limited"
    app.clock.advance(timedelta(seconds=1))
    again = await post(client, "/v1/events", body, "slow", at=NOW + 1)
    assert again.status_code == 202
    metrics = generate_latest(app.registry).decode()
    assert 'amends_intake_http_rejected_total{error="rate_limited",source="slow"} 1.0' in metrics
