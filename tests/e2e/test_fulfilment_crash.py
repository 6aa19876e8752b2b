"""Fulfilment killed with SIGKILL in the middle of a batch, restarted, with every decision
delivered three times: still exactly one refund, points credit, voucher and message per
action key, and an outcome for every action."""

from __future__ import annotations

import json
import signal
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pymongo import AsyncMongoClient

from schemas.incident import Incident
from services.common.adapters.mongo import Doc
from services.decision.domain.engine import decide
from services.decision.domain.history import CustomerHistory
from services.decision.domain.policy import parse_policy
from tests.factories import incident
from tests.infra import Infra
from tests.kafka_tools import collect, produce
from tests.pipeline import Topics
from tests.processes import free_port, service_env, start, wait_healthy

pytestmark = pytest.mark.e2e

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
POLICY = parse_policy("""
version: crash-test
currency: EUR
values: {point: "0.01"}
guards: {incident_cap: 100, customer_cap: 100, daily_budget: 1000000}
rules:
  - id: everything
    when: {type: [double_charge]}
    grant:
      - refund: {fixed: 5}
      - points: 100
      - voucher: {amount: 5, expires_days: 30}
""")
DECISIONS = 300


def decisions(suffix: str) -> list[tuple[str, bytes]]:
    made = []
    for n in range(DECISIONS):
        one = Incident.model_validate(incident(
            "double_charge", customer_id=f"{suffix}-{n}", fact=f"o-{n}",
            charged_amount={"amount": "20.00", "currency": "EUR"}))
        decision = decide(one, CustomerHistory(), POLICY, NOW)
        event = {"specversion": "1.0", "id": decision.decision_id, "source": "amends/decision",
                 "type": "amends.decision.made", "time": NOW.isoformat(),
                 "subject": one.customer.id, "data": decision.model_dump(mode="json")}
        made.append((one.customer.id, json.dumps(event).encode()))
    return made


async def test_a_killed_fulfilment_applies_every_effect_once(
        infra: Infra, mongo: AsyncMongoClient[Doc], suffix: str, tmp_path: Path) -> None:
    topics = Topics.unique(suffix)
    env = {**service_env(infra, topics, suffix), "AMENDS_FULFILMENT_BATCH_MAX_RECORDS": "25"}
    port, log = free_port(), tmp_path / "fulfilment.log"
    events = decisions(suffix)
    expected_actions = DECISIONS * 4  # apology, refund, points, voucher

    process = start("fulfilment", env, port, log)
    try:
        wait_healthy(port, log)
        for _ in range(3):  # every decision three times
            await produce(infra.kafka_bootstrap, topics.decisions, events)
        # Kill it once part of the work is done (and some batches are half written).
        seen = await collect(infra.kafka_bootstrap, topics.outcomes,
                             lambda got: len(got) >= expected_actions // 4, timeout_s=120)
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
        done_before_kill = len({o["data"]["idempotency_key"] for o in seen})
        assert done_before_kill < expected_actions, "killed too late to prove anything"

        process = start("fulfilment", env, port, log)
        wait_healthy(port, log)
        outcomes = await collect(
            infra.kafka_bootstrap, topics.outcomes,
            lambda got: len({o["data"]["idempotency_key"] for o in got}) >= expected_actions,
            timeout_s=180, settle_s=2.0)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)

    keys = Counter(o["data"]["idempotency_key"] for o in outcomes)
    assert len(keys) == expected_actions
    assert all(o["data"]["status"] == "succeeded" for o in outcomes)
    db = mongo[f"e2e_fulfilment_{suffix}"]
    by_kind = Counter(o["data"]["kind"] for o in outcomes
                      if keys[o["data"]["idempotency_key"]] >= 1)
    assert set(by_kind) == {"apology", "refund", "points", "voucher"}
    for collection, kind in (("refunds", "refund"), ("points_ledger", "points"),
                             ("messages", "apology")):
        docs = await db[collection].find({}, {"_id": 1}).to_list()
        ids = [d["_id"] for d in docs]
        assert len(ids) == len(set(ids)) == DECISIONS, collection
        assert set(ids) == {o["data"]["idempotency_key"] for o in outcomes
                            if o["data"]["kind"] == kind}
    vouchers = await db["vouchers"].find({}, {"action_key": 1}).to_list()
    assert len(vouchers) == DECISIONS
    assert len({v["action_key"] for v in vouchers}) == DECISIONS
    credited = await db["points_ledger"].find({}, {"points": 1}).to_list()
    assert sum(c["points"] for c in credited) == 100 * DECISIONS
