"""Public replies to negative reviews: the draft in the review's language says only what the
decision did, the steps a person takes are once each and in order, and the SLA moves a reply
to the escalated queue (and the gauges) as the fake clock passes its target and its limit."""


from __future__ import annotations

from datetime import timedelta

import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from schemas.decision import Decision, DecisionStatus, RemedyKind
from services.common import tone
from services.common.access import Principal, Role
from services.common.messaging import Record
from services.decision.domain import replies
from services.decision.domain.replies import (
    ReplyQueue,
    ReplyRefusedError,
    ReplySla,
    ReplyState,
    ReplyStepKind,
)
from services.decision.replies import ReplyDesk, ReplyMetrics, sla_of
from services.decision.settings import DecisionSettings
from tests.clock import FakeClock
from tests.decisions import APOLOGY, CREDIT, T0, decided, eur, grant, made_incident
from tests.fakes.decision import FakeDecisions, FakeReplies
from tests.kafka_tools import incident_events

pytestmark = pytest.mark.unit

SLA = ReplySla(target=timedelta(hours=4), limit=timedelta(hours=24))
REVIEWER = Principal("rita", frozenset({Role.reviewer}), "default", "api_key")
POINTS = grant(RemedyKind.points, points=500, value=eur("5.00"))
# What each locale says for store credit, and for "we fixed it" (only when the incident does).
CREDIT_WORDS = {"en": "store credit", "ru": "средства на ваш счёт", "ro": "credit în cont"}
FIXED = {"en": "We have fixed", "ru": "Мы устранили причину", "ro": "Am remediat"}
PRIVATE = {"en": "privately", "ru": "лично", "ro": "în privat"}


def review(locale: str = "en", *, cause_fixed: bool = False, rating: int = 1,
           customer: str = "c-1") -> Decision:
    made = made_incident("negative_review", customer_id=customer, locale=locale, paid=None,
                         rating=rating, review_platform="trustpilot", cause_fixed=cause_fixed,
                         review_url=f"https://reviews.example/{customer}")
    return decided(made, APOLOGY, CREDIT)


@pytest.mark.parametrize("locale", replies.LOCALES)
def test_the_draft_is_in_the_reviews_language_and_names_what_was_done(locale: str) -> None:
    draft = replies.draft(review(locale), T0)
    assert draft is not None
    assert draft.locale == locale
    assert draft.remedies == ("store_credit",)
    assert CREDIT_WORDS[locale] in draft.draft
    assert PRIVATE[locale] in draft.draft
    assert tone.problems(draft.draft, locale, public=True) == []
    assert tone.words(draft.draft) <= 90  # brief: a reply, not a letter
    # Never the amount (the customer's business), the order, the address or a fix unsaid.
    for private in ("10", "€", "EUR", "o-c-1", "reviews.example", FIXED[locale]):
        assert private not in draft.draft


@pytest.mark.parametrize("locale", replies.LOCALES)
def test_a_fix_is_claimed_only_when_the_incident_says_so(locale: str) -> None:
    draft = replies.draft(review(locale, cause_fixed=True), T0)
    assert draft is not None
    assert FIXED[locale] in draft.draft


def test_a_held_decision_names_no_remedy_and_each_remedy_once() -> None:
    held = review().model_copy(update={"status": DecisionStatus.held})
    draft = replies.draft(held, T0)
    assert draft is not None
    assert draft.remedies == ()
    assert "store credit" not in draft.draft
    assert "apologised to you directly." in draft.draft
    both = decided(review().incident, APOLOGY, CREDIT, POINTS, CREDIT)
    again = replies.draft(both, T0)
    assert again is not None
    assert again.remedies == ("store_credit", "points")
    assert "store credit and loyalty points" in again.draft


def test_an_unknown_locale_falls_back_to_english_and_other_incidents_get_no_reply() -> None:
    draft = replies.draft(review("de"), T0)
    assert draft is not None
    assert draft.locale == "en"
    assert "We're sorry" in draft.draft
    late = decided(made_incident("delivery_delayed", delay_minutes=90), APOLOGY)
    assert replies.draft(late, T0) is None


