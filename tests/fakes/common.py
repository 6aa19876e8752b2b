"""Fakes of the ports every service shares."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from services.common.messaging import Outgoing

R = TypeVar("R")


class FakePublisher:
    """The `Publisher` port: keeps what it is asked to publish, in order, per topic. Set
    `failing` to an exception and every call raises it, publishing nothing (a broker that is
    down)."""

    def __init__(self) -> None:
        self.sent: list[Outgoing] = []
        self.failing: BaseException | None = None

    async def publish_all(self, messages: Sequence[Outgoing]) -> None:
        if self.failing is not None:
            raise self.failing
        self.sent.extend(messages)

    def on(self, topic: str) -> list[Outgoing]:
        return [m for m in self.sent if m.topic == topic]

    def bodies(self, topic: str) -> list[dict[str, Any]]:
        """The JSON bodies published to `topic`, in order."""
        return [json.loads(m.value) for m in self.on(topic)]


class FakeOutbox(Generic[R]):
    """The `Outbox[R]` port (services/common/outbox.py) in memory: a record is kept once
    under its id, and "published" is remembered per id."""

    def __init__(self) -> None:
        self.records: dict[str, R] = {}
        self.done: set[str] = set()

    async def add_new(self, records: Sequence[tuple[str, R]]) -> set[str]:
        new = set()
        for key, record in records:
            if key not in self.records:
                self.records[key] = record
                new.add(key)
        return new

    async def published(self, ids: Sequence[str]) -> set[str]:
        return set(ids) & self.done

    async def mark_published(self, ids: Sequence[str]) -> None:
        self.done.update(ids)
