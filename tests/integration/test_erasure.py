"""Erasure on the real pipeline (Kafka, the MongoDB-wire server, SMTP): after `amends
customer erase`, no store of the three services, no dead letter and no later message holds
the customer's e-mail, phone or name; the budget and the ledgers still add up; a replay of
the customer's upstream events brings nothing back."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from pymongo import AsyncMongoClient
from typer.testing import CliRunner

from amends import ops
from amends.cli import app as cli
from schemas.decision import Decision
from schemas.incident import Incident
from services.common.access import Role
from services.common.adapters.mongo import Doc, stored
from tests import auth
from tests.factories import order_delivered
from tests.infra import Infra
from tests.kafka_tools import as_json, collect, produce
from tests.mail import Inbox
from tests.pipeline import Pipeline, decided_and_done, running_pipeline
from tests.servers import served_here

pytestmark = pytest.mark.integration

BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)


def _person(customer_id: str, suffix: str) -> dict[str, str]:
    return {"email": f"ada.{suffix}@example.org", "phone": f"+44 20 7946 {suffix[-4:]}",
            "name": f"Ada Lovelace-{suffix}", "street": f"12 St James's Square {suffix}",
            "id": customer_id}


def _late(customer_id: str, order_id: str, person: dict[str, str] | None) -> dict[str, Any]:
    event = order_delivered(customer_id, order_id, promised=BASE,
                            delivered=BASE + timedelta(minutes=150))
    if person is not None:
        snapshot = event["data"]["customer"]
        snapshot["contact"]["email"] = person["email"]
        snapshot["contact"]["phone"] = person["phone"]
        # What upstream sends beyond the contract: kept only in the raw bytes.
        snapshot["name"] = person["name"]
        snapshot["address"] = {"street": person["street"], "city": "London"}
    return event


def _invalid(customer_id: str, person: dict[str, str]) -> dict[str, Any]:
    """An event intake cannot take (no delivery time): dead-lettered whole."""
    event = _late(customer_id, f"bad-{customer_id}", person)
    del event["data"]["delivered_at"]
    return event


def _holds(text: str, person: dict[str, str]) -> list[str]:
    return [k for k in ("email", "phone", "name", "street") if person[k] in text]


async def _everything(mongo: AsyncMongoClient[Doc], pipeline: Pipeline
                      ) -> dict[str, list[Doc]]:
    found: dict[str, list[Doc]] = {}
    for name in pipeline.dbs:
        db = mongo[name]
        for collection in await db.list_collection_names():
            found[f"{name}.{collection}"] = await db[collection].find({}).to_list()
    return found


async def _sums(mongo: AsyncMongoClient[Doc], pipeline: Pipeline) -> dict[str, Any]:
    decision = mongo[pipeline.db("decision")]
    fulfilment = mongo[pipeline.db("fulfilment")]
    reservations = await decision["reservations"].find({}).to_list()
    ledger = await decision["budget_ledger"].find({}).to_list()
    points = await fulfilment["points_ledger"].find({}).to_list()
    return {
        "reserved": sum(int(r.get("amount", 0)) for r in reservations),
        "spent": max((int(e.get("spent", 0)) for e in ledger), default=0),
        "ledger_entries": len(ledger),
        "points": sum(int(p["points"]) for p in points),
        "decided_value": sorted(d["value"] for d in await decision["decisions"].find(
            {}).to_list()),
        **{f"{name}_count": await fulfilment[name].count_documents({})
           for name in ("decisions", "points_ledger", "messages", "outcomes", "vouchers",
                        "refunds")},
    }


async def _ends(bootstrap: str, topics: list[str]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [tp for topic in topics
                      for tp in await ops.partitions_of(bootstrap, topic)]
        return dict(await consumer.end_offsets(partitions))
    finally:
        await consumer.stop()


async def _since(bootstrap: str, ends: dict[TopicPartition, int], wait_s: float
                 ) -> list[bytes]:
    """Every record written after `ends`, read for `wait_s` seconds."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False)
    await consumer.start()
    values: list[bytes] = []
    try:
        consumer.assign(list(ends))
        for tp, offset in ends.items():
            consumer.seek(tp, offset)
        deadline = asyncio.get_running_loop().time() + wait_s
        while asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            values += [r.value or b"" for records in batch.values() for r in records]
    finally:
        await consumer.stop()
    return values


