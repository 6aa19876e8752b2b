"""Where the tests get Kafka and MongoDB, in this order: the services named by
`AMENDS_KAFKA_BOOTSTRAP` / `AMENDS_MONGO_URL`; testcontainers when a Docker engine answers;
otherwise the local stack (started once per test session, stopped after it if it started it)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import Iterable, Iterator
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
        from amends import stack as local

        settings = stack.enter_context(local.running(progress=_say))
        yield Infra(kafka or settings.kafka_bootstrap, mongo or settings.mongo_url,
                    "local stack")


# The tests name their topics and databases with a random hex suffix (the `suffix` fixture);
# the services' own names have none.
_TEST_NAME = re.compile(r"[0-9a-f]{8,}")


async def _topics(bootstrap: str) -> set[str]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def _delete_topics(bootstrap: str, names: list[str]) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        for start in range(0, len(names), 200):
            await admin.delete_topics(names[start:start + 200])
    finally:
        await admin.close()


def _databases(mongo_url: str, *, drop: Iterable[str] = ()) -> set[str]:
    """The databases there are, after dropping `drop`."""
    from pymongo import MongoClient

    client: MongoClient[dict[str, object]] = MongoClient(mongo_url,
                                                         serverSelectionTimeoutMS=5000)
    with client:
        for name in drop:
            client.drop_database(name)
        return set(client.list_database_names())


@contextlib.contextmanager
def swept(infra: Infra) -> Iterator[None]:
    """Deletes, when the session ends, the topics and databases the tests made during it.
    Each test keeps its own until then (to read after a failure); without the sweep a
    long-lived stack piles them up until Kafka runs out of open files (20,000 partition
    directories after a few dozen sessions)."""
    topics, databases = asyncio.run(_topics(infra.kafka_bootstrap)), _databases(infra.mongo_url)
    yield
    try:
        made = sorted(t for t in asyncio.run(_topics(infra.kafka_bootstrap)) - topics
                      if _TEST_NAME.search(t))
        asyncio.run(_delete_topics(infra.kafka_bootstrap, made))
        dropped = sorted(d for d in _databases(infra.mongo_url) - databases
                         if _TEST_NAME.search(d))
        _databases(infra.mongo_url, drop=dropped)
        _say(f"swept {len(made)} topics and {len(dropped)} databases the tests made")
    except Exception as error:  # a sweep that fails leaves names behind, nothing worse
        _say(f"could not sweep what the tests made: {error}")
