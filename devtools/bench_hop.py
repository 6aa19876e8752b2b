"""The benchmark's ceiling: a plain aiokafka consume-and-forward hop with no logic and no
database — `python -m devtools.bench_hop IN_TOPIC OUT_TOPIC GROUP BOOTSTRAP [SIZE [COPIES]]`.

It batches, publishes and commits like the services do (the forwarded messages packed per
partition by `send_packed`, offsets committed after they are acknowledged), and forwards each
message as COPIES messages of SIZE bytes, the size of what the matching service publishes, so
the ratio between it and the pipeline is the cost of Amends' own work, not of moving different
bytes or of publishing differently.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from services.common.messaging import BATCH_BYTES, Outgoing, send_packed


def resized(value: bytes, size: int) -> bytes:
    """`value` cut or padded with spaces to `size` bytes (0: unchanged)."""
    if size <= 0:
        return value
    return value[:size].ljust(size)


async def forward(source: str, target: str, group: str, bootstrap: str, *, size: int = 0,
                  copies: int = 1) -> None:
    consumer = AIOKafkaConsumer(source, bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                max_poll_records=500)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True,
                                linger_ms=5, max_batch_size=BATCH_BYTES)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await consumer.start()
    await producer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=50, max_records=500)
            out = [Outgoing(target, (r.key or b"").decode(), resized(r.value or b"", size))
                   for records in batch.values() for r in records for _ in range(copies)]
            if out:
                await asyncio.gather(*await send_packed(producer, out))
                await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()


def main() -> None:
    source, target, group, bootstrap = sys.argv[1:5]
    size = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    copies = int(sys.argv[6]) if len(sys.argv) > 6 else 1
    asyncio.run(forward(source, target, group, bootstrap, size=size, copies=copies))


if __name__ == "__main__":
    main()
