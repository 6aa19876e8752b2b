"""Retention sweeps on the real MongoDB-wire server: each kind of record is deleted once
past its period, and not before; the deletions are counted per kind. The dead-letter topic
gets its compaction and retention on the real broker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from pymongo import AsyncMongoClient

from services.common.adapters.mongo import Doc
from services.common.app import Runtime
from services.common.retention import RetentionSweep, ensure_dead_letter_topic, rules_of
from services.intake import retention as intake_retention
from services.intake.settings import IntakeSettings
from tests.infra import Infra
from tests.pipeline import Topics, settings_for

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)


async def test_the_sweep_deletes_each_kind_past_its_period_only(
        infra: Infra, mongo: AsyncMongoClient[Doc], suffix: str) -> None:
    intake, _, _ = settings_for(infra, Topics.unique(suffix), f"amends_test_{suffix}")
    settings = IntakeSettings(**{**intake.model_dump(), "retention_receipts_days": 30,
                                 "retention_marks_days": 400, "retention_records_days": 400,
                                 "retention_money_days": 3650, "retention_audit_days": 3650})
    runtime = Runtime.create(settings, mongo=mongo, clock=lambda: NOW)
    db = runtime.db

    def ago(days: float) -> datetime:
        return NOW - timedelta(days=days)

    await db["received"].insert_many([
        {"_id": "r-old", "done": True, "received_at": ago(31)},
        {"_id": "r-new", "done": True, "received_at": ago(29)},
        {"_id": "claim:r-old", "at": ago(45)}])
    await db["settled"].insert_many([{"_id": "s-old", "at": ago(401)},
                                     {"_id": "s-new", "at": ago(20)}])
    await db["incidents"].insert_many([{"_id": "i-old", "detected_at": ago(500)},
                                       {"_id": "i-new", "detected_at": ago(399)}])
    await db["charges"].insert_many([{"_id": "c-old", "captured_at": ago(3651)},
                                     {"_id": "c-kept", "captured_at": ago(500)}])
    await db["audit"].insert_many([{"_id": "a-kept", "at": ago(3000)}])
    await db["checks"].insert_many([{"_id": "pending", "due_at": ago(1000)}])

    sweep = RetentionSweep(runtime, rules_of(settings, intake_retention.RETENTION))
    assert await sweep.run() == {"receipts": 2, "marks": 1, "records": 1, "money": 1}

    assert {d["_id"] async for d in db["received"].find({})} == {"r-new"}
    assert {d["_id"] async for d in db["settled"].find({})} == {"s-new"}
    assert {d["_id"] async for d in db["incidents"].find({})} == {"i-new"}
    assert {d["_id"] async for d in db["charges"].find({})} == {"c-kept"}
    assert await db["audit"].count_documents({}) == 1
    assert await db["checks"].count_documents({}) == 1  # pending checks are not swept
    counted = {s.labels["kind"]: s.value for m in runtime.registry.collect()
               if m.name == "amends_retention_deleted" for s in m.samples
               if s.name.endswith("_total")}
    assert counted == {"receipts": 2.0, "marks": 1.0, "records": 1.0, "money": 1.0,
                       "audit": 0.0}
    assert await sweep.run() == {}  # nothing more is past its period


async def test_the_dead_letter_topic_is_compacted_by_id_with_its_retention(
        infra: Infra, suffix: str) -> None:
    intake, _, _ = settings_for(infra, Topics.unique(suffix), f"amends_test_{suffix}")
    await ensure_dead_letter_topic(intake)  # creates it
    await ensure_dead_letter_topic(intake)  # an existing topic gets the policy too
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, intake.deadletter_topic)])
    finally:
        await admin.close()
    (resource,) = described.resources
    config = {entry[0]: entry[1] for entry in resource[4]}
    assert config["cleanup.policy"] == "compact,delete"
    assert config["retention.ms"] == str(30 * 24 * 3600 * 1000)
    assert config["max.compaction.lag.ms"] == str(24 * 3600 * 1000)
