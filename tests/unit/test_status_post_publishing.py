"""Fulfilment publishes each released status post once, whatever arrives twice; the resolved
stage updates what the opened stage created; a status page that is down is tried again by the
sweep; the signed webhook's signature verifies and the Statuspage shape is the API's."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from schemas.incident import Incident
from schemas.status_post import StatusPost, StatusPostReleased, StatusPostStage
from services.common.messaging import DeadLetters, Record
from services.decision.domain.policy import load_policy
from services.decision.status_posts import Drafter
from services.fulfilment.channels import SIGNATURE_HEADER, verify_signature
from services.fulfilment.domain.effects import EffectState
from services.fulfilment.errors import TransientError
from services.fulfilment.remote import RemoteEffects
from services.fulfilment.settings import FulfilmentSettings
from services.fulfilment.status_posts import (
    Posted,
    SignedStatusWebhook,
    StatuspageApi,
    StatusPostMetrics,
    StatusPostPublisher,
)
from tests.clock import FakeClock
from tests.factories import incident
from tests.fakes.common import FakePublisher
from tests.fakes.fulfilment import FakeEffectLog

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
POLICY = load_policy("deploy/policy/default.yaml")
SECRET = "status-secret"


def post(minutes: int | None = None, outage_id: str = "out-1") -> StatusPost:
    body = incident("service_outage", fact=outage_id, at=T0, order_id=None,
                    outage_id=outage_id, outage_minutes=minutes, outage_service="Checkout")
    return Drafter().post(Incident.model_validate(body), POLICY, T0,
                          "https://status.example.org/{subject_id}")


def record(p: StatusPost, offset: int = 0) -> Record:
    event = StatusPostReleased(id=p.post_id, source="amends/decision", time=T0,
                               subject=p.subject_id, data=p)
    return Record("status-posts", 0, offset, p.subject_id.encode(),
                  event.model_dump_json().encode())


class FakePage:
    name = "fake page"

    def __init__(self, failures: int = 0) -> None:
        self.calls: list[tuple[str, StatusPostStage, str | None]] = []
        self.failures = failures

    async def publish(self, p: StatusPost, key: str, opened: str | None) -> Posted:
        if self.failures:
            self.failures -= 1
            raise TransientError("the page is down")
        self.calls.append((key, p.stage, opened))
        return Posted(remote_id=f"page-{len(self.calls)}", url=p.url)

    async def aclose(self) -> None:
        pass


REGISTRIES: dict[int, CollectorRegistry] = {}  # each publisher's, by its id


def published(status: StatusPostPublisher, stage: str, outcome: str) -> float | None:
    return REGISTRIES[id(status)].get_sample_value(
        "amends_status_posts_total", {"stage": stage, "outcome": outcome})


async def no_sleep(_: float) -> None:
    pass


def publisher(page: FakePage) -> tuple[StatusPostPublisher, FakeEffectLog, FakePublisher]:
    settings = FulfilmentSettings(retry_attempts=2)
    clock, kept, out = FakeClock(T0), FakeEffectLog(), FakePublisher()
    registry = CollectorRegistry()
    status = StatusPostPublisher(
        page=page, kept=kept, effects=RemoteEffects(settings, clock, sleep=no_sleep),
        dead_letters=DeadLetters("fulfilment", "deadletter", out, clock, registry),
        clock=clock, metrics=StatusPostMetrics(registry))
    REGISTRIES[id(status)] = registry
    return status, kept, out


async def test_a_post_is_published_once_however_often_it_arrives() -> None:
    page = FakePage()
    status, kept, _ = publisher(page)
    opened = post()
    await status.handle([record(opened), record(opened, 1)])
    await status.handle([record(opened, 2)])  # a redelivery, a replay
    assert page.calls == [(opened.post_id, StatusPostStage.opened, None)]
    assert kept[opened.post_id].status == EffectState.succeeded.value
    assert published(status, "opened", "succeeded") == 1


async def test_the_resolved_stage_updates_the_opened_post_once() -> None:
    page = FakePage()
    status, _, _ = publisher(page)
    await status.handle([record(post())])
    resolved = post(minutes=40)
    await status.handle([record(resolved)])
    await status.handle([record(resolved, 1)])
    assert page.calls[1:] == [(resolved.post_id, StatusPostStage.resolved, "page-1")]


async def test_a_resolution_alone_creates_the_post_resolved() -> None:
    page = FakePage()
    status, _, _ = publisher(page)
    await status.handle([record(post(minutes=40))])
    assert page.calls == [(post(minutes=40).post_id, StatusPostStage.resolved, None)]


async def test_a_page_that_is_down_gets_the_post_from_the_sweep() -> None:
    page = FakePage(failures=2)  # both of the batch's attempts
    status, kept, _ = publisher(page)
    opened = post()
    await status.handle([record(opened)])
    assert kept[opened.post_id].status == EffectState.retry.value
    assert page.calls == []
    clock = status.clock
    assert isinstance(clock, FakeClock)
    clock.advance(timedelta(minutes=10))
    assert await status.finish_unfinished() == 1
    assert await status.finish_unfinished() == 0
    assert page.calls == [(opened.post_id, StatusPostStage.opened, None)]
    assert published(status, "opened", "succeeded") == 1


async def test_a_record_that_is_not_a_status_post_is_dead_lettered() -> None:
    status, _, out = publisher(FakePage())
    await status.handle([Record("status-posts", 0, 0, b"k", b"{}")])
    [letter] = out.bodies("deadletter")
    assert letter["data"]["reason"] == "invalid"


async def test_the_webhook_is_signed_and_carries_every_locale() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202)

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        hook = SignedStatusWebhook("https://hooks.example.org/status", SECRET,
                                   clock=FakeClock(T0), client=client)
        await hook.publish(post(), "key-1", None)
    [request] = seen
    body = request.content
    assert verify_signature(SECRET, request.headers[SIGNATURE_HEADER], body, now=T0)
    assert not verify_signature("another", request.headers[SIGNATURE_HEADER], body, now=T0)
    sent = json.loads(body)
    assert sent["type"] == "amends.status_post.opened"
    assert {d["locale"] for d in sent["drafts"]} == {"en", "ru", "ro"}
    assert sent["url"] == "https://status.example.org/out-1"


async def test_the_statuspage_api_creates_then_patches_to_resolved() -> None:
    seen: list[tuple[str, str, dict[str, Any]]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path, json.loads(request.content)))
        assert request.headers["Authorization"] == "OAuth k"
        return httpx.Response(201, json={"id": "inc-9", "shortlink": "https://stspg.io/x"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        api = StatuspageApi("https://statuspage.example.org/v1", "page-1", "k", client=client)
        created = await api.publish(post(), "k1", None)
        await api.publish(post(minutes=40), "k2", created.remote_id)
    methods: Sequence[tuple[str, str]] = [(m, p) for m, p, _ in seen]
    assert methods == [("POST", "/v1/pages/page-1/incidents"),
                       ("PATCH", "/v1/pages/page-1/incidents/inc-9")]
    assert [b["incident"]["status"] for _, _, b in seen] == ["identified", "resolved"]
    assert created == Posted("inc-9", "https://stspg.io/x")
