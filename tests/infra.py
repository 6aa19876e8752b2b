"""Where the tests get Kafka and MongoDB, in this order: the services named by
`AMENDS_KAFKA_BOOTSTRAP` / `AMENDS_MONGO_URL`; testcontainers when a Docker engine answers;
otherwise the local stack (started once per test session, stopped after it if it started it)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Infra:
    kafka_bootstrap: str
    mongo_url: str
    origin: str


def docker_engine_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=3)
        client.ping()
    except Exception:  # no engine, no socket, no library: all mean "no"
        return False
    return True


def _say(message: str) -> None:
    print(f"[stack] {message}")  # noqa: T201 - pytest shows it with -s


@contextlib.contextmanager
def provide() -> Iterator[Infra]:
    kafka = os.environ.get("AMENDS_KAFKA_BOOTSTRAP")
    mongo = os.environ.get("AMENDS_MONGO_URL")
    if kafka and mongo:
        yield Infra(kafka, mongo, "environment")
        return
    with contextlib.ExitStack() as stack:
        if docker_engine_answers():
            from testcontainers.kafka import KafkaContainer
            from testcontainers.mongodb import MongoDbContainer

            if not kafka:
                kafka_c = stack.enter_context(KafkaContainer("confluentinc/cp-kafka:7.7.1")
                                              .with_kraft())
                kafka = kafka_c.get_bootstrap_server()
            if not mongo:
                mongo_c = stack.enter_context(MongoDbContainer("mongo:7.0"))
                mongo = mongo_c.get_connection_url()
            yield Infra(kafka, mongo, "testcontainers")
            return
        from devtools import stack as local

        settings = stack.enter_context(local.running(progress=_say))
        yield Infra(kafka or settings.kafka_bootstrap, mongo or settings.mongo_url,
                    "local stack")


# The tests name their topics and databases with a random hex suffix (`new_suffix`); the
# services' own names have none. The suffixes handed out in this session are kept, so that a
# session sweeps only what its own tests made, never another session's running on the stack.
_SUFFIXES: set[str] = set()


def new_suffix() -> str:
    """A random suffix for one test's topics, databases and groups."""
    made = uuid.uuid4().hex[:10]
    _SUFFIXES.add(made)
    return made


def _ours(name: str) -> bool:
    return any(made in name for made in _SUFFIXES)


async def _names(infra: Infra) -> tuple[set[str], set[str]]:
    """The topics and the databases there are."""
    from aiokafka.admin import AIOKafkaAdminClient
    from pymongo import AsyncMongoClient

    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap)
    await admin.start()
    try:
        topics = set(await admin.list_topics())
    finally:
        await admin.close()
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(infra.mongo_url)
    try:
        return topics, set(await client.list_database_names())
    finally:
        await client.close()


@contextlib.contextmanager
def swept(infra: Infra) -> Iterator[None]:
    """Deletes, when the session ends, the topics and databases the tests made during it.
    Each test keeps its own until then (to read after a failure); without the sweep a
    long-lived stack piles them up until Kafka runs out of open files (20,000 partition
    directories after a few dozen sessions)."""
    from devtools.stack import forget

    topics, databases = asyncio.run(_names(infra))
    yield
    try:
        now_topics, now_databases = asyncio.run(_names(infra))
        made = sorted(t for t in now_topics - topics if _ours(t))
        dropped = sorted(d for d in now_databases - databases if _ours(d))
        asyncio.run(forget(infra.kafka_bootstrap, infra.mongo_url, dropped, made))
        _say(f"swept {len(made)} topics and {len(dropped)} databases the tests made")
    except Exception as error:  # a sweep that fails leaves names behind, nothing worse
        _say(f"could not sweep what the tests made: {error}")
