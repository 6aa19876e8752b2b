"""Status posts: the drafts in every locale say what happened, when, who was affected, that it
was our fault, what was done (only what the outage said) and thanks; one post per outage and
stage however many of its decisions arrive, held for approval when the policy says so."""

# ruff: noqa: RUF001 - Russian words are written in Cyrillic on purpose

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from schemas.incident import Incident
from schemas.status_post import StatusPost, StatusPostStage, status_post_id
from services.common.access import Principal, Role
from services.decision.domain.policy import Policy, PublicPosts, load_policy
from services.decision.status_posts import (
    LOCALES,
    Drafter,
    StatusPostDesk,
    StatusPostNotFoundError,
    StatusPostSupersededError,
    format_length,
)
from tests.clock import FakeClock
from tests.factories import incident
from tests.fakes.common import FakePublisher
from tests.fakes.decision import FakeStatusPosts

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
POLICY = load_policy("deploy/policy/default.yaml")
PREVENTION = "We now fail over to a second database within seconds."

# Per locale: (apologises / our fault, who was affected, thanks, the honest "reviewing")
WORDS = {
    "en": ("our fault", "Who was affected", "Thank you for your patience",
           "We are reviewing the cause"),
    "ru": ("наша вина", "Кого это затронуло", "Спасибо за ваше терпение",
           "Мы разбираемся в причине"),
    "ro": ("vina noastră", "Pe cine a afectat", "Vă mulțumim pentru răbdare",
           "Analizăm cauza"),
}


def outage(customer: str = "c-1", *, minutes: int | None = None,
           prevention: str | None = None, outage_id: str = "out-1",
           service: str | None = "Checkout") -> Incident:
    fields: dict[str, Any] = {"outage_id": outage_id, "outage_minutes": minutes, "order_id": None,
              "outage_service": service, "outage_prevention": prevention}
    return Incident.model_validate(incident("service_outage", customer_id=customer,
                                            fact=outage_id, at=T0, **fields))


@pytest.mark.parametrize("locale", LOCALES)
def test_an_opened_post_says_what_when_who_whose_fault_and_thanks(locale: str) -> None:
    post = Drafter().post(outage(), POLICY, T0)
    [draft] = [d for d in post.drafts if d.locale == locale]
    fault, who, thanks, reviewing = WORDS[locale]
    assert "Checkout" in draft.title
    for words in (fault, who, thanks, reviewing, "Checkout", "2026-11-23 12:00 UTC"):
        assert words in draft.body, (locale, words, draft.body)
    assert post.stage is StatusPostStage.opened
    assert post.post_id == status_post_id("out-1", StatusPostStage.opened)


@pytest.mark.parametrize("locale", LOCALES)
def test_a_resolved_post_gives_the_duration_and_quotes_the_prevention(locale: str) -> None:
    post = Drafter().post(outage(minutes=85, prevention=PREVENTION), POLICY, T0)
    [draft] = [d for d in post.drafts if d.locale == locale]
    fault, _, thanks, reviewing = WORDS[locale]
    assert post.stage is StatusPostStage.resolved
    assert post.resolved_at == datetime(2026, 11, 23, 13, 25, tzinfo=UTC)
    assert format_length(85, locale) in draft.title
    assert "2026-11-23 13:25 UTC" in draft.body
    assert PREVENTION in draft.body
    assert reviewing not in draft.body  # the source said what was done: no hedge
    assert fault in draft.body
    assert thanks in draft.body


def test_a_post_never_invents_a_prevention() -> None:
    post = Drafter().post(outage(minutes=5), POLICY, T0)
    for draft in post.drafts:
        assert WORDS[draft.locale][3] in draft.body
    assert post.prevention is None


def test_outside_words_are_escaped() -> None:
    post = Drafter().post(outage(service="<script>x</script>"), POLICY, T0)
    assert all("<script>" not in d.body and "<script>" not in d.title for d in post.drafts)


def test_a_post_without_a_service_names_our_service() -> None:
    post = Drafter().post(outage(service=None), POLICY, T0)
    assert {d.locale: d.title for d in post.drafts}["en"].startswith("Our service")


def test_durations_read_as_hours_and_minutes() -> None:
    assert format_length(45, "en") == "45\u00a0min"
    assert format_length(120, "en") == "2\u00a0h"
    assert format_length(85, "ru") == "1\u00a0ч 25\u00a0мин"


def _desk(policy: Policy = POLICY) -> tuple[StatusPostDesk, FakeStatusPosts, FakePublisher]:
    store, publisher = FakeStatusPosts(), FakePublisher()
    desk = StatusPostDesk(store=store, publisher=publisher, policy=policy,
                          clock=FakeClock(T0), topic="status-posts",
                          url_template="https://status.example.org/{subject_id}")
    return desk, store, publisher


