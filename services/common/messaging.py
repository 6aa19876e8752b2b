"""Kafka plumbing shared by the services: the broker, batch subscribers, publishing and
dead-lettering. Business logic never lives here."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    TopicPartition,
)
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    CommitFailedError,
    ConsumerStoppedError,
    IllegalStateError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    TopicAlreadyExistsError,
)
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder
from faststream import AckPolicy
from faststream.exceptions import IncorrectState
from faststream.kafka import KafkaBroker, KafkaMessage
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.kafka.security import parse_security
from faststream.message import StreamMessage
from faststream.security import (
    BaseSecurity,
    SASLPlaintext,
    SASLScram256,
    SASLScram512,
)
from prometheus_client import CollectorRegistry, Counter, Gauge
from pymongo.errors import ConnectionFailure

from schemas.common import deterministic_id
from schemas.deadletter import (
    DeadLetter,
    DeadLetterHeader,
    DeadLetterReason,
    MessageDeadLettered,
)
from schemas.envelope import CONTENT_TYPE, CloudEvent
from services.common.clock import Clock
from services.common.errors import TransientError, chain, describe_error
from services.common.settings import ServiceSettings

if TYPE_CHECKING:
    from services.common.tracing import Tracing

log = logging.getLogger(__name__)

HEADERS: tuple[tuple[str, bytes], ...] = (("content-type", CONTENT_TYPE.encode()),)


@dataclass(frozen=True, slots=True)
class Record:
    """One consumed Kafka message, independent of the client library."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()

    @classmethod
    def of(cls, raw: Any) -> Record:
        return cls(raw.topic, raw.partition, raw.offset, raw.key, raw.value or b"",
                   tuple(raw.headers or ()))


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message to publish, keyed by customer id so one customer's messages stay ordered."""

    topic: str
    key: str
    value: bytes
    incident_id: str | None = None  # whose trace the message belongs to (`tracing`)
    headers: tuple[tuple[str, bytes], ...] = HEADERS


def _incident_of(event: CloudEvent[Any]) -> str | None:
    """The incident an event is about: its data's `incident_id` (an incident, an outcome, a
    task) or its incident's (a decision)."""
    data = event.data
    found = getattr(data, "incident_id", None)
    if found is None:
        found = getattr(getattr(data, "incident", None), "incident_id", None)
    return found if isinstance(found, str) else None


def outgoing(topic: str, event: CloudEvent[Any]) -> Outgoing:
    return Outgoing(topic, event.subject or "", event.model_dump_json().encode(),
                    _incident_of(event))


class Publisher(Protocol):
    async def publish_all(self, messages: Sequence[Outgoing]) -> None:
        """Publish and wait until the broker has acknowledged every message."""


class KafkaPublisher:
    """Publishes through the broker's idempotent producer (acks from all replicas). The
    messages of one call are packed into a record batch per partition, the partition a keyed
    send would pick, in their order; the call returns once the broker has acknowledged every
    batch. Sending each message alone cost about three times the CPU (`docs/performance.md`).
    Each message is counted in `amends_published_messages_total` once it is acknowledged, or
    with status `error` when its call fails."""

    def __init__(self, broker: KafkaBroker, registry: CollectorRegistry) -> None:
        self._broker = broker
        self.counter = Counter(
            "amends_published_messages",
            "Messages published: acknowledged by the broker (success), or failed (error)",
            ["topic", "status"], registry=registry,
        )

    async def publish_all(self, messages: Sequence[Outgoing]) -> None:
        if not messages:
            return
        try:
            await asyncio.gather(*await send_packed(_producer(self._broker), messages))
        except Exception:
            self._count(messages, "error")
            raise
        self._count(messages, "success")

    def _count(self, messages: Sequence[Outgoing], status: str) -> None:
        per_topic: dict[str, int] = {}
        for message in messages:
            per_topic[message.topic] = per_topic.get(message.topic, 0) + 1
        for topic, count in per_topic.items():
            self.counter.labels(topic, status).inc(count)


_PARTITIONER = DefaultPartitioner()
BATCH_BYTES = 256 * 1024  # the producers' batch size: a call's messages per partition in few