async def test_an_erased_customer_leaves_no_contact_anywhere(
        infra: Infra, mongo: AsyncMongoClient[Doc], suffix: str,
        inbox: tuple[Inbox, int]) -> None:
    mail, port = inbox
    who, other = f"{suffix}-ada", f"{suffix}-bob"
    person = _person(who, suffix)
    upstream = [_late(who, f"{suffix}-o-1", person), _late(other, f"{suffix}-o-2", None),
                _invalid(who, person)]
    async with running_pipeline(infra, suffix, fulfilment={
            "smtp_host": "127.0.0.1", "smtp_port": port}) as pipeline:
        topics = pipeline.topics
        await produce(infra.kafka_bootstrap, topics.orders, as_json(upstream))
        await decided_and_done(infra, pipeline, 2)
        letters = await collect(infra.kafka_bootstrap, topics.deadletter,
                                lambda seen: len(seen) >= 1)
        assert any(person["email"].encode() in base64.b64decode(letter["data"]["value_b64"])
                   for letter in letters)
        before = await _everything(mongo, pipeline)
        assert any(_holds(json.dumps(docs, default=str), person) for docs in before.values())
        assert any(person["email"] in rcpt for e in mail.envelopes for rcpt in e.rcpt_tos)
        sums = await _sums(mongo, pipeline)

        async with served_here(pipeline.decision) as url:
            env = {"AMENDS_TOKEN": auth.headers(Role.admin, "default")["Authorization"]
                   .removeprefix("Bearer "),
                   "AMENDS_DECISION_URL": url, "AMENDS_KAFKA_BOOTSTRAP": infra.kafka_bootstrap,
                   "AMENDS_AUDIT_TOPIC": topics.audit}
            result = await asyncio.to_thread(
                CliRunner().invoke, cli, ["customer", "erase", who, "--reason",
                                          "GDPR art. 17 request T-1", "--timeout", "90"],
                env=env)
        assert result.exit_code == 0, result.output
        assert "every service reported" in result.output
        for service in ("intake", "decision", "fulfilment"):
            assert service in result.output

        # No store of any service holds the customer's details, nor their id.
        after = await _everything(mongo, pipeline)
        for collection, docs in after.items():
            text = json.dumps(docs, default=str)
            assert not _holds(text, person), collection
            assert who not in text, collection
        # What is kept still reads as its contract.
        for doc in after[f"{pipeline.db('decision')}.decisions"] + after[
                f"{pipeline.db('fulfilment')}.decisions"]:
            Decision.model_validate(stored(doc["decision"]))
        for doc in after[f"{pipeline.db('intake')}.incidents"]:
            Incident.model_validate(stored(doc["incident"]))
        # The money records stay, pseudonymised: the budget and the ledgers add up as before.
        assert await _sums(mongo, pipeline) == sums
        assert sum(len(d) for d in after.values()) >= sum(
            len(d) for n, d in before.items() if not n.endswith(("checks", "customers_seen")))

        # No dead letter, as the operators' tool reads them, holds them.
        read = await ops.read_dead_letters(infra.kafka_bootstrap, topics.deadletter)
        assert [letter.letter.erased for letter in read] == [True], result.output
        for letter in read:
            text = " ".join([letter.original.decode(errors="replace"),
                             (letter.key or b"").decode(errors="replace"), letter.letter.error,
                             *(v.decode(errors="replace") for _, v in letter.headers)])
            assert not _holds(text, person), result.output
            assert who not in text

        # The three reports and the request are on the audit topic.
        audit = await collect(infra.kafka_bootstrap, topics.audit,
                              lambda seen: len(seen) >= 4, settle_s=1.0)
        erasures = [a["data"] for a in audit if a["data"]["action"] == "erasure"]
        assert sorted(a["service"] for a in erasures if a["after"].get("phase") == "done") == [
            "decision", "fulfilment", "intake"]
        assert not any(who in json.dumps(a) for a in erasures)

        # A replay of the customer's upstream events brings nothing back.
        mails = len(mail.envelopes)
        ends = await _ends(infra.kafka_bootstrap, [topics.incidents, topics.decisions,
                                                   topics.outcomes, topics.tasks,
                                                   topics.deadletter])
        await produce(infra.kafka_bootstrap, topics.orders, as_json(upstream))
        later = await _since(infra.kafka_bootstrap, ends, wait_s=6.0)
        for value in later:
            assert not _holds(value.decode(errors="replace"), person)
        assert len(mail.envelopes) == mails
        assert all(not _holds(json.dumps(d, default=str), person)
                   for d in (await _everything(mongo, pipeline)).values())
