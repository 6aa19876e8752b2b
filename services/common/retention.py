"""Retention: every kind of record is kept for its period (`retention_*_days` settings) and
then deleted by a sweep, in bulk, by the time field it was written with.

FerretDB v1 (the local stack) has no TTL indexes, so the services sweep themselves; on real
MongoDB a TTL index on the same field would do the same (docs/adr/0008). A sweep never
touches the hot path: it runs every `retention_sweep_seconds` and deletes with one
`delete_many` per rule. Marks whose absence a hot path takes as proof (decision's
`incidents_seen`, `customers_decided`; the outboxes' published marks) carry no time and are
kept as long as what they stand for.

Dead letters live in Kafka: their retention is the dead-letter topic's `retention.ms`, set
with its compaction (`compact,delete`, so an erased letter replaces the original) when the
service creates its topics.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError
from prometheus_client import Counter

from services.common.adapters.retention import MongoPurge
from services.common.app import Runtime
from services.common.messaging import kafka_client_options
from services.common.settings import ServiceSettings

log = logging.getLogger(__name__)

# Physical deletion of an erased dead letter's original: the cleaner compacts a segment at
# the latest this long after its first record was written (the active segment rolls then).
DEAD_LETTER_MAX_COMPACTION_LAG = timedelta(hours=24)


@dataclass(frozen=True)
class Rule:
    """Delete from `collection` what has `time_field` older than `days`."""

    kind: str
    collection: str
    time_field: str
    days: float
    also: dict[str, Any] = field(default_factory=dict)  # further conditions, by field


def rules_of(settings: ServiceSettings, kinds: Sequence[tuple[str, str, str]]) -> list[Rule]:
    """Rules from (kind, collection, time field), the period from `retention_<kind>_days`."""
    return [Rule(kind, collection, field_name, getattr(settings, f"retention_{kind}_days"))
            for kind, collection, field_name in kinds]


class Purge(Protocol):
    async def delete_before(self, rule: Rule, cutoff: datetime) -> int:
        """Delete what `rule` names written before `cutoff`; returns how many records."""


class RetentionSweep:
    def __init__(self, runtime: Runtime, rules: Sequence[Rule],
                 purge: Purge | None = None) -> None:
        self.runtime = runtime
        self.purge = purge or MongoPurge(runtime.db)
        self.rules = list(rules)
        self.deleted = Counter("amends_retention_deleted_total",
                               "Records deleted past their retention period", ["kind"],
                               registry=runtime.registry)
        for rule in self.rules:
            self.deleted.labels(rule.kind)

    async def run(self) -> dict[str, int]:
        """One sweep; returns what each kind lost."""
        now = self.runtime.clock()
        done: dict[str, int] = {}
        for rule in self.rules:
            cutoff = now - timedelta(days=rule.days)
            deleted = await self.purge.delete_before(rule, cutoff)
            if deleted:
                self.deleted.labels(rule.kind).inc(deleted)
                done[rule.kind] = done.get(rule.kind, 0) + deleted
        if done:
            log.info("retention sweep deleted %s", done)
        return done


def dead_letter_topic_config(settings: ServiceSettings) -> dict[str, str]:
    return {"cleanup.policy": "compact,delete",
            "retention.ms": str(int(timedelta(
                days=settings.retention_dead_letters_days).total_seconds() * 1000)),
            "max.compaction.lag.ms": str(int(
                DEAD_LETTER_MAX_COMPACTION_LAG.total_seconds() * 1000)),
            # the cleaner takes any segment with an erased letter, not only half-dirty ones
            "min.cleanable.dirty.ratio": "0.01"}


async def ensure_dead_letter_topic(settings: ServiceSettings) -> None:
    """Create the dead-letter topic compacted by id with its retention, or set that policy
    on the topic as it is."""
    config = dead_letter_topic_config(settings)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap,
                                **kafka_client_options(settings))
    await admin.start()
    try:
        topic = settings.deadletter_topic
        if topic not in set(await admin.list_topics()):
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([NewTopic(
                    topic, settings.topic_partitions, settings.topic_replication,
                    topic_configs=config)])
                return
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic,
                                                  configs=config)])
    finally:
        await admin.close()


def install_retention(runtime: Runtime, rules: Sequence[Rule]) -> RetentionSweep:
    """Sweep the rules every `retention_sweep_seconds`; when the service creates its topics,
    give the dead-letter topic its compaction and retention first."""
    sweep = RetentionSweep(runtime, rules)
    settings = runtime.settings

    async def dead_letter_policy() -> None:
        if settings.create_topics:
            await ensure_dead_letter_topic(settings)

    runtime.on_start.insert(0, dead_letter_policy)
    runtime.every(settings.retention_sweep_seconds, sweep.run, name="retention")
    return sweep