async def send_packed(producer: AIOKafkaProducer,
                      messages: Sequence[Outgoing]) -> list[asyncio.Future[Any]]:
    """Hands `messages` to `producer` packed into a record batch per partition (the one a
    keyed send picks), in their order; returns the futures of their delivery."""
    partitions: dict[str, list[int]] = {}
    batches: dict[tuple[str, int], BatchBuilder] = {}
    sent: list[asyncio.Future[Any]] = []

    async def flush(topic: str, partition: int) -> None:
        batch = batches.pop((topic, partition), None)
        if batch is not None and batch.record_count():
            sent.append(await producer.send_batch(batch, topic, partition=partition))

    for message in messages:
        topic, key, value = message.topic, message.key.encode(), message.value
        headers = list(message.headers)
        known = partitions.get(topic)
        if known is None:
            known = partitions[topic] = sorted(await producer.partitions_for(topic))
        partition = _PARTITIONER(key, known, known)
        batch = batches.get((topic, partition))
        if batch is None:
            batch = batches[topic, partition] = producer.create_batch()
        if batch.append(key=key, value=value, timestamp=None,
                        headers=headers) is not None:
            continue
        await flush(topic, partition)  # full: the next batch takes the message
        batch = batches[topic, partition] = producer.create_batch()
        if batch.append(key=key, value=value, timestamp=None,
                        headers=headers) is None:
            # Larger than a batch may be: alone, after what was before it.
            sent.append(await producer.send(topic, value, key=key, partition=partition,
                                            headers=headers))
    for topic, partition in list(batches):
        await flush(topic, partition)
    return sent


class BrokerUnavailableError(ConnectionError, RuntimeError):
    """The broker is not connected (an outage: what was to be published waits)."""


def _producer(broker: KafkaBroker) -> AIOKafkaProducer:
    """The broker's own aiokafka producer, started with the broker (its settings: idempotence,
    acks, security). FastStream keeps it behind its publish command; a version that moves it
    fails here, and in the outbox and publishing tests, rather than publishing differently."""
    try:
        producer = getattr(getattr(broker.config.producer, "_producer", None), "producer", None)
    except IncorrectState:  # the broker is not connected (or no longer)
        producer = None
    if isinstance(producer, AIOKafkaProducer):
        return producer
    raise BrokerUnavailableError("the Kafka broker is not connected: no producer to publish with")


# What a dead letter carries of its record at most: its letter stays far below the broker's
# 1 MiB message limit even base64-encoded.
EXCERPT_VALUE_BYTES = 64 * 1024
EXCERPT_KEY_BYTES = 1024
EXCERPT_HEADER_BYTES = 16 * 1024


def _excerpt(record: Record) -> tuple[bytes, bytes | None, list[tuple[str, bytes]], bool]:
    """The value, key and headers a dead letter carries, and whether any was cut."""
    value = record.value[:EXCERPT_VALUE_BYTES]
    key = record.key[:EXCERPT_KEY_BYTES] if record.key is not None else None
    headers: list[tuple[str, bytes]] = []
    room = EXCERPT_HEADER_BYTES
    for name, content in record.headers:
        size = len(name) + len(content)
        if size > room:
            break
        headers.append((name, content))
        room -= size
    cut = (len(value) < len(record.value) or len(headers) < len(record.headers)
           or (key is not None and record.key is not None and len(key) < len(record.key)))
    return value, key, headers, cut


