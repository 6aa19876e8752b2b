"""Operations on topics: replay a slice of a topic, and list, show and redrive dead letters.

Replays and redrives are safe because every id and effect in Amends is idempotent: what was
processed before lands on the same records again and changes nothing.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from schemas.audit import AuditEntry, AuditRecorded
from schemas.deadletter import REDRIVE_HEADER, DeadLetter, MessageDeadLettered
from services.common import topic_reader

Progress = Callable[[int], None]

# The largest value the tools read and republish. The broker's limit applies to the
# compressed batch, so a record upstream sent compressed (2 MB of text under a 1 MiB limit)
# goes back the same way: gzip, with room for its uncompressed size.
MAX_RECORD_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Kafka:
    """The broker, and the options of aiokafka's clients that reach it: the same TLS and SASL
    as the services (`services.common.messaging.kafka_client_options`). A bare bootstrap
    address means plaintext."""

    bootstrap: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def consumer(self, **options: Any) -> AIOKafkaConsumer:
        """A consumer outside any group: it reads what it is told and commits nothing."""
        return AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                group_id=None, **{**self.options, **options})

    def producer(self, **options: Any) -> AIOKafkaProducer:
        return AIOKafkaProducer(bootstrap_servers=self.bootstrap,
                                **{**self.options, **options})

    def admin(self) -> AIOKafkaAdminClient:
        return AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, **self.options)


def _kafka(target: str | Kafka) -> Kafka:
    return target if isinstance(target, Kafka) else Kafka(target)


def _nothing(_: int) -> None:
    return None


@dataclass(frozen=True)
class Position:
    """Where a replay starts or stops: a time (RFC 3339), an offset on every partition,
    or the beginning/end of the topic."""

    time: datetime | None = None
    offset: int | None = None
    edge: str | None = None  # "earliest" or "latest"

    @classmethod
    def parse(cls, text: str) -> Position:
        if text in {"earliest", "latest", "beginning", "end"}:
            return cls(edge="earliest" if text in {"earliest", "beginning"} else "latest")
        if text.isdigit():
            return cls(offset=int(text))
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{text!r} is neither an offset, an RFC 3339 time with offset, "
                             "nor earliest/latest") from None
        if moment.tzinfo is None:
            raise ValueError(f"{text!r} has no UTC offset (e.g. 2026-11-23T09:00:00+00:00)")
        return cls(time=moment)


@dataclass(frozen=True)
class ReplayFilter:
    customer: str | None = None
    event_type: str | None = None

    def matches(self, key: bytes | None, value: bytes) -> bool:
        if self.customer is not None and (key or b"").decode(errors="replace") != self.customer:
            return False
        if self.event_type is None:
            return True
        try:
            event = json.loads(value)
        except ValueError:
            return False
        if not isinstance(event, dict):
            return False
        data = event.get("data")
        inner = data.get("type") if isinstance(data, dict) else None
        return self.event_type in {event.get("type"), inner}


@dataclass
class ReplaySummary:
    topic: str
    into: str
    dry_run: bool
    scanned: int = 0
    matched: int = 0
    published: int = 0
    seconds: float = 0.0
    per_partition: dict[int, tuple[int, int]] = field(default_factory=dict)


async def partitions_of(bootstrap: str | Kafka, topic: str) -> list[TopicPartition]:
    """The topic's partitions; ValueError when the topic does not exist."""
    kafka = _kafka(bootstrap)
    return await topic_reader.partitions_of(kafka.bootstrap, kafka.options, topic)


async def _resolve(consumer: AIOKafkaConsumer, partitions: Sequence[TopicPartition],
                   position: Position, *, default: str) -> dict[TopicPartition, int]:
    edge = position.edge or (None if position.time or position.offset is not None else default)
    if edge == "earliest":
        return dict(await consumer.beginning_offsets(list(partitions)))
    ends = dict(await consumer.end_offsets(list(partitions)))
    if edge == "latest":
        return ends
    if position.offset is not None:
        return {tp: min(position.offset, ends[tp]) for tp in partitions}
    assert position.time is not None
    stamp = int(position.time.timestamp() * 1000)
    found = await consumer.offsets_for_times(dict.fromkeys(partitions, stamp))
    return {tp: (found[tp].offset if found.get(tp) is not None else ends[tp])
            for tp in partitions}


