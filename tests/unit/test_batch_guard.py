"""One bad record never halts a partition: a failing batch is retried, then narrowed down to
the records that fail alone, which are dead-lettered alone; an outage is never
dead-lettered; a record too large to carry whole is dead-lettered with an excerpt."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry
from pymongo.errors import ServerSelectionTimeoutError

from schemas.deadletter import DeadLetterReason, MessageDeadLettered
from services.common.errors import TransientError
from services.common.messaging import (
    EXCERPT_VALUE_BYTES,
    BatchGuard,
    ConsumerMetrics,
    DeadLetters,
    Outgoing,
    Record,
    is_outage,
)
from tests.clock import FakeClock

pytestmark = pytest.mark.unit


class Published:
    def __init__(self) -> None:
        self.messages: list[Outgoing] = []

    async def publish_all(self, messages: Sequence[Outgoing]) -> None:
        self.messages.extend(messages)

    def letters(self) -> list[MessageDeadLettered]:
        return [MessageDeadLettered.model_validate_json(m.value) for m in self.messages]


class Handler:
    """Fails for every call that holds a poisoned record; remembers what it handled."""

    def __init__(self, poisoned: set[bytes], error: Exception | None = None,
                 flaky: int = 0) -> None:
        self.poisoned = poisoned
        self.error = error or ValueError("cannot quantize 10.005 EUR")
        self.flaky = flaky
        self.done: list[bytes] = []
        self.calls = 0

    async def __call__(self, records: list[Record]) -> None:
        self.calls += 1
        if self.flaky:
            self.flaky -= 1
            raise self.error
        if any(r.value in self.poisoned for r in records):
            raise self.error
        self.done.extend(r.value for r in records)


def records(n: int, size: int = 10) -> list[Record]:
    return [Record("t", 0, offset, b"c-1", f"{offset}".encode().ljust(size, b" "))
            for offset in range(n)]


def guard(handle: Handler) -> tuple[BatchGuard, Published, CollectorRegistry]:
    registry = CollectorRegistry()
    published = Published()
    letters = DeadLetters("svc", "dlq", published,
                          FakeClock(datetime(2026, 12, 6, tzinfo=UTC)), registry)
    return (BatchGuard(handle, letters, name="h", metrics=ConsumerMetrics(registry),
                       attempts=3, pause=lambda _: 0.0), published, registry)


async def test_a_record_that_fails_alone_is_dead_lettered_alone_and_the_rest_goes_on(
        ) -> None:
    batch = records(21)
    bad = {batch[3].value, batch[17].value}
    handle = Handler(bad)
    run, published, registry = guard(handle)
    await run.run(batch)
    assert sorted(handle.done) == sorted(r.value for r in batch if r.value not in bad)
    letters = published.letters()
    assert [(e.data.offset, e.data.reason) for e in letters] == [
        (3, DeadLetterReason.processing_failed), (17, DeadLetterReason.processing_failed)]
    assert all("ValueError: cannot quantize 10.005 EUR" in e.data.error for e in letters)
    assert base64.b64decode(letters[0].data.value_b64) == batch[3].value
    assert letters[0].data.truncated is False
    assert registry.get_sample_value(
        "amends_dead_letters_total", {"service": "svc", "reason": "processing_failed"}) == 2


async def test_a_batch_that_fails_once_is_retried_whole_and_nothing_is_dead_lettered(
        ) -> None:
    batch = records(5)
    handle = Handler(set(), flaky=2)
    run, published, _ = guard(handle)
    await run.run(batch)
    assert handle.calls == 3
    assert handle.done == [r.value for r in batch]
    assert published.messages == []


@pytest.mark.parametrize("error", [
    ServerSelectionTimeoutError("127.0.0.1:27017: connection refused"),
    ConnectionRefusedError("broker"), TransientError("the budget kept changing")])
async def test_an_outage_is_raised_for_redelivery_and_never_dead_lettered(
        error: Exception) -> None:
    handle = Handler({b"0         "}, error=error)
    run, published, _ = guard(handle)
    with pytest.raises(type(error)):
        await run.run(records(4))
    assert handle.calls == 1
    assert published.messages == []


def test_an_outage_is_recognised_behind_the_error_it_caused() -> None:
    wrapped = RuntimeError("could not record")
    wrapped.__cause__ = ServerSelectionTimeoutError("down")
    assert is_outage(wrapped)
    assert not is_outage(RuntimeError("could not record"))
    assert not is_outage(ValueError("bad amount"))


async def test_a_record_too_large_to_carry_whole_is_dead_lettered_with_an_excerpt() -> None:
    huge = Record("upstream.orders", 2, 41, b"c-9", json.dumps(
        {"note": "x" * 2_000_000}).encode(), (("content-type", b"application/json"),))
    handle = Handler({huge.value})
    run, published, _ = guard(handle)
    await run.run([huge])
    [message] = published.messages
    assert len(message.value) < 200_000
    letter = MessageDeadLettered.model_validate_json(message.value).data
    assert (letter.topic, letter.partition, letter.offset) == ("upstream.orders", 2, 41)
    assert letter.truncated is True
    assert letter.value_bytes == len(huge.value)
    assert base64.b64decode(letter.value_b64) == huge.value[:EXCERPT_VALUE_BYTES]
