"""Refunds at a real (local) payment gateway and apologies through a real SMTP server, with the
decision and fulfilment services on the real broker and database: a refused or failed refund
fails its action, goes to the dead-letter topic and gives its money back to the budget; the
apology names only what was given; transient trouble is finished later by the sweep."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from pymongo import AsyncMongoClient

from devtools.gateway_peer import DEFAULT_API_KEY, Behaviour, serving
from devtools.gateway_peer import create_app as gateway_app
from schemas.incident import Incident
from services.common.adapters.mongo import Doc
from services.decision.domain.engine import decide
from services.decision.domain.history import CustomerHistory
from services.fulfilment.app import create_app as fulfilment_app
from services.fulfilment.edges import message_channels
from services.fulfilment.messages import format_money
from services.fulfilment.service import FulfilmentService
from tests import auth
from tests.clock import FakeClock
from tests.infra import Infra
from tests.integration.fulfilment_api.refunds import PAID, double_charge, refund_policy
from tests.kafka_tools import collect, incident_events, produce
from tests.mail import Inbox, body, parsed
from tests.pipeline import Topics, lifespans, running_pipeline, settings_for

pytestmark = pytest.mark.integration

POLICY = refund_policy("remote-effects-test")
REFUND_TEXT = f"a refund of {format_money(PAID, 'en')}"



def by_customer(outcomes: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["data"]["customer_id"], o["data"]["kind"]): o["data"] for o in outcomes}


async def test_failed_refunds_release_the_budget_and_apologies_name_what_was_given(
        infra: Infra, suffix: str, inbox: tuple[Inbox, int]) -> None:
    handler, smtp_port = inbox
    # o-ok is paid and refunds after two status queries; the issuer declines o-declined's
    # refund; the gateway knows no payment for o-unknown and refuses outright (a 4xx). The
    # first two calls meet a gateway in trouble (503), retried.
    peer = gateway_app(Behaviour(payments={"o-ok": PAID, "o-declined": PAID},
                                 failing_orders=frozenset({"o-declined"}),
                                 settle_after_polls=2, transient_failures=2))
    async with serving(peer) as gateway_url, running_pipeline(
            infra, suffix, policy=POLICY, fulfilment={
            "payment_gateway_url": gateway_url,
            "payment_gateway_api_key": SecretStr(DEFAULT_API_KEY),
            "refund_poll_interval_s": 0.05, "retry_base_s": 0.01, "retry_cap_s": 0.05,
            "smtp_host": "127.0.0.1", "smtp_port": smtp_port,
            "smtp_from": "Care <care@shop.example>"}) as pipeline:
        incidents = [double_charge("c-ok", "o-ok"), double_charge("c-declined", "o-declined"),
                     double_charge("c-unknown", "o-unknown")]
        await produce(infra.kafka_bootstrap, pipeline.topics.incidents,
                      incident_events(incidents))
        outcomes = await collect(infra.kafka_bootstrap, pipeline.topics.outcomes,
                                 lambda seen: len(seen) >= 9, settle_s=1.0)
        letters = await collect(infra.kafka_bootstrap, pipeline.topics.deadletter,
                                lambda seen: len(seen) >= 2, settle_s=0.5, timeout_s=30)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=pipeline.decision),
                                     base_url="http://decision") as decision:
            budget = (await decision.get("/v1/budget", headers=auth.headers())).json()
        async with httpx.AsyncClient(base_url=gateway_url, headers={
                "Authorization": f"Bearer {DEFAULT_API_KEY}"}) as client:
            refunded = {order: (await client.get("/v1/refunds", params={"order_id": order})
                                ).json()["data"] for order in ("o-ok", "o-declined", "o-unknown")}

    done = by_customer(outcomes)
    assert len(outcomes) == 9, "one outcome per action"
    assert done["c-ok", "refund"]["status"] == "succeeded"
    assert done["c-declined", "refund"]["status"] == "failed"
    assert "declined" in done["c-declined", "refund"]["detail"]
    assert done["c-unknown", "refund"]["status"] == "failed"
    assert "refused" in done["c-unknown", "refund"]["detail"]
    assert all(done[c, k]["status"] == "succeeded" for c in ("c-ok", "c-declined", "c-unknown")
               for k in ("apology", "points"))
    # At the gateway: one refund for the paid order, whatever the retries; none for the other.
    assert [r["status"] for r in refunded["o-ok"]] == ["succeeded"]
    assert [r["status"] for r in refunded["o-declined"]] == ["failed"]
    assert refunded["o-unknown"] == []

    # Each failed refund is dead-lettered with the reason, naming the action.
    assert len(letters) == 2
    for letter in letters:
        data = letter["data"]
        assert data["reason"] == "processing_failed"
        assert data["service"] == "fulfilment"
        assert data["topic"] == pipeline.topics.decisions
        assert "(refund)" in data["error"]
    assert {done["c-declined", "refund"]["idempotency_key"],
            done["c-unknown", "refund"]["idempotency_key"]} == {
        letter["data"]["error"].split()[1] for letter in letters}

    # Three decisions reserved 3 times (20 + 1.00 of points); the two failed refunds came back.
    assert Decimal(budget["spent"]) == Decimal("23.00")

    # One e-mail per customer; only the one whose refund went through is told of a refund.
    mails = {parsed(e)["To"]: parsed(e) for e in handler.envelopes}
    assert sorted(mails) == ["c-declined@example.org", "c-ok@example.org",
                             "c-unknown@example.org"]
    assert len(handler.envelopes) == 3
    assert REFUND_TEXT in body(mails["c-ok@example.org"], "plain")
    for customer in ("c-declined", "c-unknown"):
        text = body(mails[f"{customer}@example.org"], "plain")
        assert REFUND_TEXT not in text
        assert "100" in text  # the points are named


async def test_what_transient_trouble_leaves_unfinished_the_sweep_finishes(
        infra: Infra, mongo: AsyncMongoClient[Doc], suffix: str,
        inbox: tuple[Inbox, int]) -> None:
    handler, smtp_port = inbox
    clock = FakeClock(datetime(2026, 11, 23, 12, 5, tzinfo=UTC))
    # The gateway answers 503 to its first three calls: more than one batch's two attempts.
    peer = gateway_app(Behaviour(payments={"o-1": PAID}, settle_after_polls=0,
                                 transient_failures=3))
    topics = Topics.unique(suffix)
    _, _, base = settings_for(infra, topics, f"amends_test_{suffix}")
    async with serving(peer) as gateway_url:
        settings = base.model_copy(update={
            "payment_gateway_url": gateway_url,
            "payment_gateway_api_key": SecretStr(DEFAULT_API_KEY),
            "retry_attempts": 2, "retry_base_s": 0.01, "retry_cap_s": 0.02,
            # Nothing listens here yet: the e-mail fails transiently too.
            "smtp_host": "127.0.0.1", "smtp_port": 1, "smtp_timeout_s": 1.0,
            "smtp_from": "Care <care@shop.example>", "sweep_seconds": 30.0})
        app = fulfilment_app(settings, clock=clock)
        async with lifespans([app]):
            service: FulfilmentService = app.state.service
            decision = decide(Incident.model_validate(double_charge("c-1", "o-1")),
                              CustomerHistory(), POLICY, clock())
            event = {"specversion": "1.0", "id": decision.decision_id,
                     "source": "amends/decision", "type": "amends.decision.made",
                     "time": clock().isoformat(), "subject": "c-1",
                     "data": decision.model_dump(mode="json")}
            await produce(infra.kafka_bootstrap, topics.decisions,
                          [("c-1", json.dumps(event).encode())])
            first = await collect(infra.kafka_bootstrap, topics.outcomes,
                                  lambda seen: len(seen) >= 1, settle_s=1.5)
            assert Counter(o["data"]["kind"] for o in first) == {"points": 1}
            db = app.state.runtime.db
            refund = await db["refunds"].find_one({})
            message = await db["messages"].find_one({})
            assert refund is not None
            assert refund["status"] == "retry"
            assert message is not None
            assert message["status"] == "retry"

            # Too early: nothing is due before its next attempt.
            assert await service.finish_unfinished() == []
            # The relay is back and the gateway has had its bad moment.
            service.channels = message_channels(
                settings.model_copy(update={"smtp_port": smtp_port}), clock)
            clock.advance(timedelta(seconds=31))
            finished = await service.finish_unfinished()
            assert sorted(o.kind.value for o in finished) == ["apology", "refund"]
            assert all(o.status.value == "succeeded" for o in finished)
            outcomes = await collect(infra.kafka_bootstrap, topics.outcomes,
                                     lambda seen: len(seen) >= 3, settle_s=1.0)
            assert sorted(o["data"]["kind"] for o in outcomes) == ["apology", "points",
                                                                   "refund"]
            assert len(handler.envelopes) == 1

            # A claim left by a process that died is taken over once its lease is out. This
            # process never saw that claim (it is written straight into the store), and on
            # FerretDB its sweep asks memory: the full sweep finds it.
            await db["messages"].update_one({}, {"$set": {"status": "claimed",
                                                          "claimed_at": clock()}})
            assert await service.finish_unfinished() == []
            clock.advance(timedelta(seconds=settings.claim_lease_seconds + 1))
            assert await service.finish_unfinished() == []
            clock.advance(timedelta(seconds=settings.full_sweep_seconds))
            retaken = await service.finish_unfinished()
            # Nobody knows whether the dead process sent it: it is sent again, as the same
            # message (one Message-ID, so the mailbox shows it once).
            assert [o.kind.value for o in retaken] == ["apology"]
            assert len(handler.envelopes) == 2
            assert len({parsed(e)["Message-ID"] for e in handler.envelopes}) == 1
            assert (await db["messages"].find_one({}) or {})["status"] == "succeeded"
    await mongo.drop_database(settings.mongo_db)