class DeadLetters:
    """Sends what a service cannot process to the dead-letter topic, whole, with the reason."""

    def __init__(self, service: str, topic: str, publisher: Publisher, clock: Clock,
                 registry: CollectorRegistry) -> None:
        self._service = service
        self._topic = topic
        self._publisher = publisher
        self._clock = clock
        self.counter = Counter(
            "amends_dead_letters_total", "Messages sent to the dead-letter topic",
            ["service", "reason"], registry=registry,
        )
        for reason in DeadLetterReason:  # present from the start, so the first one is a rise
            self.counter.labels(service, reason.value)

    def letter(self, record: Record, reason: DeadLetterReason, error: str,
               part: str = "") -> Outgoing:
        """The dead letter of `record`; `part` tells apart several letters of one record
        (the failed actions of one decision). A record too large to carry whole (it came
        compressed under the broker's limit) is cut to an excerpt, so that its letter can
        always be published."""
        now = self._clock()
        value, key, headers, cut = _excerpt(record)
        letter = DeadLetter(
            dead_letter_id=deterministic_id("deadletter", self._service, record.topic,
                                            str(record.partition), str(record.offset),
                                            *([part] if part else [])),
            service=self._service,
            reason=reason,
            error=error[:8000],
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key_b64=base64.b64encode(key).decode() if key is not None else None,
            value_b64=base64.b64encode(value).decode(),
            headers=[DeadLetterHeader(key=k, value_b64=base64.b64encode(v).decode())
                     for k, v in headers],
            truncated=cut,
            value_bytes=len(record.value),
            failed_at=now,
        )
        event = MessageDeadLettered(id=letter.dead_letter_id, source=f"amends/{self._service}",
                                    time=now, subject=letter.topic, data=letter)
        # Keyed by its own id, not the record's key: the topic is compacted by it, so that an
        # erased copy replaces the letter for good (docs/adr/0007).
        return Outgoing(self._topic, letter.dead_letter_id, event.model_dump_json().encode())

    async def send(self, letters: Sequence[tuple[Record, DeadLetterReason, str]], *,
                   parts: Sequence[str] | None = None) -> None:
        if not letters:
            return
        parts = parts or [""] * len(letters)
        await self._publisher.publish_all([self.letter(*item, part)
                                           for item, part in zip(letters, parts, strict=True)])
        for record, reason, error in letters:
            self.counter.labels(self._service, reason.value).inc()
            log.warning("dead-lettered %s[%d]@%d: %s: %s", record.topic, record.partition,
                        record.offset, reason.value, error[:300])


def kafka_security(settings: ServiceSettings) -> BaseSecurity | None:
    """TLS and SASL (PLAIN or SCRAM) for managed Kafka, from the settings."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    tls = protocol.endswith("SSL")
    context = ssl.create_default_context(
        cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
    ) if tls else None
    if protocol == "SSL":
        return BaseSecurity(ssl_context=context, use_ssl=True)
    if not settings.kafka_sasl_username or settings.kafka_sasl_password is None:
        raise ValueError(f"kafka_security_protocol {protocol} needs kafka_sasl_username and "
                         "kafka_sasl_password")
    user, password = settings.kafka_sasl_username, settings.kafka_sasl_password.get_secret_value()
    if settings.kafka_sasl_mechanism == "PLAIN":
        return SASLPlaintext(user, password, ssl_context=context, use_ssl=tls)
    if settings.kafka_sasl_mechanism == "SCRAM-SHA-256":
        return SASLScram256(user, password, ssl_context=context, use_ssl=tls)
    return SASLScram512(user, password, ssl_context=context, use_ssl=tls)


def kafka_client_options(settings: ServiceSettings) -> dict[str, Any]:
    """The same TLS and SASL as keyword arguments of aiokafka's own clients (the operators'
    tools read and write topics with those)."""
    return parse_security(kafka_security(settings))


def make_broker(settings: ServiceSettings, registry: CollectorRegistry) -> KafkaBroker:
    return KafkaBroker(
        settings.kafka_bootstrap,
        security=kafka_security(settings),
        client_id=f"amends-{settings.service_name}",
        enable_idempotence=True,
        acks="all",
        linger_ms=0,  # `send_packed` hands over whole batches: lingering only delays them
        max_batch_size=BATCH_BYTES,
        middlewares=[KafkaPrometheusMiddleware(registry=registry,
                                               app_name=settings.service_name)],
        graceful_timeout=15.0,
    )


async def _raw_batch(message: StreamMessage[Any]) -> list[bytes]:
    # Bodies stay bytes: the service parses each one so a bad one can be dead-lettered alone.
    return list(message.body)


BatchHandler = Callable[[list[Record]], Awaitable[None]]


class ConsumerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.lag = Gauge("amends_consumer_lag_messages",
                         "Messages behind the end of each consumed partition",
                         ["topic", "partition"], registry=registry)
        self.batch_failures = Counter("amends_batch_failures_total",
                                      "Batches that failed and will be redelivered",
                                      ["handler"], registry=registry)

    def observe_lag(self, consumer: Any, records: Sequence[Record]) -> None:
        if not hasattr(consumer, "highwater"):  # FastStream's TestKafkaBroker has no fetcher
            return
        last: dict[tuple[str, int], int] = {}
        for record in records:
            last[record.topic, record.partition] = record.offset
        for (topic, partition), offset in last.items():
            highwater = consumer.highwater(TopicPartition(topic, partition))
            if highwater is not None:
                self.lag.labels(topic, str(partition)).set(max(0, highwater - offset - 1))


_OUTAGES: tuple[type[BaseException], ...] = (
    TransientError, ConnectionFailure, KafkaConnectionError, KafkaTimeoutError,
    ConnectionError, TimeoutError, socket.gaierror)


def is_outage(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) means the infrastructure is unreachable, the
    database or the broker: then the records are fine and must wait, never be
    dead-lettered."""
    return any(isinstance(error, _OUTAGES)
               or (isinstance(error, KafkaError) and error.retriable) for error in chain(exc))