async def test_one_post_per_outage_and_stage_however_many_decisions() -> None:
    desk, store, publisher = _desk()
    decided = [outage(f"c-{i}") for i in range(50)]
    drafted = await desk.when_decided(decided)
    again = await desk.when_decided(decided)
    # Another instance (a fresh desk, the same store) sees a redelivery: still one.
    other = StatusPostDesk(store=store, publisher=publisher, policy=POLICY,
                           clock=FakeClock(T0), topic="status-posts")
    await other.when_decided(decided[:1])
    [post] = drafted
    assert again == []
    [released] = publisher.bodies("status-posts")
    assert released["type"] == "amends.status_post.released"
    assert released["id"] == post.post_id
    assert released["data"]["url"] == "https://status.example.org/out-1"
    resolved = await desk.when_decided([outage("c-1", minutes=30)])
    assert [p.stage for p in resolved] == [StatusPostStage.resolved]
    assert len(publisher.bodies("status-posts")) == 2


async def test_other_incident_types_get_no_post_unless_the_policy_lists_them() -> None:
    desk, _, _ = _desk()
    late = Incident.model_validate(incident("delivery_delayed", at=T0, delay_minutes=90))
    assert await desk.when_decided([late]) == []
    public = POLICY.model_copy(update={"public": PublicPosts(types=[late.type])})
    desk, _, _ = _desk(public)
    [post] = await desk.when_decided([late])
    assert post.subject_id == late.incident_id


REVIEWER = Principal("rita", frozenset({Role.reviewer}), "default", "api_key")
OTHER_TENANT = Principal("olga", frozenset({Role.reviewer}), "acme", "api_key")


async def test_a_held_post_is_released_only_when_a_reviewer_approves_it() -> None:
    held = POLICY.model_copy(update={"public": PublicPosts(approval=True)})
    desk, _, publisher = _desk(held)
    [post] = await desk.when_decided([outage()])
    assert publisher.bodies("status-posts") == []
    assert [p.post_id for p in await desk.awaiting(REVIEWER)] == [post.post_id]
    assert await desk.awaiting(OTHER_TENANT) == []
    with pytest.raises(StatusPostNotFoundError):
        await desk.approve(post.post_id, OTHER_TENANT)
    approved = await desk.approve(post.post_id, REVIEWER)
    await desk.approve(post.post_id, REVIEWER)  # twice: still one release
    assert approved.approved_by == "rita"
    [released] = publisher.bodies("status-posts")
    assert released["data"]["approved_by"] == "rita"
    assert await desk.awaiting(REVIEWER) == []


async def test_a_post_recorded_but_not_released_before_a_crash_is_released_by_the_sweep(
) -> None:
    desk, store, publisher = _desk()
    post = Drafter().post(outage(), POLICY, T0)
    await store.add_new(post)  # the crash came before the release
    assert await desk.release_unreleased() == 1
    assert await desk.release_unreleased() == 0
    assert [json.dumps(b["data"]["post_id"]) for b in publisher.bodies("status-posts")] == [
        json.dumps(post.post_id)]


async def test_an_opened_post_still_held_when_the_outage_is_resolved_is_superseded() -> None:
    held = POLICY.model_copy(update={"public": PublicPosts(approval=True)})
    desk, _, publisher = _desk(held)
    [opened] = await desk.when_decided([outage()])
    [resolved] = await desk.when_decided([outage(minutes=30)])
    assert [p.post_id for p in await desk.awaiting(REVIEWER)] == [resolved.post_id]
    with pytest.raises(StatusPostSupersededError):
        await desk.approve(opened.post_id, REVIEWER)
    await desk.approve(resolved.post_id, REVIEWER)
    assert [b["data"]["stage"] for b in publisher.bodies("status-posts")] == ["resolved"]


class CountingStore(FakeStatusPosts):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def add_new(self, post: StatusPost) -> bool:
        self.calls += 1
        return await super().add_new(post)

    async def get(self, post_id: str) -> StatusPost | None:
        self.calls += 1
        return await super().get(post_id)


async def test_an_outage_s_thousands_of_decisions_cost_one_store_trip_per_stage() -> None:
    store = CountingStore()
    desk = StatusPostDesk(store=store, publisher=FakePublisher(), policy=POLICY,
                          clock=FakeClock(T0), topic="status-posts")
    for start in range(0, 2000, 500):
        await desk.when_decided([outage(f"c-{n}") for n in range(start, start + 500)])
    assert store.calls == 1
    await desk.when_decided([outage(f"c-{n}", minutes=30) for n in range(500)])
    assert store.calls == 2
