"""Record, then publish (services/common/outbox.py) with the outbox's fake: each record is
kept and published once, and a crash between the steps is repaired by the redelivery."""

from __future__ import annotations

import pytest

from services.common.messaging import Outgoing
from services.common.outbox import record_then_publish
from tests.fakes.common import FakeOutbox, FakePublisher

pytestmark = pytest.mark.unit


def items(*ids: str) -> list[tuple[str, str, Outgoing]]:
    return [(i, f"record {i}", Outgoing("t", i, i.encode())) for i in ids]


async def test_each_record_is_kept_and_published_once() -> None:
    outbox: FakeOutbox[str] = FakeOutbox()
    sent = FakePublisher()
    assert await record_then_publish(outbox, sent, items("a", "b", "a")) == {"a", "b"}
    assert [m.value for m in sent.sent] == [b"a", b"b"]
    assert await record_then_publish(outbox, sent, items("a", "b")) == set()
    assert len(sent.sent) == 2


async def test_a_record_kept_but_not_published_is_published_on_redelivery() -> None:
    outbox: FakeOutbox[str] = FakeOutbox()
    sent = FakePublisher()
    sent.failing = ConnectionError("broker down")
    with pytest.raises(ConnectionError):
        await record_then_publish(outbox, sent, items("c"))
    assert outbox.records == {"c": "record c"}
    assert not outbox.done
    sent.failing = None
    assert await record_then_publish(outbox, sent, items("c", "d")) == {"d"}
    assert sorted(m.value for m in sent.sent) == [b"c", b"d"]
    assert outbox.done == {"c", "d"}
