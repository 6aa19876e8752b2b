"""The public status post on the real services and a real webhook peer: an outage gets one
post however often its events and the post itself arrive again, updated exactly once when it
is resolved (with its duration and what was done), every request signed; and the apology of
each affected customer carries the post's link."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI, Request, Response

from services.fulfilment.channels import SIGNATURE_HEADER, verify_signature
from tests.factories import outage_declared, outage_resolved
from tests.infra import Infra
from tests.kafka_tools import as_json, collect, produce
from tests.pipeline import running_pipeline
from tests.servers import bound, served_here

pytestmark = pytest.mark.integration

SECRET = "status-peer-secret"
PUBLIC = "https://status.example.org/outages/{outage_id}"
PREVENTION = "Checkout now fails over to a standby database within seconds."


@dataclass
class Peer:
    """The status page and the apology webhook: what each received, signature checked."""

    status: list[dict[str, Any]] = field(default_factory=list)
    apologies: list[dict[str, Any]] = field(default_factory=list)
    unsigned: int = 0

    def app(self) -> FastAPI:
        app = FastAPI()

        async def receive(request: Request, into: list[dict[str, Any]]) -> Response:
            body = await request.body()
            if not verify_signature(SECRET, request.headers.get(SIGNATURE_HEADER, ""), body,
                                    now=datetime.now(UTC)):
                self.unsigned += 1
                return Response(status_code=401)
            into.append(json.loads(body))
            return Response(status_code=202)

        @app.post("/status")
        async def status(request: Request) -> Response:
            return await receive(request, self.status)

        @app.post("/apologies")
        async def apologies(request: Request) -> Response:
            return await receive(request, self.apologies)

        return app


async def until(check: Any, timeout_s: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.2)


@pytest.fixture
async def peer() -> AsyncIterator[tuple[Peer, str]]:
    found = Peer()
    async with served_here(found.app(), bound()) as url:
        yield found, url


async def test_one_status_post_per_outage_updated_once_and_linked_from_every_apology(
        infra: Infra, suffix: str, peer: tuple[Peer, str]) -> None:
    received, url = peer
    outage = f"{suffix}-out"
    customers = [f"{suffix}-c{i}" for i in range(3)]
    started = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    declared = outage_declared(outage, at=started, customers=customers)
    resolved = outage_resolved(outage, at=started + timedelta(minutes=25))
    resolved["data"]["prevention"] = PREVENTION
    async with running_pipeline(
            infra, suffix,
            decision={"status_post_url": PUBLIC.replace("{outage_id}", "{subject_id}")},
            fulfilment={"status_page": "webhook",
                        "status_webhook_url": f"{url}/status",
                        "status_webhook_secret": SECRET, "status_page_url": PUBLIC,
                        "webhook_url": f"{url}/apologies", "webhook_secret": SECRET,
                        "sweep_seconds": 1.0}) as pipeline:
        outages, topic = pipeline.topics.outages, pipeline.topics.status_posts
        await produce(infra.kafka_bootstrap, outages, as_json([declared]))
        await until(lambda: len(received.status) >= 1 and len(received.apologies) >= 3)

        # The declaration again (an upstream retry) and the released post itself again (a
        # replay of the status-posts topic): still one post.
        await produce(infra.kafka_bootstrap, outages, as_json([declared]))
        posts = await collect(infra.kafka_bootstrap, topic, lambda seen: len(seen) >= 1)
        await produce(infra.kafka_bootstrap, topic,
                      [(posts[0]["subject"], json.dumps(posts[0]).encode())])
        await asyncio.sleep(3)
        [opened] = received.status
        assert opened["type"] == "amends.status_post.opened"
        assert opened["subject_id"] == outage
        assert opened["url"] == PUBLIC.format(outage_id=outage)
        assert {d["locale"] for d in opened["drafts"]} == {"en", "ru", "ro"}
        english = next(d for d in opened["drafts"] if d["locale"] == "en")
        assert "checkout" in english["body"]
        assert "our fault" in english["body"]
        assert "We are reviewing the cause" in english["body"]  # nothing said yet: no claim

        # Every affected customer's apology links the post.
        link = PUBLIC.format(outage_id=outage)
        by_customer = {a["customer_id"]: a for a in received.apologies}
        assert set(by_customer) == set(customers)
        assert all(link in a["text"] for a in by_customer.values())

        await produce(infra.kafka_bootstrap, outages, as_json([resolved]))
        await until(lambda: len(received.status) >= 2)
        await produce(infra.kafka_bootstrap, outages, as_json([resolved]))  # again
        await asyncio.sleep(3)
        [first, update] = received.status
        assert update["type"] == "amends.status_post.resolved"
        assert update["minutes"] == 25
        assert update["updates"] == first["id"]
        english = next(d for d in update["drafts"] if d["locale"] == "en")
        assert PREVENTION in english["body"]
        assert "25\u00a0min" in english["title"]
        assert received.unsigned == 0
