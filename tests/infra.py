"""Where the tests get Kafka and MongoDB, in this order: the services named by
`AMENDS_KAFKA_BOOTSTRAP` / `AMENDS_MONGO_URL`; testcontainers when a Docker engine answers;
otherwise the local stack (started once per test session, stopped after it if it started it)."""

from __future__ import annotations

import contextlib
import os
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
        from amends import stack as local

        settings = stack.enter_context(local.running(progress=_say))
        yield Infra(kafka or settings.kafka_bootstrap, mongo or settings.mongo_url,
                    "local stack")
