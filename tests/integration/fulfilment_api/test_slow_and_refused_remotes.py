"""Remotes that are slow or refuse our credentials, with fulfilment on the real broker and
database, a real SMTP relay (aiosmtpd) and the gateway peer over real HTTP: a slow relay
sends each apology once while the sweep runs; a batch stops starting calls at its deadline
and leaves the rest to the sweep; a gateway that refuses our key pauses the refund (no
failure, no dead letter, an alert metric) and the refund completes once the key works."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr
from pymongo import AsyncMongoClient

from devtools.gateway_peer import DEFAULT_API_KEY, Behaviour, serving
from devtools.gateway_peer import create_app as gateway_app
from schemas.incident import Incident
from schemas.outcome import ActionStatus
from services.common.adapters.mongo import Doc
from services.common.messaging import Record
from services.decision.domain.engine import decide
from services.decision.domain.history import CustomerHistory
from services.fulfilment.adapters.mongo import MongoEffectLog
from services.fulfilment.app import create_app as fulfilment_app
from services.fulfilment.domain.effects import Change, Effect
from services.fulfilment.remote import Done, Job, RemoteEffects, new_claim
from services.fulfilment.service import LINK_MARK, FulfilmentService
from services.fulfilment.settings import FulfilmentSettings
from tests.clock import FakeClock
from tests.factories import incident
from tests.infra import Infra
from tests.integration.fulfilment_api.refunds import PAID, double_charge, refund_policy
from tests.kafka_tools import collect, incident_events, produce, until_timeout
from tests.mail import Inbox, body, parsed
from tests.pipeline import Topics, lifespans, running_pipeline, settings_for

pytestmark = pytest.mark.integration

PAGE = re.compile(r"/v1/customer/decisions/(?P<decision>[\w-]+)\?token=(?P<token>[\w.-]+)")
POLICY = refund_policy("slow-and-refused-test", """  - id: sorry-for-the-wait
    when: {type: [support_wait_exceeded]}
    grant:
      - points: 50
