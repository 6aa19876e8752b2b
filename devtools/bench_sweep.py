"""What fulfilment's sweep of unfinished effects costs as the effect logs grow:
`python -m devtools.bench_sweep [SIZES] [--repeat R]` (SIZES: stored messages, comma-separated,
default 20000,100000) against the database at `AMENDS_MONGO_URL` (the local stack's FerretDB).

For each size it fills a scratch database's `messages` with final messages of a realistic size,
then times one `finish_unfinished()` as it was before issue 21 (the effect logs asked which
effects are unfinished: `status $in ...`) and as it is now (the FerretDB adapter asks memory),
with nothing unfinished; the read of the sweep with one message due (`RemoteEffects.due` over
both logs); and the full scan (`recall_unfinished`, at start and every `full_sweep_seconds`).
Medians of R runs, in milliseconds, as a table (printed again as each size is done). The
scratch databases are dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from services.common.adapters.mongo import make_client
from services.common.messaging import DeadLetters, Outgoing
from services.fulfilment.adapters import ferretdb
from services.fulfilment.adapters.ferretdb import TrackedEffectLog
from services.fulfilment.adapters.mongo import effect_document
from services.fulfilment.domain.effects import Effect, EffectState
from services.fulfilment.ports import Stores
from services.fulfilment.service import FulfilmentMetrics, FulfilmentService
from services.fulfilment.settings import FulfilmentSettings

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
TEXT = "We are sorry your order arrived late. " * 16  # about the size of a rendered apology
HTML = f"<p>{TEXT}</p>" * 2
BATCH = 1000


class _NoPublisher:
    """The sweeps timed here have nothing to report."""

    async def publish_all(self, messages: Sequence[Outgoing]) -> None:
        raise AssertionError(f"nothing should be published ({len(messages)} messages)")


def _message(n: int, status: str, **fields: object) -> Effect:
    return Effect(key=f"bench-{n:07d}:0", customer_id=f"c-{n % 5000}", tenant=None,
                  decision_id=f"bench-{n:07d}", decision_ref=f"bench-{n:07d}@0",
                  created_at=NOW - timedelta(hours=1), position=0, incident_type="delivery_delayed",
                  channel="email", locale="en", subject="Our apologies", text=TEXT, html=HTML,
                  status=status, **fields)  # type: ignore[arg-type]


def _service(settings: FulfilmentSettings, stores: Stores) -> FulfilmentService:
    publisher, registry = _NoPublisher(), CollectorRegistry()
    return FulfilmentService(
        settings=settings, stores=stores, publisher=publisher,
        dead_letters=DeadLetters("fulfilment", settings.deadletter_topic, publisher,
                                 lambda: NOW, registry),
        clock=lambda: NOW, metrics=FulfilmentMetrics(registry))


async def _median_ms(call: Callable[[], Awaitable[object]], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        await call()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


async def measure(url: str, sizes: Sequence[int], repeat: int, console: Console) -> None:
    client = make_client(url)
    settings = FulfilmentSettings(mongo_url=url)
    table = Table(title=f"fulfilment's sweep against stored messages (median of {repeat}, ms)")
    for column in ("stored messages", "before: sweep, nothing unfinished",
                   "now: sweep, nothing unfinished", "before: read, 1 due",
                   "now: read, 1 due", "now: full scan (start, every 600 s)"):
        table.add_column(column, justify="right")
    try:
        for size in sizes:
            name = f"amends_bench_sweep_{size}"
            await client.drop_database(name)
            db = client[name]
            stores, create_indexes = ferretdb.stores(db)
            await create_indexes()
            with Progress(console=console, transient=True) as progress:
                filling = progress.add_task(f"storing {size:,} messages", total=size)
                for start in range(0, size, BATCH):
                    docs = [effect_document(_message(n, EffectState.succeeded.value,
                                                     detail="apology sent by email",
                                                     settled_at=NOW - timedelta(minutes=59)))
                            for n in range(start, min(size, start + BATCH))]
                    await db["messages"].insert_many(docs, ordered=False)
                    progress.advance(filling, len(docs))
            tracked_messages, tracked_refunds = stores.messages, stores.refunds
            assert isinstance(tracked_messages, TrackedEffectLog)
            assert isinstance(tracked_refunds, TrackedEffectLog)
            before = _service(settings, replace(stores, refunds=tracked_refunds.inner,
                                                messages=tracked_messages.inner))
            now = _service(settings, stores)
            full = await _median_ms(now.recall_unfinished, repeat)
            before_sweep = await _median_ms(before.finish_unfinished, repeat)
            now_sweep = await _median_ms(now.finish_unfinished, repeat)
            # One message due (written last: the end of the table), known to the view as it
            # would be from this process's own write.
            due = _message(size, EffectState.retry.value, next_attempt_at=NOW - timedelta(
                seconds=1))
            await tracked_messages.add_new([due])

            async def reads(chosen: FulfilmentService) -> None:
                for log in (chosen.stores.refunds, chosen.stores.messages):
                    await chosen.effects.due(log, NOW, 200)

            before_due = await _median_ms(functools.partial(reads, before), repeat)
            now_due = await _median_ms(functools.partial(reads, now), repeat)
            table.add_row(f"{size:,}", f"{before_sweep:,.1f}", f"{now_sweep:,.2f}",
                          f"{before_due:,.1f}", f"{now_due:,.1f}", f"{full:,.1f}")
            console.print(table)  # so far: a size takes minutes on FerretDB
            await client.drop_database(name)
    finally:
        await client.close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="?", default="20000,100000")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    url = os.environ.get("AMENDS_MONGO_URL", "mongodb://127.0.0.1:27017/")
    console = Console()
    sizes = [int(s) for s in args.sizes.split(",")]
    asyncio.run(measure(url, sizes, args.repeat, console))


if __name__ == "__main__":
    main()