Failed = tuple[Record, DeadLetterReason, str]


class BatchGuard:
    """Runs a batch handler so that one bad record never halts its partition.

    A batch that raises is tried `attempts` times (pausing between); then it is split in
    halves, each tried once, down to single records, each tried `attempts` times. A record
    that still fails alone is dead-lettered alone (`processing_failed`, with the error) and
    the rest of the batch goes on. An outage (`is_outage`) is raised at once: the whole
    batch is redelivered later and nothing is dead-lettered for it. Handlers are idempotent,
    so running part of a batch again is safe; only whole batches pause, so isolating costs
    the handler's time and no more (a batch stays within the consumer's poll interval)."""

    def __init__(self, handle: BatchHandler, dead_letters: DeadLetters | None, *, name: str,
                 metrics: ConsumerMetrics, attempts: int,
                 pause: Callable[[int], float]) -> None:
        self.handle = handle
        self.dead_letters = dead_letters
        self.name = name
        self.metrics = metrics
        self.attempts = max(1, attempts)
        self.pause = pause

    async def run(self, records: list[Record]) -> None:
        error = await self._attempt(records, self.attempts, pause=True)
        if error is None:
            return
        failed: list[Failed] = []
        if len(records) == 1:
            failed.append((records[0], DeadLetterReason.processing_failed, error))
        else:
            await self._split(records, failed)
        if self.dead_letters is None:  # nowhere to put them: redelivered, as before
            raise RuntimeError(f"{self.name}: {len(failed)} records failed: {failed[0][2]}")
        await self.dead_letters.send(failed)

    async def _attempt(self, records: list[Record], attempts: int, *,
                       pause: bool = False) -> str | None:
        """None once `records` were handled, else the last error."""
        error = ""
        for attempt in range(1, attempts + 1):
            try:
                await self.handle(records)
            except Exception as exc:
                if is_outage(exc):
                    raise
                self.metrics.batch_failures.labels(self.name).inc()
                error = describe_error(exc)  # no document bodies: codes and ids
                log.warning("%s: %d records failed (attempt %d of %d): %s", self.name,
                            len(records), attempt, attempts, error[:300],
                            exc_info=attempt == attempts)
                if pause and attempt < attempts:
                    await asyncio.sleep(self.pause(attempt))
                continue
            return None
        return error

    async def _split(self, records: list[Record], failed: list[Failed]) -> None:
        middle = len(records) // 2
        for half in (records[:middle], records[middle:]):
            if len(half) == 1:
                error = await self._attempt(half, self.attempts)
                if error is not None:
                    failed.append((half[0], DeadLetterReason.processing_failed, error))
            elif await self._attempt(half, 1) is not None:
                await self._split(half, failed)


