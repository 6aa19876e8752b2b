"""Public status posts (ADR 0016): one per outage, or per incident of another type the policy
marks public, drafted here in every locale from `templates/<locale>/status_post.txt.j2`,
kept under a deterministic id, held for a reviewer when the policy says so, and released on
the status-posts topic, where fulfilment publishes it once. The outage's resolved stage is a
second post under its own id: the update that says how long it lasted.

A post says only what the incident carries: the service that failed, its start and end, and
what was done so it won't happen again only when the source said it (else that the cause is
being reviewed, which is true)."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from schemas.incident import Incident
from schemas.status_post import (
    StatusPost,
    StatusPostDraft,
    StatusPostReleased,
    StatusPostStage,
    status_post_id,
)
from services.common.access import Principal
from services.common.app import Runtime
from services.common.clock import Clock
from services.common.messaging import Publisher, outgoing
from services.decision.domain.policy import Policy
from services.decision.settings import DecisionSettings

log = logging.getLogger(__name__)

LOCALES = ("en", "ru", "ro")
TEMPLATE = "status_post.txt.j2"  # in templates/<locale>/, like the apologies
_UNITS = {"en": ("h", "min"), "ru": ("ч", "мин"), "ro": ("h", "min")}


class StatusPostStore(Protocol):
    """The posts as drafted, the approvals given, and which were released on the topic:
    every write an insert under a unique id (a duplicate is "already done")."""

    async def add_new(self, post: StatusPost) -> bool:
        """Keep the post unless one has its id; True when kept by this call."""

    async def get(self, post_id: str) -> StatusPost | None:
        """The post with its approval, if given."""

    async def approve(self, post_id: str, by: str, at: datetime) -> bool:
        """Record the approval once; True when recorded by this call."""

    async def all(self) -> list[StatusPost]:
        """Every post kept (one or two per outage: a small collection), newest first."""

    async def released(self, post_ids: Sequence[str]) -> set[str]:
        """Which of these were put on the topic already."""

    async def mark_released(self, post_ids: Sequence[str]) -> None: ...

    async def create_indexes(self) -> None: ...


def subject_of(incident: Incident) -> str:
    """What one post is about: the outage, or the incident itself."""
    return incident.outage_id or incident.incident_id


def stage_of(incident: Incident) -> StatusPostStage:
    return (StatusPostStage.resolved if incident.outage_minutes is not None
            else StatusPostStage.opened)


def format_moment(moment: datetime) -> str:
    """A moment every reader of every locale reads the same way (the page is public)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def format_length(minutes: int, locale: str) -> str:
    hours, rest = divmod(minutes, 60)
    h, m = _UNITS.get(locale, _UNITS["en"])
    if not hours:
        return f"{rest}\u00a0{m}"
    return f"{hours}\u00a0{h}" + (f" {rest}\u00a0{m}" if rest else "")


@dataclass(frozen=True)
class Drafter:
    """Renders a post's text in every locale."""

    env: Environment = field(default_factory=lambda: Environment(
        loader=PackageLoader("services.decision", "templates"),
        autoescape=select_autoescape(default_for_string=True, default=True),
        undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        keep_trailing_newline=False))

    def drafts(self, *, service: str | None, started_at: datetime,
               resolved_at: datetime | None, minutes: int | None,
               prevention: str | None) -> list[StatusPostDraft]:
        out = []
        for locale in LOCALES:
            template = self.env.get_template(f"{locale}/{TEMPLATE}")
            context = template.new_context({
                "service": service, "started": format_moment(started_at),
                "resolved": format_moment(resolved_at) if resolved_at is not None else None,
                "duration": format_length(minutes, locale) if minutes is not None else None,
                "prevention": prevention})
            title = re.sub(r"[ \t]*\n+[ \t]*", " ",
                           "".join(template.blocks["title"](context))).strip()
            body = re.sub(r"\n{3,}", "\n\n", "".join(template.blocks["body"](context))).strip()
            out.append(StatusPostDraft(locale=locale, title=title, body=body))
        return out

    def post(self, incident: Incident, policy: Policy, now: datetime,
             url_template: str = "") -> StatusPost:
        """The post for this incident's subject and stage."""
        subject, stage = subject_of(incident), stage_of(incident)
        minutes = incident.outage_minutes
        resolved_at = (incident.occurred_at + timedelta(minutes=minutes)
                       if minutes is not None else None)
        return StatusPost(
            post_id=status_post_id(subject, stage), subject_id=subject, stage=stage,
            incident_type=incident.type, tenant=incident.tenant,
            started_at=incident.occurred_at, resolved_at=resolved_at, minutes=minutes,
            service=incident.outage_service, prevention=incident.outage_prevention,
            drafts=self.drafts(service=incident.outage_service,
                               started_at=incident.occurred_at, resolved_at=resolved_at,
                               minutes=minutes, prevention=incident.outage_prevention),
            url=url_template.replace("{subject_id}", subject) if url_template else None,
            drafted_at=now, policy_version=policy.version,
            approval_required=policy.public.approval)