async def replay(bootstrap: str | Kafka, topic: str, *, start: Position,
                 stop: Position | None = None, into: str | None = None,
                 only: ReplayFilter | None = None, dry_run: bool = False, rate: float | None = None,
                 on_total: Progress = _nothing, on_progress: Progress = _nothing,
                 ) -> ReplaySummary:
    """Re-publish the records of `topic` between `start` and `stop` (default: its end when the
    replay began) into `into` (default: the same topic), keeping keys and headers."""
    only = only or ReplayFilter()
    summary = ReplaySummary(topic, into or topic, dry_run)
    began = time.monotonic()
    consumer = _kafka(bootstrap).consumer(max_partition_fetch_bytes=MAX_RECORD_BYTES,
                                          fetch_max_bytes=MAX_RECORD_BYTES)
    producer = _kafka(bootstrap).producer(enable_idempotence=True, linger_ms=5,
                                          compression_type="gzip",
                                          max_request_size=MAX_RECORD_BYTES)
    await consumer.start()
    if not dry_run:
        await producer.start()
    try:
        partitions = await partitions_of(bootstrap, topic)
        begin = await _resolve(consumer, partitions, start, default="earliest")
        end = await _resolve(consumer, partitions, stop or Position(edge="latest"),
                             default="latest")
        todo = {tp: (begin[tp], end[tp]) for tp in partitions if begin[tp] < end[tp]}
        on_total(sum(b - a for a, b in todo.values()))
        await _copy(consumer, None if dry_run else producer, todo, summary, only=only,
                    rate=rate, on_progress=on_progress)
    finally:
        await consumer.stop()
        if not dry_run:
            await producer.stop()
    summary.seconds = time.monotonic() - began
    return summary


async def _copy(consumer: AIOKafkaConsumer, producer: AIOKafkaProducer | None,
                todo: dict[TopicPartition, tuple[int, int]], summary: ReplaySummary, *,
                only: ReplayFilter, rate: float | None, on_progress: Progress) -> None:
    """Read each partition from its first to its last offset, publishing what matches."""
    began = time.monotonic()
    consumer.assign(list(todo))
    for tp, (first, _) in todo.items():
        consumer.seek(tp, first)
    counts = {tp.partition: [0, 0] for tp in todo}
    pending: list[asyncio.Future[Any]] = []
    while todo:
        batch = await consumer.getmany(*todo, timeout_ms=500, max_records=1000)
        for tp, records in batch.items():
            end = todo[tp][1]
            inside = [r for r in records if r.offset < end]
            summary.scanned += len(inside)
            counts[tp.partition][0] += len(inside)
            on_progress(len(inside))
            for record in inside:
                if not only.matches(record.key, record.value):
                    continue
                summary.matched += 1
                counts[tp.partition][1] += 1
                if producer is None:
                    continue
                if rate:
                    await _pace(summary.published, rate, began)
                pending.append(await producer.send(summary.into, record.value, key=record.key,
                                                   headers=list(record.headers or ())))
                summary.published += 1
            if records and records[-1].offset + 1 >= end:
                del todo[tp]
                consumer.pause(tp)
        if len(pending) >= 1000:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)
    summary.per_partition = {p: (c[0], c[1]) for p, c in sorted(counts.items())}


async def _pace(sent: int, rate: float, began: float) -> None:
    due = began + sent / rate
    delay = due - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


# --- dead letters ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Letter:
    """A dead letter read back from the dead-letter topic."""

    letter: DeadLetter
    topic_offset: int

    @property
    def original(self) -> bytes:
        return base64.b64decode(self.letter.value_b64)

    @property
    def key(self) -> bytes | None:
        return base64.b64decode(self.letter.key_b64) if self.letter.key_b64 else None

    @property
    def headers(self) -> list[tuple[str, bytes]]:
        return [(h.key, base64.b64decode(h.value_b64)) for h in self.letter.headers]


