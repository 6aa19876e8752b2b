"""The local stack survives a crash: after SIGKILL, `up` brings each process back with its
data. Runs a second stack on free ports in a state directory of its own, so the stack the
other tests use is left alone."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from pymongo import MongoClient

from devtools import stack
from tests.kafka_tools import produce

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _kill(settings: stack.StackSettings, name: str) -> None:
    proc = stack.Process(name, settings.run_dir)
    pid = proc.pid()
    assert pid is not None, f"{name} is not running"
    os.killpg(pid, signal.SIGKILL)
    while proc.pid() is not None:
        pass


async def _read_all(bootstrap: str, topic: str) -> list[bytes]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        values: list[bytes] = []
        for _ in range(50):
            batch = await consumer.getmany(timeout_ms=200)
            values.extend(r.value for records in batch.values() for r in records)
            if values:
                break
        return values
    finally:
        await consumer.stop()


def _listening_on(port: int) -> set[str]:
    """The local addresses a socket listens on `port` at (Linux's /proc/net/tcp*)."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.rsplit(":", 1)
            if state == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
                # Each 32-bit word in host (little-endian) order; Java listens on IPv6
                # sockets, 127.0.0.1 as ::ffff:127.0.0.1.
                raw = b"".join(bytes.fromhex(address[i:i + 8])[::-1]
                               for i in range(0, len(address), 8))
                ip = ipaddress.ip_address(raw)
                mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
                found.add(str(mapped or ip))
    return found


def test_killed_processes_come_back_with_their_data(tmp_path: Path) -> None:
    settings = stack.StackSettings(
        state_dir=tmp_path / "state", kafka_port=_free_port(),
        kafka_controller_port=_free_port(), mongo_port=_free_port(), kafka_heap="512m",
        cache_dir_override=stack.StackSettings().cache_dir,
    )
    try:
        assert stack.up(settings) == {"ferretdb": "started", "kafka": "started"}
        assert stack.up(settings) == {"ferretdb": "already running", "kafka": "already running"}
        # Nothing the stack starts is reachable from another machine.
        for port in (settings.kafka_port, settings.kafka_controller_port, settings.mongo_port):
            assert _listening_on(port) == {"127.0.0.1"}, port
        with MongoClient[dict[str, Any]](settings.mongo_url) as client:
            client["crash"]["kept"].insert_one({"_id": "before-crash"})
        asyncio.run(produce(settings.kafka_bootstrap, "crash.kept", [("k", b"before-crash")]))

        _kill(settings, "kafka")
        _kill(settings, "ferretdb")
        # The kernel closes a killed process's listening socket a moment after it is reaped.
        deadline = time.monotonic() + 10
        while any(row.answering for row in stack.status(settings)[:2]):
            assert time.monotonic() < deadline, stack.status(settings)
            time.sleep(0.05)

        assert stack.up(settings) == {"ferretdb": "started", "kafka": "started"}
        with MongoClient[dict[str, Any]](settings.mongo_url) as client:
            assert client["crash"]["kept"].find_one({"_id": "before-crash"}) is not None
        assert asyncio.run(_read_all(settings.kafka_bootstrap, "crash.kept")) == [b"before-crash"]
    finally:
        stack.down(settings)
    assert all(row.pid is None for row in stack.status(settings))


def test_a_port_taken_by_someone_else_is_one_clear_error(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        settings = stack.StackSettings(state_dir=tmp_path, mongo_port=port,
                                       cache_dir_override=stack.StackSettings().cache_dir)
        with pytest.raises(stack.StackError, match=f"port {port} is already taken"):
            stack.start_ferretdb(settings)
