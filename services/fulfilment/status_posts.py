"""Status posts published to the status page (ADR 0016): each post decision released is
published once, however often it arrives, by the same claim-then-call effect machinery as
refunds and apologies (`remote.RemoteEffects`), keyed by the post's deterministic id. The
resolved stage updates the post the opened stage created.

Two kinds of status page, by the settings: an Atlassian Statuspage-compatible API (an
incident created, then patched to resolved, in one locale) or a generic webhook signed like
the apology webhook (`Amends-Signature`) that gets every locale's draft and the stage.
An effect keeps the post it publishes as JSON, so the sweep can publish it after a crash.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import httpx
from prometheus_client import CollectorRegistry, Counter
from pydantic import TypeAdapter, ValidationError

from schemas.deadletter import DeadLetterReason
from schemas.outcome import ActionStatus
from schemas.status_post import StatusPost, StatusPostReleased, StatusPostStage, status_post_id
from services.common.app import Runtime
from services.common.clock import Clock
from services.common.errors import describe
from services.common.messaging import DeadLetters, Record
from services.fulfilment.adapters.mongo import MongoEffectLog
from services.fulfilment.channels import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, sign
from services.fulfilment.domain.effects import Change, Effect, EffectState
from services.fulfilment.errors import (
    PermanentError,
    TransientError,
    refusal,
)
from services.fulfilment.ports import EffectLog
from services.fulfilment.remote import Done, Job, RemoteEffects, new_claim
from services.fulfilment.settings import FulfilmentSettings

log = logging.getLogger(__name__)

KIND = "status_post"
_released: TypeAdapter[StatusPostReleased] = TypeAdapter(StatusPostReleased)


@dataclass(frozen=True, slots=True)
class Posted:
    """What the status page answered: its id for the post (what an update names)."""

    remote_id: str
    url: str | None = None


class StatusPage(Protocol):
    name: str

    async def publish(self, post: StatusPost, key: str, opened: str | None) -> Posted:
        """Publish the post once (the page deduplicates on `key`); `opened` is the page's id
        of the post this one updates, if there is one."""
        ...

    async def aclose(self) -> None: ...


def _check(response: httpx.Response, what: str) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    raise refusal(status, f"the {what} answered {status} {response.reason_phrase}".strip(),
                  response.headers.get("Retry-After"))


async def _send(client: httpx.AsyncClient, what: str, method: str, url: str, *,
                content: bytes, headers: dict[str, str]) -> httpx.Response:
    try:
        response = await client.request(method, url, content=content, headers=headers)
    except httpx.TimeoutException:
        raise TransientError(f"the {what} did not answer in time") from None
    except httpx.TransportError as exc:
        raise TransientError(f"cannot reach the {what}: {type(exc).__name__}") from None
    _check(response, what)
    return response


class SignedStatusWebhook:
    """POST every stage of a post, all locales, as JSON signed with the shared secret; the
    receiver updates its post by `subject_id` and deduplicates on `Idempotency-Key`."""

    name = "status webhook"

    def __init__(self, url: str, secret: str, *, clock: Clock, timeout_s: float = 10.0,
                 client: httpx.AsyncClient | None = None) -> None:
        if not secret:
            raise ValueError("a status webhook needs a signing secret")
        self.url, self._secret, self.clock = url, secret, clock
        self._client = client or httpx.AsyncClient(timeout=timeout_s)
        self._owns_client = client is None

    @staticmethod
    def payload(post: StatusPost, key: str, opened: str | None) -> bytes:
        body: dict[str, Any] = {
            "id": key, "type": f"amends.status_post.{post.stage.value}",
            "subject_id": post.subject_id, "updates": opened, **post.model_dump(
                mode="json", include={"post_id", "stage", "incident_type", "tenant",
                                      "started_at", "resolved_at", "minutes", "url",
                                      "drafts"})}
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"),
                          sort_keys=True).encode()

    async def publish(self, post: StatusPost, key: str, opened: str | None) -> Posted:
        body = self.payload(post, key, opened)
        await _send(self._client, self.name, "POST", self.url, content=body, headers={
            "Content-Type": "application/json; charset=utf-8", IDEMPOTENCY_HEADER: key,
            SIGNATURE_HEADER: sign(self._secret, int(self.clock().timestamp()), body),
            "User-Agent": "amends-fulfilment"})
        return Posted(remote_id=opened or key, url=post.url)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()


class StatuspageApi:
    """An Atlassian Statuspage-compatible API: the opened stage creates an incident
    (`POST /pages/{page}/incidents`), the resolved stage patches it to resolved (or creates
    it resolved when nothing was opened). One locale: a status page has one language."""

    name = "statuspage"

    def __init__(self, base_url: str, page_id: str, api_key: str, *, locale: str = "en",
                 timeout_s: float = 10.0, client: httpx.AsyncClient | None = None) -> None:
        self.base = f"{base_url.rstrip('/')}/pages/{page_id}/incidents"
        self._key, self.locale = api_key, locale
        self._client = client or httpx.AsyncClient(timeout=timeout_s)
        self._owns_client = client is None

    def incident(self, post: StatusPost) -> dict[str, Any]:
        draft = next((d for d in post.drafts if d.locale == self.locale), post.drafts[0])
        resolved = post.stage is StatusPostStage.resolved
        return {"incident": {"name": draft.title, "body": draft.body,
                             "status": "resolved" if resolved else "identified",
                             "impact_override": "major", "deliver_notifications": True,
                             "metadata": {"amends": {"post_id": post.post_id,
                                                     "subject_id": post.subject_id}}}}

    async def publish(self, post: StatusPost, key: str, opened: str | None) -> Posted:
        headers = {"Authorization": f"OAuth {self._key}", IDEMPOTENCY_HEADER: key,
                   "Content-Type": "application/json"}
        body = json.dumps(self.incident(post), ensure_ascii=False).encode()
        if opened is not None:
            response = await _send(self._client, self.name, "PATCH", f"{self.base}/{opened}",
                                   content=body, headers=headers)
        else:
            response = await _send(self._client, self.name, "POST", self.base,
                                   content=body, headers=headers)
        try:
            answer = response.json()
            return Posted(remote_id=str(answer["id"]), url=answer.get("shortlink"))
        except (ValueError, KeyError, TypeError):
            raise PermanentError("the statuspage answered without an incident id") from None

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()


def status_page(settings: FulfilmentSettings, clock: Clock) -> StatusPage | None:
    """The status page the settings name; none: posts are recorded, not published."""
    if settings.status_page == "webhook" and settings.status_webhook_url:
        secret = settings.status_webhook_secret
        assert secret is not None  # the settings require it
        return SignedStatusWebhook(settings.status_webhook_url, secret.get_secret_value(),
                                   clock=clock)
    if settings.status_page == "statuspage" and settings.statuspage_api_key is not None:
        return StatuspageApi(settings.statuspage_api_url, settings.statuspage_page_id,
                             settings.statuspage_api_key.get_secret_value(),
                             locale=settings.statuspage_locale)
    return None


class StatusPostMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.published = Counter(
            "amends_status_posts", "Status posts with a final answer from the status page, "
            "by stage and outcome (succeeded, failed)", ["stage", "outcome"],
            registry=registry)


@dataclass
class StatusPostPublisher:
    """Publishes each released post once; the sweep finishes what a failure left."""

    page: StatusPage | None
    kept: EffectLog
    effects: RemoteEffects
    dead_letters: DeadLetters
    clock: Clock
    metrics: StatusPostMetrics | None = None

    def _count(self, done: dict[str, Done], stages: dict[str, str]) -> None:
        for key, result in done.items():
            if self.metrics is not None and result.status is not None and result.fresh:
                self.metrics.published.labels(stages.get(key, "?"),
                                              result.status.value).inc()

    async def handle(self, records: Sequence[Record]) -> dict[str, Done]:
        """Publish the posts of these records (each once); returns how each stands."""
        now = self.clock()
        posts: dict[str, StatusPost] = {}
        rejected = []
        for record in records:
            try:
                post = _released.validate_json(record.value).data
            except ValidationError as exc:
                rejected.append((record, DeadLetterReason.invalid, describe(exc)))
                continue
            posts.setdefault(post.post_id, post)
        await self.dead_letters.send(rejected)
        jobs = [self._job(self._effect(post, now)) for post in posts.values()]
        done = await self.effects.run(self.kept, jobs, now)
        self._count(done, {key: post.stage.value for key, post in posts.items()})
        return done

    def _effect(self, post: StatusPost, now: datetime) -> Effect:
        draft = post.drafts[0]
        return Effect(key=post.post_id, customer_id="", tenant=post.tenant,
                      decision_id=post.subject_id, decision_ref=post.subject_id,
                      created_at=now, kind=KIND, incident_type=post.incident_type.value,
                      channel=self.page.name if self.page else "record",
                      locale=draft.locale, subject=draft.title, text=post.model_dump_json(),
                      remote=self.page.name if self.page else None)

    def _job(self, effect: Effect) -> Job:
        page = self.page
        if page is None:
            detail = "status post recorded (no status page is configured)"
            return Job(effect.key, effect.changed({
                "status": EffectState.succeeded.value, "detail": detail,
                "settled_at": effect.created_at}))

        async def perform(current: Effect) -> tuple[Done, Change]:
            post = StatusPost.model_validate_json(current.text or "")

            async def call() -> tuple[Done, Change]:
                opened = await self._opened(post)
                posted = await page.publish(post, current.key, opened)
                now = self.clock()
                detail = f"status post {post.stage.value} on the {page.name}"
                change: Change = {"status": EffectState.succeeded.value, "detail": detail,
                                  "settled_at": now, "sent_at": now,
                                  "gateway_id": posted.remote_id,
                                  "message_id": posted.url or posted.remote_id}
                return Done(ActionStatus.succeeded, detail, now), change
            return await self.effects.attempt(call, current, "the status post", page.name)
        return Job(effect.key, effect, perform=perform)

    async def _opened(self, post: StatusPost) -> str | None:
        """The page's id of the opened post a resolved one updates; none when there was no
        opened post (the outage was resolved before it was declared) or it failed."""
        if post.stage is not StatusPostStage.resolved:
            return None
        found = await self.kept.get([status_post_id(post.subject_id, StatusPostStage.opened)])
        first = found[0] if found else None
        if first is None or first.status == EffectState.failed.value:
            return None
        if first.status != EffectState.succeeded.value:
            # Its opening is still under way: the update waits for it (the sweep retries).
            raise TransientError("the opened post is not published yet")
        return first.gateway_id

    async def finish_unfinished(self, limit: int = 50) -> int:
        """Try again the posts a transient failure or a dead process left unfinished."""
        now = self.clock()
        token = new_claim()
        claimed = []
        for effect in await self.effects.due(self.kept, now, limit):
            taken = await self.effects.reclaim(self.kept, effect, now, token)
            job = self._job(taken) if taken is not None else None
            if taken is not None and job is not None and job.perform is not None:
                claimed.append((job, taken))
        done = await self.effects.perform(self.kept, claimed)
        self._count(done, {effect.key: StatusPost.model_validate_json(
            effect.text or "").stage.value for _, effect in claimed})
        return sum(d.status is not None for d in done.values())


def install_status_posts(runtime: Runtime, settings: FulfilmentSettings,
                         effects: RemoteEffects, *, page: StatusPage | None = None,
                         kept: EffectLog | None = None) -> StatusPostPublisher:
    """The publisher on fulfilment's app: its consumer, its sweep and its store (one small
    collection, a post or two per outage: the same adapter on both servers, no index)."""
    log_ = kept or MongoEffectLog(runtime.db["status_posts"])
    page = page if page is not None else status_page(settings, runtime.clock)
    publisher = StatusPostPublisher(page=page, kept=log_, effects=effects,
                                    dead_letters=runtime.dead_letters, clock=runtime.clock,
                                    metrics=StatusPostMetrics(runtime.registry))

    async def when_status_posts_released(records: list[Record]) -> None:
        await publisher.handle(records)

    async def finish() -> None:
        finished = await publisher.finish_unfinished()
        if finished:
            log.info("published %d status posts left unfinished", finished)

    async def close() -> None:
        if publisher.page is not None:
            await publisher.page.aclose()

    runtime.on_stop.append(close)
    runtime.consume([settings.status_posts_topic], when_status_posts_released,
                    name="when_status_posts_released")
    runtime.every(settings.sweep_seconds, finish, name="status-posts")
    return publisher