class OffsetCommits:
    """A consumer's handled offsets, committed in the background so that the next poll does
    not wait for the group coordinator's answer to the last one.

    One task commits, one request at a time, the latest handled offset of each partition: the
    commits reach the broker in the order the batches were handled, and a slow coordinator
    makes them fewer rather than queued. A batch's offsets are noted only once it is handled
    (its writes done, its messages acknowledged by the broker), so a crash before the commit
    means redelivery, never loss. A batch polled before a rebalance and handled after it
    commits nothing: its partitions may have moved, and their new owner handles its records
    again (idempotent). Before partitions are revoked and before the consumer stops, what is
    noted is committed (`drain`, for at most `timeout_s`: past it, redelivery again)."""

    def __init__(self, name: str, *, timeout_s: float = 5.0,
                 retry_s: float = 1.0) -> None:
        self.name = name
        self.timeout_s = timeout_s
        self.retry_s = retry_s
        self._generation = 0  # counts revocations
        self._polled_in = 0  # the generation the batch in hand was polled in
        self._consumer: AIOKafkaConsumer | None = None
        self._due: dict[TopicPartition, int] = {}
        self._wake = asyncio.Event()
        self._settled = asyncio.Event()  # nothing due, no commit in flight
        self._settled.set()
        self._task: asyncio.Task[None] | None = None

    def polling(self) -> None:
        """A poll begins: what it returns belongs to the current assignment."""
        self._polled_in = self._generation

    def note(self, consumer: AIOKafkaConsumer, records: Sequence[Record]) -> None:
        """`records` (of the last poll) are handled: their offsets are due."""
        if self._polled_in != self._generation:
            log.info("%s: a batch of %d straddled a rebalance; its offsets are not "
                     "committed (redelivered)", self.name, len(records))
            return
        due = self._due
        for record in records:
            partition = TopicPartition(record.topic, record.partition)
            if record.offset >= due.get(partition, 0):
                due[partition] = record.offset + 1
        if not due:
            return
        self._consumer = consumer
        self._settled.clear()
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"{self.name}-commits")

    async def drain(self) -> None:
        """Wait until what is due now is committed (or `timeout_s` has passed)."""
        if self._settled.is_set():
            return
        try:
            await asyncio.wait_for(self._settled.wait(), self.timeout_s)
        except TimeoutError:
            log.warning("%s: offsets not committed within %.0f s; their records will be "
                        "redelivered", self.name, self.timeout_s)

    async def revoked(self, partitions: Iterable[TopicPartition]) -> None:
        """Before a rebalance takes `partitions` away: commit what was handled, and forget
        what could not be committed (it is redelivered to the partitions' next owner)."""
        self._generation += 1
        await self.drain()
        for partition in partitions:
            self._due.pop(partition, None)
        if not self._due:
            self._settled.set()

    async def close(self) -> None:
        """Once the consumer has stopped: what is still due can no longer be committed."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._due.clear()
        self._settled.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            due, self._due = self._due, {}
            if due and self._consumer is not None:
                await self._commit(self._consumer, due)
            if not self._due:
                self._settled.set()

    async def _commit(self, consumer: AIOKafkaConsumer, due: dict[TopicPartition, int]) -> None:
        assigned = consumer.assignment()
        offsets = {partition: offset for partition, offset in due.items()
                   if partition in assigned}
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError, ConsumerStoppedError) as exc:
            # The group moved on (or the consumer stopped): the partitions' next owner
            # handles these records again.
            log.warning("%s: offsets %s not committed (%s); their records will be "
                        "redelivered", self.name, _offsets(offsets), type(exc).__name__)
        except Exception as exc:
            log.warning("%s: committing offsets %s failed (%s); trying again in %.0f s",
                        self.name, _offsets(offsets), describe_error(exc)[:300],
                        self.retry_s)
            for partition, offset in offsets.items():  # unless a later batch superseded it
                if offset > self._due.get(partition, 0):
                    self._due[partition] = offset
            await asyncio.sleep(self.retry_s)
            self._wake.set()


def _offsets(offsets: dict[TopicPartition, int]) -> str:
    return ", ".join(f"{p.topic}[{p.partition}]@{o}" for p, o in sorted(offsets.items()))


class _CommitBeforeRevoking(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, commits: OffsetCommits) -> None:
        self.commits = commits

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.commits.revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        del assigned


def subscribe_batches(broker: KafkaBroker, settings: ServiceSettings, topics: Sequence[str],
                      handle: BatchHandler, *, name: str, metrics: ConsumerMetrics,
                      dead_letters: DeadLetters | None = None,
                      retry_delay: Callable[[int], float] | None = None,
                      tracing: Tracing | None = None) -> OffsetCommits:
    """Consume `topics` in batches in the service's group; a batch's offsets are committed
    only after it is done, in the background (`OffsetCommits`), so the next batch is polled
    meanwhile. A record that fails on its own is dead-lettered alone and the rest go on
    (`BatchGuard`); when the database or the broker is unreachable, the batch is redelivered
    after a growing pause instead of being skipped or crash-looping. With `tracing`, each
    batch is a hop: a span per incident, children of the records' headers."""
    failures = 0
    delay = retry_delay or (lambda n: min(30.0, 0.5 * 2 ** min(n, 6)))
    guard = BatchGuard(handle, dead_letters, name=name, metrics=metrics,
                       attempts=settings.batch_attempts, pause=delay)
    commits = OffsetCommits(name)

    async def on_batch(body: list[bytes], message: KafkaMessage) -> None:
        nonlocal failures
        del body  # the raw records carry the same bytes plus their coordinates
        records = [Record.of(raw) for raw in message.raw_message]
        metrics.observe_lag(message.consumer, records)
        try:
            if tracing is None:
                await guard.run(records)
            else:
                with tracing.hop(name, records):
                    await guard.run(records)
        except Exception:
            failures += 1
            metrics.batch_failures.labels(name).inc()
            log.exception("%s: batch of %d failed (attempt %d); it will be redelivered",
                          name, len(records), failures)
            await asyncio.sleep(delay(failures))
            await message.nack()  # back to the batch's first records: polled again next
            raise
        failures = 0
        consumer = message.consumer
        if not isinstance(consumer, AIOKafkaConsumer):  # FastStream's TestKafkaBroker
            await message.ack()
            return
        commits.note(consumer, records)
        if not subscriber.running:  # stopping: the partitions go once this returns
            await commits.drain()

    on_batch.__name__ = name
    subscriber = broker.subscriber(
        *topics,
        batch=True,
        group_id=settings.group_id,
        # Acknowledged here, not by FastStream's commit after each batch (`OffsetCommits`).
        ack_policy=AckPolicy.MANUAL,
        auto_offset_reset="earliest",
        max_records=settings.batch_max_records,
        batch_timeout_ms=settings.batch_timeout_ms,
        max_poll_interval_ms=settings.max_poll_interval_ms,
        listener=_CommitBeforeRevoking(commits),
        decoder=_raw_batch,
    )
    subscriber(on_batch)
    poll_without_pause(subscriber, settings.batch_quiet_pause_ms, before_poll=commits.polling)
    stop = subscriber.stop

    async def commit_then_stop() -> None:
        # FastStream's stop waits for the batch in hand, then stops the consumer: what was
        # handled before must be committed first, and that batch commits as it ends.
        subscriber.running = False
        await commits.drain()
        await stop()
        await commits.close()

    subscriber.stop = commit_then_stop  # type: ignore[method-assign]
    return commits


