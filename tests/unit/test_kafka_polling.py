"""The consumers poll again at once after a quiet poll."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition
from faststream.kafka import KafkaBroker
from faststream.kafka.subscriber import usecase

from services.common.messaging import poll_without_pause

pytestmark = pytest.mark.unit


class _Consumer:
    """Answers polls from a script: each answer a {partition: records} map."""

    def __init__(self, *answers: dict[TopicPartition, list[str]]) -> None:
        self.answers = list(answers)
        self.polls: list[tuple[int, int]] = []

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[Any, list[str]]:
        self.polls.append((timeout_ms, max_records))
        return self.answers.pop(0)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(usecase, "anyio", SimpleNamespace(sleep=sleep))
    return slept


def _subscriber(broker: KafkaBroker) -> Any:
    subscriber = broker.subscriber("t", batch=True, group_id="g", max_records=7,
                                   batch_timeout_ms=40)

    async def handle(body: list[bytes]) -> None:
        del body

    subscriber(handle)
    return subscriber


async def test_faststream_sleeps_after_a_quiet_poll(sleeps: list[float]) -> None:
    # What `poll_without_pause` works around; when FastStream stops sleeping, it can go.
    subscriber = _subscriber(KafkaBroker())
    assert await subscriber.get_msg(_Consumer({})) == ()
    assert sleeps == [0.04]


async def test_a_quiet_poll_is_followed_by_the_next_at_once(sleeps: list[float]) -> None:
    subscriber = _subscriber(KafkaBroker())
    poll_without_pause(subscriber)
    a, b = TopicPartition("t", 0), TopicPartition("t", 1)
    consumer = _Consumer({}, {a: ["r1", "r2"], b: ["r3"]})
    assert await subscriber.get_msg(consumer) == ()
    assert await subscriber.get_msg(consumer) == ("r1", "r2", "r3")
    assert sleeps == []
    assert consumer.polls == [(40, 7), (40, 7)]


def test_a_subscriber_of_another_shape_is_refused_at_start() -> None:
    single = KafkaBroker().subscriber("t", group_id="g")
    with pytest.raises(TypeError, match="batch_timeout_ms"):
        poll_without_pause(single)



async def test_a_pause_after_a_quiet_poll_can_be_set(monkeypatch: pytest.MonkeyPatch) -> None:
    paused: list[float] = []

    async def sleep(seconds: float) -> None:
        paused.append(seconds)

    monkeypatch.setattr("services.common.messaging.asyncio", SimpleNamespace(sleep=sleep))
    subscriber = _subscriber(KafkaBroker())
    poll_without_pause(subscriber, 30)
    consumer = _Consumer({}, {TopicPartition("t", 0): ["r1"]})
    assert await subscriber.get_msg(consumer) == ()
    assert await subscriber.get_msg(consumer) == ("r1",)
    assert paused == [0.03]