def test_the_reply_id_is_the_decisions_and_a_redraft_is_the_same_reply() -> None:
    decision = review()
    first, second = replies.draft(decision, T0), replies.draft(decision, T0 + timedelta(1))
    assert first is not None
    assert second is not None
    assert first.reply_id == second.reply_id == replies.reply_id(decision.decision_id)


def test_no_step_removes_hides_or_reports_a_review() -> None:
    """A reply is never "delete the review": no such action exists anywhere in the desk."""
    names = {k.value for k in ReplyStepKind} | {q.value for q in ReplyQueue}
    assert names == {"edited", "approved", "posted", "replies", "escalated"}
    for word in ("delete", "remove", "hide", "report", "flag", "takedown"):
        assert not any(word in name for name in names)
        assert not any(word in name.lower() for name in dir(ReplyDesk))


# --- the desk, with a fake clock -----------------------------------------------------------

def desk_with(*decisions: Decision) -> tuple[ReplyDesk, FakeClock, CollectorRegistry,
                                             list[Record]]:
    store = FakeDecisions()
    for decision in decisions:
        store.decisions.records[decision.decision_id] = decision
    clock = FakeClock(T0 + timedelta(minutes=5))
    registry = CollectorRegistry()
    desk = ReplyDesk(store=FakeReplies(), decisions=store, sla=SLA, clock=clock,
                     metrics=ReplyMetrics(registry))
    records = [Record("incidents", 0, n, key.encode(), value) for n, (key, value) in
               enumerate(incident_events([d.incident.model_dump(mode="json")
                                          for d in decisions]))]
    return desk, clock, registry, records


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_a_batch_drafts_each_review_once_and_nothing_else() -> None:
    late = decided(made_incident("delivery_delayed", customer_id="c-9", delay_minutes=90),
                   APOLOGY)
    desk, _, registry, records = desk_with(review(), review(customer="c-2"), late)
    assert await desk.draft_for(records) == 2
    assert await desk.draft_for(records) == 0  # a redelivery finds them drafted
    assert sample(registry, "amends_public_reply_draft_seconds_count") == 2
    listed = await desk.listing(None, None)
    assert sorted(v.reply.customer_id for v in listed) == ["c-1", "c-2"]


async def test_a_reply_is_escalated_past_the_target_and_breached_past_the_limit() -> None:
    desk, clock, registry, records = desk_with(review())
    await desk.draft_for(records)
    [fresh] = await desk.refresh_gauges()
    assert (fresh.queue, fresh.overdue, fresh.breached) == (ReplyQueue.replies, False, False)
    assert sample(registry, "amends_public_replies_overdue") == 0
    assert sample(registry, "amends_public_reply_sla_seconds", bound="target") == 4 * 3600

    clock.now = T0 + SLA.target - timedelta(seconds=1)  # the review was posted at T0
    [still] = await desk.refresh_gauges()
    assert still.queue is ReplyQueue.replies
    clock.now = T0 + SLA.target
    [late] = await desk.refresh_gauges()
    assert late.queue is ReplyQueue.escalated
    assert not late.breached
    assert sample(registry, "amends_public_replies_overdue") == 1
    assert sample(registry, "amends_public_replies_open", queue="escalated") == 1
    assert sample(registry, "amends_public_replies_open", queue="replies") == 0
    assert sample(registry, "amends_public_reply_oldest_open_seconds") == 4 * 3600
    assert [v.reply.reply_id for v in await desk.listing(None, ReplyQueue.escalated)] == [
        late.reply.reply_id]
    assert await desk.listing(None, ReplyQueue.replies) == []

    clock.now = T0 + SLA.limit
    [breached] = await desk.refresh_gauges()
    assert breached.breached
    assert sample(registry, "amends_public_replies_breached") == 1