async def read_to_end(bootstrap: str | Kafka, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record on `topic` now, partition by partition (none when it does not exist)."""
    kafka = _kafka(bootstrap)
    return await topic_reader.read_to_end(kafka.bootstrap, kafka.options, topic)


async def read_dead_letters(bootstrap: str | Kafka, topic: str) -> list[Letter]:
    """Every dead letter on `topic`, oldest first (unreadable entries are skipped). The topic
    is compacted by dead letter id: a later letter under the same id (an erased one)
    replaces the earlier, here as after compaction (docs/adr/0007)."""
    latest: dict[str, Letter] = {}
    for record in await read_to_end(bootstrap, topic):
        try:
            event = MessageDeadLettered.model_validate_json(record.value)
        except ValidationError:
            continue
        latest[event.data.dead_letter_id] = Letter(event.data, record.offset)
    return sorted(latest.values(), key=lambda item: item.letter.failed_at)


# --- the audit trail ---------------------------------------------------------------------------


async def read_audit(bootstrap: str | Kafka, topic: str) -> list[AuditEntry]:
    """The audit trail on `topic`, oldest first, each entry once (an entry published again
    after a crash carries the same id)."""
    entries: dict[str, AuditEntry] = {}
    for record in await read_to_end(bootstrap, topic):
        try:
            event = AuditRecorded.model_validate_json(record.value)
        except ValidationError:
            continue
        entries.setdefault(event.data.audit_id, event.data)
    return sorted(entries.values(), key=lambda entry: entry.at)


async def publish_audit(bootstrap: str | Kafka, topic: str, entry: AuditEntry) -> None:
    """One audit entry as an `amends.audit.recorded` event, keyed by its customer (or what
    was acted on), acknowledged by every in-sync replica."""
    event = AuditRecorded(id=entry.audit_id, source=f"amends/{entry.service}", time=entry.at,
                          subject=entry.customer_id or entry.target, data=entry)
    producer = _kafka(bootstrap).producer(enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(topic, event.model_dump_json().encode(),
                                     key=(entry.customer_id or entry.target).encode())
    finally:
        await producer.stop()


# How long a redrive waits for the broker to return one original record.
ORIGINAL_READ_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Original:
    """The record a dead letter came from, as it is on its topic now."""

    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


@dataclass(frozen=True)
class Refusal:
    """A dead letter a redrive did not send back, and why."""

    letter: Letter
    reason: str


@dataclass
class RedriveSummary:
    redriven: list[Letter] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)


def _where(letter: DeadLetter) -> str:
    return f"{letter.topic}[{letter.partition}]@{letter.offset}"


async def _read_original(consumer: AIOKafkaConsumer, tp: TopicPartition,
                         offset: int) -> ConsumerRecord[bytes, bytes] | None:
    """The record at `offset`, or the first one after it when it is gone (compacted), or
    None when the broker returns nothing in time."""
    consumer.assign([tp])
    consumer.seek(tp, offset)
    deadline = time.monotonic() + ORIGINAL_READ_TIMEOUT_S
    while (left := deadline - time.monotonic()) > 0:
        batch = await consumer.getmany(tp, timeout_ms=int(min(left, 1.0) * 1000),
                                       max_records=1)
        for record in batch.get(tp, []):
            return record
    return None


async def read_originals(bootstrap: str | Kafka, letters: Sequence[Letter],
                         ) -> dict[str, Original | str]:
    """For each letter that carries only an excerpt, its original record re-read from its
    topic, partition and offset, or why it cannot be (gone with retention, compaction or a
    deleted topic, or another record there now), by dead letter id."""
    found: dict[str, Original | str] = {}
    if not letters:
        return found
    consumer = _kafka(bootstrap).consumer(max_partition_fetch_bytes=MAX_RECORD_BYTES,
                                          fetch_max_bytes=MAX_RECORD_BYTES)
    await consumer.start()
    try:
        for topic in sorted({item.letter.topic for item in letters}):
            of_topic = [item for item in letters if item.letter.topic == topic]
            try:
                partitions = set(await partitions_of(bootstrap, topic))
            except ValueError:
                for item in of_topic:
                    found[item.letter.dead_letter_id] = (
                        f"its original at {_where(item.letter)} is gone: the topic no "
                        "longer exists")
                continue
            for item in of_topic:
                found[item.letter.dead_letter_id] = await _original(consumer, partitions,
                                                                    item.letter)
    finally:
        await consumer.stop()
    return found


async def _original(consumer: AIOKafkaConsumer, partitions: set[TopicPartition],
                    letter: DeadLetter) -> Original | str:
    where = _where(letter)
    tp = TopicPartition(letter.topic, letter.partition)
    if tp not in partitions:
        return f"its original at {where} is gone: the topic has no partition {tp.partition}"
    first = (await consumer.beginning_offsets([tp]))[tp]
    end = (await consumer.end_offsets([tp]))[tp]
    if letter.offset < first:
        return (f"its original at {where} is gone: the partition now begins at offset "
                f"{first} (retention or deleted records)")
    if letter.offset >= end:
        return (f"its original at {where} is gone: the partition ends at offset {end} (the "
                "topic was deleted and created again)")
    record = await _read_original(consumer, tp, letter.offset)
    if record is None:
        return (f"its original at {where} could not be read within "
                f"{ORIGINAL_READ_TIMEOUT_S:.0f}s")
    if record.offset != letter.offset or record.value is None:
        return f"its original at {where} is gone: compacted away or deleted (a tombstone)"
    excerpt = base64.b64decode(letter.value_b64)
    if ((letter.value_bytes is not None and len(record.value) != letter.value_bytes)
            or not record.value.startswith(excerpt)):
        return (f"the record at {where} is not its original: {len(record.value)} bytes "
                f"where the letter says {letter.value_bytes}, or another beginning (the "
                "topic was deleted and created again)")
    return Original(record.key, record.value, list(record.headers or ()))


async def redrive(bootstrap: str | Kafka, letters: Sequence[Letter]) -> RedriveSummary:
    """Publish each letter's original bytes, key and headers to its original topic, with
    the letter's id in the `amends-redrive` header. A letter that carries only an excerpt of
    a record too large for it is sent back with the original, re-read from its topic; one
    whose original is gone, or cannot be published, is refused with the reason and the others
    go on."""
    summary = RedriveSummary()
    originals = await read_originals(
        bootstrap, [i for i in letters if i.letter.truncated and not i.letter.erased])
    sendable: list[tuple[Letter, Original]] = []
    for item in letters:
        whole = originals.get(item.letter.dead_letter_id,
                              Original(item.key, item.original, item.headers))
        if item.letter.erased:
            summary.refused.append(Refusal(item, "a customer's data was erased from it: "
                                                 "there is nothing whole to send back"))
        elif isinstance(whole, str):
            summary.refused.append(Refusal(item, whole))
        else:
            sendable.append((item, whole))
    if not sendable:
        return summary
    producer = _kafka(bootstrap).producer(enable_idempotence=True, compression_type="gzip",
                                          max_request_size=MAX_RECORD_BYTES)
    await producer.start()
    sent: list[tuple[Letter, asyncio.Future[Any]]] = []
    try:
        for item, whole in sendable:
            headers = [(k, v) for k, v in whole.headers if k != REDRIVE_HEADER]
            headers.append((REDRIVE_HEADER, item.letter.dead_letter_id.encode()))
            try:
                sent.append((item, await producer.send(item.letter.topic, whole.value,
                                                       key=whole.key, headers=headers)))
            except KafkaError as exc:  # too large even for a redrive: this letter alone
                summary.refused.append(Refusal(item, f"could not be published: {exc!r}"))
        results = await asyncio.gather(*(future for _, future in sent),
                                       return_exceptions=True)
    finally:
        await producer.stop()
    for (item, _), result in zip(sent, results, strict=True):
        if isinstance(result, BaseException):
            summary.refused.append(Refusal(item, f"could not be published: {result!r}"))
        else:
            summary.redriven.append(item)
    return summary


async def read_slice(bootstrap: str | Kafka, topic: str, *, start: Position,
                     stop: Position | None = None, on_total: Progress = _nothing,
                     on_progress: Progress = _nothing) -> list[bytes]:
    """The values of `topic` between `start` and `stop` (default: its end now), partition by
    partition."""
    consumer = _kafka(bootstrap).consumer()
    await consumer.start()
    values: list[bytes] = []
    try:
        partitions = await partitions_of(bootstrap, topic)
        begin = await _resolve(consumer, partitions, start, default="earliest")
        end = await _resolve(consumer, partitions, stop or Position(edge="latest"),
                             default="latest")
        todo = {tp: end[tp] for tp in partitions if begin[tp] < end[tp]}
        on_total(sum(end[tp] - begin[tp] for tp in todo))
        consumer.assign(list(todo))
        for tp in todo:
            consumer.seek(tp, begin[tp])
        while todo:
            batch = await consumer.getmany(*todo, timeout_ms=500, max_records=5000)
            for tp, records in batch.items():
                inside = [r.value for r in records if r.offset < todo[tp] and r.value]
                values.extend(inside)
                on_progress(len(inside))
                if records and records[-1].offset + 1 >= todo[tp]:
                    del todo[tp]
                    consumer.pause(tp)
    finally:
        await consumer.stop()
    return values
