"""Fixtures shared by every test layer."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest
from pymongo import AsyncMongoClient

from services.common.adapters.mongo import Doc, make_client
from tests.infra import Infra, new_suffix, provide, swept
from tests.mail import Inbox, smtp_server

# The apps tests build trace only when a test asks (tests/unit/test_tracing.py and the
# integration test of traces): spans of a thousand apps would only fill files.
os.environ.setdefault("AMENDS_TRACING", "off")


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    with provide() as found, swept(found):
        yield found


@pytest.fixture
def suffix() -> str:
    """A random suffix, so each test has its own topics and database; they are deleted when
    the session ends (`tests.infra.swept`)."""
    return new_suffix()


@pytest.fixture
async def mongo(infra: Infra) -> AsyncIterator[AsyncMongoClient[Doc]]:
    client = make_client(infra.mongo_url)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    """A real SMTP server (aiosmtpd) for the test: what it accepted, and its port."""
    yield from smtp_server()


@pytest.fixture(scope="session", autouse=True)
async def _tasks_on_sigusr1() -> AsyncIterator[None]:
    """`kill -USR1 <pytest>` prints every asyncio task's stack: what a hung test awaits."""
    import asyncio
    import signal
    import sys

    def dump() -> None:
        for task in asyncio.all_tasks():
            task.print_stack(file=sys.stderr)

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, dump)
    yield
    loop.remove_signal_handler(signal.SIGUSR1)