async def test_approve_then_post_records_the_time_to_reply_and_empties_the_queue() -> None:
    desk, clock, registry, records = desk_with(review())
    await desk.draft_for(records)
    [drafted] = await desk.listing(None, None)
    clock.now = T0 + timedelta(hours=1)
    edited = await desk.act(drafted, ReplyStepKind.edited, REVIEWER,
                            text=drafted.text + " We read every review.")
    assert edited.state is ReplyState.drafted
    assert edited.edits == 1
    approved = await desk.act(edited, ReplyStepKind.approved, REVIEWER)
    assert approved.state is ReplyState.approved
    assert approved.text.endswith("every review.")
    clock.now = T0 + timedelta(hours=2, minutes=30)
    posted = await desk.act(approved, ReplyStepKind.posted, REVIEWER,
                            public_url="https://reviews.example/c-1#reply")
    assert (posted.state, posted.posted_by, posted.overdue) == (ReplyState.posted, "rita", False)
    assert sample(registry, "amends_public_reply_seconds_count") == 1
    assert sample(registry, "amends_public_reply_seconds_sum") == 2.5 * 3600
    # 2.5 h falls in the 4 h bucket, not the 2 h one.
    assert sample(registry, "amends_public_reply_seconds_bucket", le="7200.0") == 0
    assert sample(registry, "amends_public_reply_seconds_bucket", le="14400.0") == 1
    clock.now = T0 + timedelta(days=3)  # a posted reply is never overdue later
    assert await desk.refresh_gauges() == []
    assert sample(registry, "amends_public_replies_overdue") == 0
    [done] = await desk.listing(None, None, posted=True)
    assert done.public_url == "https://reviews.example/c-1#reply"
    assert not done.overdue


async def test_steps_out_of_order_raced_or_off_tone_are_refused() -> None:
    desk, _, _, records = desk_with(review())
    await desk.draft_for(records)
    [drafted] = await desk.listing(None, None)
    with pytest.raises(ReplyRefusedError, match="Approve"):
        await desk.act(drafted, ReplyStepKind.posted, REVIEWER, public_url="https://x.example")
    # An edit is a draft, saved as typed; approving one that blames someone is refused.
    blaming = await desk.act(drafted, ReplyStepKind.edited, REVIEWER,
                             text=drafted.text + " The courier was late.")
    assert blaming.edits == 1
    with pytest.raises(ReplyRefusedError, match="blames: 'courier'"):
        await desk.act(blaming, ReplyStepKind.approved, REVIEWER)
    # Two people editing the same version: the second finds the first got there first.
    with pytest.raises(ReplyRefusedError, match="Someone else"):
        await desk.act(drafted, ReplyStepKind.edited, REVIEWER, text=drafted.text)
    asking = await desk.act(blaming, ReplyStepKind.edited, REVIEWER,
                            text=drafted.text + " Could you delete the review now?")
    with pytest.raises(ReplyRefusedError, match="review to go"):
        await desk.act(asking, ReplyStepKind.approved, REVIEWER)
    fixed = await desk.act(asking, ReplyStepKind.edited, REVIEWER, text=drafted.text)
    approved = await desk.act(fixed, ReplyStepKind.approved, REVIEWER)
    with pytest.raises(ReplyRefusedError, match="approved"):
        await desk.act(approved, ReplyStepKind.edited, REVIEWER, text="We're sorry.")
    with pytest.raises(ReplyRefusedError, match="public address"):
        await desk.act(approved, ReplyStepKind.posted, REVIEWER, public_url="trustpilot")
    posted = await desk.act(approved, ReplyStepKind.posted, REVIEWER,
                            public_url="https://reviews.example/r#1")
    with pytest.raises(ReplyRefusedError, match="posted already"):
        await desk.act(posted, ReplyStepKind.posted, REVIEWER,
                       public_url="https://reviews.example/r#2")


def test_the_sla_limit_may_not_come_before_its_target() -> None:
    assert sla_of(DecisionSettings(reply_sla_target_hours=2, reply_sla_max_hours=8)) == (
        ReplySla(timedelta(hours=2), timedelta(hours=8)))
    with pytest.raises(ValidationError, match="at least reply_sla_target_hours"):
        DecisionSettings(reply_sla_target_hours=8, reply_sla_max_hours=4)
