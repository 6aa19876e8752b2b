"""`amends dlq redrive` of a fulfilment dead letter tries its failed actions again, on the
real broker and database with the gateway peer over real HTTP: a refund the issuer declined
is asked for again (under a new gateway key, the declined one being final) once the cause
is fixed, and completes; redriving the same letter again changes nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from amends import ops
from amends.cli import app as cli
from devtools.gateway_peer import DEFAULT_API_KEY, Behaviour, serving
from devtools.gateway_peer import create_app as gateway_app
from tests.infra import Infra
from tests.integration.fulfilment_api.refunds import PAID, double_charge, refund_policy
from tests.kafka_tools import collect, incident_events, produce
from tests.operator_api import operator_env
from tests.pipeline import running_pipeline

pytestmark = pytest.mark.integration

POLICY = refund_policy("redrive-test")


async def test_redriving_a_fulfilment_dead_letter_retries_its_failed_refund(
        infra: Infra, suffix: str) -> None:
    peer_app = gateway_app(Behaviour(payments={"o-red": PAID}, settle_after_polls=0,
                                     failing_orders=frozenset({"o-red"})))
    # The CLI checks its operator's credentials with a decision service over HTTP.
    with operator_env(infra) as operator:
        await _redrive(infra, suffix, peer_app, operator)


async def _redrive(infra: Infra, suffix: str, peer_app: Any, operator: dict[str, str]) -> None:
    peer = peer_app.state.peer
    async with serving(peer_app) as gateway_url, running_pipeline(
            infra, suffix, policy=POLICY, fulfilment={
            "payment_gateway_url": gateway_url,
            "payment_gateway_api_key": SecretStr(DEFAULT_API_KEY),
            "retry_base_s": 0.01, "retry_cap_s": 0.05}) as pipeline:
        operator = {**operator, "AMENDS_AUDIT_TOPIC": pipeline.topics.audit}
        env = {**operator, "AMENDS_KAFKA_BOOTSTRAP": infra.kafka_bootstrap,
               "AMENDS_MONGO_URL": infra.mongo_url,
               "AMENDS_DEADLETTER_TOPIC": pipeline.topics.deadletter,
               "AMENDS_OPS_DB": f"ops_{suffix}"}
        await produce(infra.kafka_bootstrap, pipeline.topics.incidents,
                      incident_events([double_charge("c-red", "o-red")]))
        first = await collect(infra.kafka_bootstrap, pipeline.topics.outcomes,
                              lambda seen: len(seen) >= 3, settle_s=0.5)
        refund = next(o["data"] for o in first if o["data"]["kind"] == "refund")
        assert refund["status"] == "failed"
        await collect(infra.kafka_bootstrap, pipeline.topics.deadletter,
                      lambda seen: len(seen) >= 1)
        [letter] = await ops.read_dead_letters(infra.kafka_bootstrap,
                                               pipeline.topics.deadletter)
        assert letter.letter.service == "fulfilment"

        peer.failing_orders.clear()  # the issuer's problem is solved
        runner = CliRunner()
        redrive = ["dlq", "redrive", letter.letter.dead_letter_id]
        redriven = await asyncio.to_thread(runner.invoke, cli, redrive, env=env)
        assert "redrove 1 dead letters" in redriven.output, redriven.output
        outcomes = await collect(infra.kafka_bootstrap, pipeline.topics.outcomes,
                                 lambda seen: len(seen) >= 4, settle_s=1.0, timeout_s=30)

        # The same letter redriven again (forced) does not ask for a third refund.
        again = await asyncio.to_thread(runner.invoke, cli, [*redrive, "--again"], env=env)
        assert "redrove 1 dead letters" in again.output, again.output
        await asyncio.sleep(2.0)
        final = await collect(infra.kafka_bootstrap, pipeline.topics.outcomes,
                              lambda seen: len(seen) >= 4, settle_s=1.0)
        db = pipeline.fulfilment.state.runtime.db
        stored = await db["refunds"].find_one({})
        letters = await collect(infra.kafka_bootstrap, pipeline.topics.deadletter,
                                lambda seen: len(seen) >= 1, settle_s=1.0)

    refunds = [o["data"] for o in outcomes if o["data"]["kind"] == "refund"]
    assert [r["status"] for r in refunds] == ["failed", "succeeded"]
    assert refunds[0]["idempotency_key"] == refunds[1]["idempotency_key"]
    assert [o["id"] for o in outcomes if o["data"]["kind"] == "refund"] == [
        refunds[0]["idempotency_key"], f"{refunds[0]['idempotency_key']}#1"]
    assert len(final) == 4
    assert sorted(r.status for r in peer.refunds.values()) == ["failed", "succeeded"]
    assert stored is not None
    assert stored["status"] == "succeeded"
    assert stored["round"] == 1
    assert len(letters) == 1  # nothing failed again
