"""A consumer as the services run one (`subscribe_batches`), in a process of its own so that a
test can kill it: `python -m tests.commit_worker BOOTSTRAP TOPIC GROUP OUT`. Each handled
batch is appended to OUT ("partition offset" lines, flushed before the batch counts as
handled). Its first offset commit reaches the broker; every later one waits for ever, as a
commit still in flight at the moment of a crash does."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer
from prometheus_client import CollectorRegistry

from services.common.messaging import ConsumerMetrics, Record, make_broker, subscribe_batches
from services.common.settings import ServiceSettings


def _hold_commits_after_the_first() -> None:
    commit = AIOKafkaConsumer.commit
    done = 0

    async def held(self: AIOKafkaConsumer, offsets: Any = None) -> None:
        nonlocal done
        if done:
            await asyncio.Event().wait()
        await commit(self, offsets)
        done += 1
        print("committed", flush=True)  # noqa: T201 - the test waits for it

    AIOKafkaConsumer.commit = held


async def main(bootstrap: str, topic: str, group: str, out: Path) -> None:
    _hold_commits_after_the_first()
    settings = ServiceSettings(kafka_bootstrap=bootstrap, consumer_group=group,
                               batch_max_records=5, batch_timeout_ms=20)
    registry = CollectorRegistry()
    broker = make_broker(settings, registry)
    handled = out.open("a")

    async def handle(records: list[Record]) -> None:
        handled.write("".join(f"{r.partition} {r.offset}\n" for r in records))
        handled.flush()
        os.fsync(handled.fileno())
        await asyncio.sleep(0.02)  # a batch's writes: the test kills it in the middle

    subscribe_batches(broker, settings, [topic], handle, name="worker",
                      metrics=ConsumerMetrics(registry))
    await broker.start()
    await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])))
