"""The decisions other instances make, followed on the decisions topic so that a store that
answers histories from memory (`FerretDecisions`) sees them: a review or a choice made through
another instance's API, a manual voucher, the decisions of partitions that move here.

It reads every partition without a consumer group (no offsets to commit: a restarted
instance loads the store again), from the end as it stood before the store was loaded, so
every decision is either in the load or followed. A decision this instance recorded itself is
known at its revision already and skipped on its id alone, without decoding the event."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import TypeAdapter, ValidationError

from schemas.decision import DecisionMade
from services.common.messaging import kafka_client_options
from services.common.topic_reader import partitions_of
from services.decision.ports import Decisions
from services.decision.settings import DecisionSettings

log = logging.getLogger(__name__)

_event: TypeAdapter[DecisionMade] = TypeAdapter(DecisionMade)
# The envelope's fields come before its data (the last field), so the first "id" is the
# event's: the decision id, with ":<revision>" after revision 0.
_EVENT_ID = re.compile(rb'[{,]"id":"([^"]*)"')
_HEAD = 400  # the envelope's fields fit in this many bytes
_TOPIC_TRIES = 40  # half a second apart


def event_revision(value: bytes) -> tuple[str, int] | None:
    """The decision id and revision an event's id names, read from its first bytes."""
    found = _EVENT_ID.search(value, 0, _HEAD)
    if found is None:
        return None
    did, _, revision = found.group(1).decode().partition(":")
    return did, int(revision) if revision.isdigit() else 0


class DecisionFollower:
    def __init__(self, settings: DecisionSettings, store: Decisions) -> None:
        self.settings = settings
        self.store = store
        self.followed = 0  # decisions taken from the topic (for tests and logs)
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Take position at the end of every partition of the decisions topic. Call it
        before the store loads its view, then `run`."""
        settings = self.settings
        options = kafka_client_options(settings)
        partitions = await _partitions(settings, options)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap, group_id=None,
            enable_auto_commit=False, client_id=f"amends-{settings.service_name}-follower",
            **options)
        await consumer.start()
        try:
            consumer.assign(partitions)
            await consumer.seek_to_end(*partitions)
            for tp in partitions:  # resolve now: the load that follows must not miss any
                await consumer.position(tp)
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer

    def run(self) -> None:
        self._task = asyncio.create_task(self._follow(), name="decision-follower")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def _follow(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=1000, max_records=2000)
            for records in batches.values():
                self.take([r.value for r in records if r.value is not None])

    def take(self, values: list[bytes]) -> None:
        """Learn the decisions among `values` that the store does not know yet."""
        learnt = []
        for value in values:
            named = event_revision(value)
            if named is not None and self.store.knows(*named):
                continue
            try:
                learnt.append(_event.validate_json(value).data)
            except ValidationError as exc:  # not ours to dead-letter: fulfilment does
                log.warning("a decision event that does not parse was not followed: %s",
                            str(exc)[:300])
        if learnt:
            self.store.learn(learnt)
            self.followed += len(learnt)


async def _partitions(settings: DecisionSettings, options: dict[str, Any]
                      ) -> list[TopicPartition]:
    """The decisions topic's partitions. The service created the topic a moment ago when it
    was missing, and a broker lists a new topic only once its metadata has spread."""
    for _ in range(_TOPIC_TRIES - 1):
        try:
            return await partitions_of(settings.kafka_bootstrap, options,
                                       settings.decisions_topic)
        except ValueError:
            await asyncio.sleep(0.5)
    return await partitions_of(settings.kafka_bootstrap, options, settings.decisions_topic)