def poll_without_pause(subscriber: Any, pause_ms: int = 0, *,
                       before_poll: Callable[[], None] | None = None) -> None:
    """FastStream's batch subscriber sleeps `batch_timeout_ms` after a poll that found
    nothing, on top of the poll's own wait for records: a record arriving during that sleep
    waited up to 50 ms more. The poll itself waits until records arrive or the timeout ends
    (aiokafka's `getmany`), so its answer is handed on as it is, after `pause_ms` when it
    was empty (`batch_quiet_pause_ms`). `before_poll` is called as each poll begins. A
    FastStream version that changes the subscriber fails here, at start, rather than polling
    differently."""
    if not (callable(getattr(subscriber, "get_msg", None))
            and isinstance(getattr(subscriber, "batch_timeout_ms", None), int)
            and isinstance(getattr(subscriber, "max_records", None), int)):
        raise TypeError(f"{type(subscriber).__name__} is not the batch subscriber this was "
                        "written for (get_msg, batch_timeout_ms, max_records)")

    async def get_msg(consumer: AIOKafkaConsumer) -> tuple[Any, ...]:
        if before_poll is not None:
            before_poll()
        polled = await consumer.getmany(timeout_ms=subscriber.batch_timeout_ms,
                                        max_records=subscriber.max_records)
        if not polled and pause_ms:
            await asyncio.sleep(pause_ms / 1000)
        return tuple(itertools.chain.from_iterable(polled.values()))

    subscriber.get_msg = get_msg


async def ensure_topics(bootstrap: str, names: Sequence[str], partitions: int,
                        replication: int = 1) -> None:
    """Create the topics that are missing (several partitions each); existing ones are kept."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in dict.fromkeys(names) if n not in existing]
        if missing:
            # Another process may create the same topic at the same moment.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([NewTopic(n, partitions, replication)
                                           for n in missing])
    finally:
        await admin.close()