""")



def waited(customer_id: str) -> dict[str, Any]:
    return incident("support_wait_exceeded", customer_id=customer_id, fact=f"t-{customer_id}",
                    detection="customer_reported", wait_minutes=90)


async def test_a_slow_relay_sends_each_apology_once_while_the_sweep_runs(
        infra: Infra, suffix: str, inbox: tuple[Inbox, int]) -> None:
    handler, smtp_port = inbox
    handler.delay_s = 0.5
    customers = [f"c-slow-{i}" for i in range(8)]
    # Two at a time, half a second each: the last apology waits two seconds for its turn,
    # twice the lease, while the sweep looks for expired claims every 0.2 s.
    async with running_pipeline(infra, suffix, policy=POLICY, fulfilment={
            "smtp_host": "127.0.0.1", "smtp_port": smtp_port,
            "smtp_from": "Care <care@shop.example>", "send_concurrency": 2,
            "claim_lease_seconds": 1.0, "sweep_seconds": 0.2}) as pipeline:
        await produce(infra.kafka_bootstrap, pipeline.topics.incidents,
                      incident_events([waited(c) for c in customers]))
        outcomes = await collect(infra.kafka_bootstrap, pipeline.topics.outcomes,
                                 lambda seen: len(seen) >= 16, settle_s=1.0, timeout_s=30)
        await asyncio.sleep(1.5)  # more sweeps, in case one would still send again
        db = pipeline.fulfilment.state.runtime.db
        messages = [doc async for doc in db["messages"].find({})]

    sent = Counter(parsed(e)["To"] for e in handler.envelopes)
    assert sent == {f"{c}@example.org": 1 for c in customers}
    assert Counter(o["data"]["kind"] for o in outcomes) == {"apology": 8, "points": 8}
    assert all(o["data"]["status"] == "succeeded" for o in outcomes)
    assert [m["status"] for m in messages] == ["succeeded"] * 8
    assert all(m["attempts"] == 1 for m in messages)


async def test_a_batch_stops_starting_calls_at_its_deadline_and_the_sweep_sends_the_rest(
        infra: Infra, mongo: AsyncMongoClient[Doc], suffix: str,
        inbox: tuple[Inbox, int]) -> None:
    handler, smtp_port = inbox
    handler.delay_s = 0.5
    clock = FakeClock(datetime(2026, 11, 23, 12, 5, tzinfo=UTC))
    topics = Topics.unique(suffix)
    _, _, base = settings_for(infra, topics, f"amends_test_{suffix}")
    settings = base.model_copy(update={
        "smtp_host": "127.0.0.1", "smtp_port": smtp_port, "smtp_from": "Care <care@shop.ex>",
        "send_concurrency": 1, "batch_deadline_s": 1.2, "sweep_seconds": 600.0})
    app = fulfilment_app(settings, clock=clock)
    async with lifespans([app]):
        service: FulfilmentService = app.state.service
        records = []
        for offset, customer in enumerate(f"c-late-{i}" for i in range(6)):
            decision = decide(Incident.model_validate(waited(customer)), CustomerHistory(),
                              POLICY, clock())
            event = {"specversion": "1.0", "id": decision.decision_id,
                     "source": "amends/decision", "type": "amends.decision.made",
                     "time": clock().isoformat(), "subject": customer,
                     "data": decision.model_dump(mode="json")}
            records.append(Record(topics.decisions, 0, offset, customer.encode(),
                                  json.dumps(event).encode()))
        began = time.monotonic()
        outcomes = await service.handle_decisions(records)
        took = time.monotonic() - began
        # Calls are started until 1.2 s after the batch began (its writes first), each 0.5 s
        # long: some are sent, the others are left for the sweep at once.
        assert took < 1.2 + 0.5 + 1.0, took
        sent = len(handler.envelopes)
        assert 1 <= sent <= 3
        assert Counter(o.kind.value for o in outcomes) == {"points": 6, "apology": sent}
        db = app.state.runtime.db
        left = [doc async for doc in db["messages"].find({"status": "retry"})]
        assert len(left) == 6 - sent
        assert all(doc["next_attempt_at"] <= clock() for doc in left)

        finished = await service.finish_unfinished()
        assert Counter(o.kind.value for o in finished) == {"apology": 6 - sent}
        assert len(handler.envelopes) == 6
        assert len({parsed(e)["To"] for e in handler.envelopes}) == 6
        # Sent at once or by the sweep, each apology links to its customer's page with a
        # valid token; the stored copies keep no token (a bearer secret at rest).
        for envelope in handler.envelopes:
            mail = parsed(envelope)
            found = PAGE.search(body(mail, "plain"))
            assert found is not None, body(mail, "plain")
            grant = app.state.runtime.links.verify(found["token"], found["decision"], clock())
            assert f"{grant.customer_id}@example.org" == mail["To"]
        stored = [doc async for doc in db["messages"].find({})]
        assert all(LINK_MARK in doc["text"] and LINK_MARK in doc["html"] for doc in stored)
        assert not [doc for doc in stored if "token=eyJ" in doc["text"] + doc["html"]]
    await mongo.drop_database(settings.mongo_db)


async def test_an_owner_never_overwrites_what_the_sweep_settled(
        mongo: AsyncMongoClient[Doc], suffix: str) -> None:
    collection = mongo[f"effects_{suffix}"]["messages"]
    kept = MongoEffectLog(collection)
    clock = FakeClock(datetime(2026, 11, 23, 12, 5, tzinfo=UTC))
    settings = FulfilmentSettings()
    effects = RemoteEffects(settings, clock)
    release = asyncio.Event()
    first = Effect(key="k-1", customer_id="c-1", tenant=None, decision_id="d-1",
                   decision_ref="d-1:0", created_at=clock())

    async def stalled(_: Effect) -> tuple[Done, Change]:
        # The owner's process stalls (a paused VM) past its lease, then fails the send.
        await release.wait()
        return (Done(ActionStatus.failed, "refused", clock(), "refused"),
                {"status": "failed", "detail": "refused", "settled_at": clock()})

    async def sent(_: Effect) -> tuple[Done, Change]:
        return (Done(ActionStatus.succeeded, "sent", clock()),
                {"status": "succeeded", "detail": "sent", "settled_at": clock()})

    try:
        owner = asyncio.create_task(effects.run(
            kept, [Job("k-1", first, perform=stalled)], clock()))
        for _ in range(100):
            if await collection.find_one({"_id": "k-1"}) is not None:
                break
            await asyncio.sleep(0.05)
        clock.advance(timedelta(seconds=settings.claim_lease_seconds + 1))
        [due] = await effects.due(kept, clock(), 10)
        taken = await effects.reclaim(kept, due, clock(), new_claim())
        assert taken is not None
        swept = await effects.perform(kept, [(Job("k-1", taken, perform=sent), taken)])
        assert swept["k-1"].status is ActionStatus.succeeded
        release.set()
        reported = await owner
        # The owner's late failure is not written, and it reports what the sweep settled.
        assert reported["k-1"].status is ActionStatus.succeeded
        stored = await collection.find_one({"_id": "k-1"})
        assert stored is not None
        assert (stored["status"], stored["detail"], stored["attempts"]) == (
            "succeeded", "sent", 1)
    finally:
        await mongo.drop_database(f"effects_{suffix}")


def test_a_batch_must_fit_in_the_poll_interval() -> None:
    with pytest.raises(ValueError, match="max_poll_interval_ms"):
        FulfilmentSettings(batch_deadline_s=280.0)
    with pytest.raises(ValueError, match="max_poll_interval_ms"):
        FulfilmentSettings(max_poll_interval_ms=60_000)
    assert FulfilmentSettings(batch_deadline_s=200.0, max_poll_interval_ms=600_000)


async def settled_refunds(db: Any, statuses: list[str], timeout_s: float = 15.0
                         ) -> list[dict[str, Any]]:
    """The refunds as stored, once their statuses are `statuses` or when time is up."""
    deadline = time.monotonic() + timeout_s
    while True:
        refunds = [doc async for doc in db["refunds"].find({})]
        if [r["status"] for r in refunds] == statuses or time.monotonic() > deadline:
            return refunds
        await asyncio.sleep(0.1)


async def test_a_refused_gateway_key_pauses_the_refunds_until_it_works_again(
        infra: Infra, suffix: str, inbox: tuple[Inbox, int]) -> None:
    handler, smtp_port = inbox
    customers = ["c-key-0", "c-key-1", "c-key-2"]
    orders = [f"o-{c}" for c in customers]
    peer_app = gateway_app(Behaviour(payments=dict.fromkeys(orders, PAID), settle_after_polls=0,
                                     revoked=True))
    peer = peer_app.state.peer
    async with serving(peer_app) as gateway_url, running_pipeline(
            infra, suffix, policy=POLICY, fulfilment={
            "payment_gateway_url": gateway_url,
            "payment_gateway_api_key": SecretStr(DEFAULT_API_KEY),
            "retry_base_s": 0.01, "retry_cap_s": 0.05, "sweep_seconds": 0.3,
            "paused_retry_cap_s": 1.2, "send_concurrency": 1,
            "smtp_host": "127.0.0.1", "smtp_port": smtp_port,
            "smtp_from": "Care <care@shop.example>"}) as pipeline:
        registry = pipeline.fulfilment.state.runtime.registry
        db = pipeline.fulfilment.state.runtime.db
        await produce(infra.kafka_bootstrap, pipeline.topics.incidents, incident_events(
            [double_charge(c, o) for c, o in zip(customers, orders, strict=True)]))
        first = await collect(infra.kafka_bootstrap, pipeline.topics.outcomes,
                              lambda seen: len(seen) >= 6, settle_s=1.0)
        # Refused, over and over: the refunds wait, neither failed nor dead-lettered.
        # Each is retried now and then: look until none is in a retry's short claim.
        await asyncio.sleep(1.5)
        refunds = await settled_refunds(db, ["paused"] * 3)
        assert [r["status"] for r in refunds] == ["paused"] * 3
        assert all("401" in r["detail"] or "refused" in r["detail"] for r in refunds)
        assert peer.refunds == {}
        paused = registry.get_sample_value("amends_effects_paused_total",
                                           {"remote": "payment_gateway"}) or 0
        assert paused >= 6  # the sweep kept trying each of them
        # ...but the gateway was asked far less often: once it refused, the others waited.
        assert 1 <= peer.refused_calls <= paused / 2
        assert registry.get_sample_value("amends_remote_credentials_valid",
                                         {"remote": "payment_gateway"}) == 0
        assert await collect(infra.kafka_bootstrap, pipeline.topics.deadletter,
                             until_timeout, timeout_s=1.0) == []

        # Two of them would next be tried in an hour; the first refund that goes through
        # makes them due at once.
        await db["refunds"].update_many(
            {"order_id": {"$in": orders[1:]}},
            {"$set": {"next_attempt_at": datetime.now(UTC) + timedelta(hours=1)}})
        peer.revoked = False  # the operator fixed the key at the gateway: no redrive
        outcomes = await collect(infra.kafka_bootstrap, pipeline.topics.outcomes,
                                 lambda seen: len(seen) >= 9, settle_s=1.0, timeout_s=20)
        assert registry.get_sample_value("amends_remote_credentials_valid",
                                         {"remote": "payment_gateway"}) == 1

    assert Counter(o["data"]["kind"] for o in first) == {"apology": 3, "points": 3}
    refunded = [o["data"] for o in outcomes if o["data"]["kind"] == "refund"]
    assert [r["status"] for r in refunded] == ["succeeded"] * 3
    assert sorted(r.order_id for r in peer.refunds.values()) == sorted(orders)
    assert {r.status for r in peer.refunds.values()} == {"succeeded"}
    # The apologies, sent while the refunds waited, told of them: they were under way.
    assert len(handler.envelopes) == 3
    for mail in handler.envelopes:
        assert "refund" in body(parsed(mail), "plain")
