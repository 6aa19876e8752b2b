"""What status posts cost decision: drafting one post (three locales), and the desk's share of
an outage's fan-out (every decided incident passes it). In memory, no broker or database:
`python -m devtools.bench_status_posts [customers]`."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from rich.console import Console
from rich.table import Table

from schemas.incident import Incident, IncidentType, incident_id
from schemas.status_post import StatusPost
from services.common.messaging import Outgoing
from services.decision.domain.policy import load_policy
from services.decision.status_posts import Drafter, StatusPostDesk

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
BATCH = 500


class _Posts:
    """The desk's store in memory, with the adapters' "a duplicate is already done"."""

    def __init__(self) -> None:
        self.posts: dict[str, StatusPost] = {}
        self.marks: set[str] = set()

    async def add_new(self, post: StatusPost) -> bool:
        return self.posts.setdefault(post.post_id, post) is post

    async def get(self, post_id: str) -> StatusPost | None:
        return self.posts.get(post_id)

    async def approve(self, post_id: str, by: str, at: datetime) -> bool:
        raise NotImplementedError  # nothing is held here

    async def all(self) -> list[StatusPost]:
        return list(self.posts.values())

    async def released(self, post_ids: Sequence[str]) -> set[str]:
        return set(post_ids) & self.marks

    async def mark_released(self, post_ids: Sequence[str]) -> None:
        self.marks.update(post_ids)

    async def create_indexes(self) -> None:
        pass


class _Published:
    def __init__(self) -> None:
        self.messages: list[Outgoing] = []

    async def publish_all(self, messages: Sequence[Outgoing]) -> None:
        self.messages.extend(messages)


def _outage(customers: int) -> list[Incident]:
    base = {"type": "service_outage", "detection": "proactive", "occurred_at": T0,
            "detected_at": T0, "source": "bench", "outage_id": "out-1",
            "outage_service": "Checkout"}
    return [Incident.model_validate({
        **base, "incident_id": incident_id(IncidentType.service_outage, "out-1", f"c-{n}"),
        "customer": {"id": f"c-{n}", "tier": "standard", "locale": "en"}})
        for n in range(customers)]


async def _fan_out(incidents: list[Incident]) -> tuple[float, int]:
    publisher = _Published()
    desk = StatusPostDesk(store=_Posts(), publisher=publisher,
                          policy=load_policy("deploy/policy/default.yaml"),
                          clock=lambda: T0, topic="status-posts")
    started = time.perf_counter()
    for start in range(0, len(incidents), BATCH):
        await desk.when_decided(incidents[start:start + BATCH])
    return time.perf_counter() - started, len(publisher.messages)


def main(customers: int = 20_000) -> None:
    console = Console()
    policy = load_policy("deploy/policy/default.yaml")
    incidents = _outage(customers)
    drafter, rounds = Drafter(), 200
    with console.status("drafting…"):
        started = time.perf_counter()
        for _ in range(rounds):
            drafter.post(incidents[0], policy, T0)
        draft_ms = (time.perf_counter() - started) / rounds * 1000
    with console.status(f"an outage of {customers:,} customers through the desk…"):
        took, released = asyncio.run(_fan_out(incidents))
    table = Table(title="Status posts on decision (in memory)", title_justify="left")
    for column in ("what", "figure"):
        table.add_column(column)
    table.add_row("draft one post, en + ru + ro", f"{draft_ms:.2f} ms")
    table.add_row(f"desk, {customers:,} decided incidents in batches of {BATCH}",
                  f"{took * 1000:.0f} ms ({took / customers * 1e6:.1f} µs per incident)")
    table.add_row("posts released", str(released))
    console.print(table)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
