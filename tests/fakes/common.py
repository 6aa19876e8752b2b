"""Fakes of the ports every service shares."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from services.common.messaging import Outgoing


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
