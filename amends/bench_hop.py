"""The benchmark's ceiling: a plain aiokafka consume-and-forward hop with no logic and no
database — `python -m amends.bench_hop IN_TOPIC OUT_TOPIC GROUP BOOTSTRAP`.

It batches and commits like the services do (offsets committed after the forwarded batch is
acknowledged), so the ratio between it and the pipeline is the cost of Amends' own work.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


async def forward(source: str, target: str, group: str, bootstrap: str) -> None:
    consumer = AIOKafkaConsumer(source, bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                max_poll_records=500)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True,
                                linger_ms=5)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await consumer.start()
    await producer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=50, max_records=500)
            futures = [await producer.send(target, r.value, key=r.key)
                       for records in batch.values() for r in records]
            if futures:
                await asyncio.gather(*futures)
                await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()


def main() -> None:
    source, target, group, bootstrap = sys.argv[1:5]
    asyncio.run(forward(source, target, group, bootstrap))


if __name__ == "__main__":
    main()