class StatusPostNotFoundError(LookupError):
    pass


class StatusPostSupersededError(ValueError):
    """An opened post still held when its outage was resolved: the resolved post says all of
    it, and publishing the opened one after it would open the outage again in public."""


@dataclass
class StatusPostDesk:
    """Drafts, holds and releases the status posts of what decision decides."""

    store: StatusPostStore
    publisher: Publisher
    policy: Policy
    clock: Clock
    topic: str
    url_template: str = ""
    default_tenant: str = "default"
    drafter: Drafter = field(default_factory=Drafter)
    # Subjects and stages this process has seen to their release: an outage's thousands of
    # decisions cost one store round trip, not one each (and no id is derived for them).
    _done: set[tuple[str, StatusPostStage]] = field(default_factory=set)

    async def when_decided(self, incidents: Sequence[Incident]) -> list[StatusPost]:
        """Draft the post of each public subject and stage not seen yet (of the incidents
        just decided); release those that need no approval. Returns the posts drafted now."""
        public = set(self.policy.public.types)
        wanted: dict[tuple[str, StatusPostStage], Incident] = {}
        for incident in incidents:
            if incident.type not in public:
                continue
            seen = (subject_of(incident), stage_of(incident))
            if seen not in self._done:
                wanted.setdefault(seen, incident)
        drafted: list[StatusPost] = []
        now = self.clock()
        for seen, incident in wanted.items():
            key = status_post_id(*seen)
            post = self.drafter.post(incident, self.policy, now, self.url_template)
            if await self.store.add_new(post):
                drafted.append(post)
                log.info("status post %s drafted (%s, %s)", key, post.subject_id,
                         post.stage.value)
            else:
                post = await self.store.get(key) or post  # recorded before: that one stands
            if not post.approval_required or post.approved_by is not None:
                await self._release([post])
            self._done.add(seen)
        return drafted

    async def _release(self, posts: Sequence[StatusPost]) -> None:
        done = await self.store.released([p.post_id for p in posts])
        todo = [p for p in posts if p.post_id not in done]
        if not todo:
            return
        await self.publisher.publish_all([outgoing(self.topic, StatusPostReleased(
            id=p.post_id, source="amends/decision", time=self.clock(),
            subject=p.subject_id, tenant=p.tenant, data=p)) for p in todo])
        await self.store.mark_released([p.post_id for p in todo])

    async def awaiting(self, who: Principal | None = None) -> list[StatusPost]:
        """Drafts held for approval, oldest first (only the operator's tenants); an opened
        post whose outage has a resolved post is superseded, not awaited."""
        every = await self.store.all()
        resolved = {p.subject_id for p in every if p.stage is StatusPostStage.resolved}
        posts = [p for p in every if p.approval_required and p.approved_by is None
                 and not (p.stage is StatusPostStage.opened and p.subject_id in resolved)]
        if who is not None:
            posts = [p for p in posts if who.sees(p.tenant, self.default_tenant)]
        return sorted(posts, key=lambda p: p.drafted_at)

    async def listed(self, who: Principal | None = None) -> list[StatusPost]:
        posts = await self.store.all()
        if who is not None:
            posts = [p for p in posts if who.sees(p.tenant, self.default_tenant)]
        return posts

    async def approve(self, post_id: str, who: Principal) -> StatusPost:
        """A reviewer approves a held draft as written: it is released at once."""
        post = await self.store.get(post_id)
        if post is None or not who.sees(post.tenant, self.default_tenant):
            raise StatusPostNotFoundError(post_id)
        if (post.stage is StatusPostStage.opened and post.approved_by is None
                and await self.store.get(status_post_id(post.subject_id,
                                                        StatusPostStage.resolved))):
            raise StatusPostSupersededError(post_id)
        if post.approved_by is None and post.approval_required:
            await self.store.approve(post_id, who.subject, self.clock())
            post = await self.store.get(post_id) or post
        await self._release([post])
        return post

    async def release_unreleased(self) -> int:
        """Release what a crash left recorded and cleared but not on the topic."""
        posts = [p for p in await self.store.all()
                 if not p.approval_required or p.approved_by is not None]
        done = await self.store.released([p.post_id for p in posts])
        todo = [p for p in posts if p.post_id not in done]
        await self._release(todo)
        return len(todo)


def install_status_posts(runtime: Runtime, settings: DecisionSettings, policy: Policy,
                         store: StatusPostStore) -> StatusPostDesk:
    """The desk on decision's app, with its sweep for posts a crash left unreleased."""
    desk = StatusPostDesk(store=store, publisher=runtime.publisher, policy=policy,
                          clock=runtime.clock, topic=settings.status_posts_topic,
                          url_template=settings.status_post_url,
                          default_tenant=settings.auth_default_tenant)

    async def release_status_posts() -> None:
        released = await desk.release_unreleased()
        if released:
            log.info("released %d status posts a crash left unreleased", released)

    runtime.every(settings.status_post_sweep_seconds, release_status_posts,
                  name="status-posts")
    return desk
