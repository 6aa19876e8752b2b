"""The reply queue's two adapters on the real database (FerretDB here; the MongoDB adapter's
native fields and indexes run on it too): a draft once under its id, a step once under its
key, the open and the posted listed apart and by tenant, and the times read back aware."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pymongo import AsyncMongoClient

from schemas.erasure import ErasureRequest
from services.common.adapters.erasure import erase_in_database
from services.common.adapters.mongo import Doc
from services.common.erasure import Pseudonyms, Scrub
from services.decision.adapters.replies import FerretReplies, MongoReplies
from services.decision.domain import replies
from services.decision.domain.replies import ReplyStep, ReplyStepKind
from services.decision.ports import Replies
from tests.auth import PSEUDONYM_KEY
from tests.decisions import APOLOGY, CREDIT, T0, decided, made_incident

pytestmark = pytest.mark.integration


def draft(customer: str, tenant: str | None, hours: int) -> replies.Reply:
    made = made_incident("negative_review", customer_id=customer, tenant=tenant, paid=None,
                         rating=2, review_platform="trustpilot", at=T0 + timedelta(hours=hours),
                         review_url=f"https://reviews.example/{customer}")
    found = replies.draft(decided(made, APOLOGY, CREDIT), T0 + timedelta(hours=hours + 1))
    assert found is not None
    return found


@pytest.mark.parametrize("adapter", [FerretReplies, MongoReplies])
async def test_drafts_and_steps_are_kept_once_and_listed_by_state_and_tenant(
        mongo: AsyncMongoClient[Doc], suffix: str, adapter: type[FerretReplies]) -> None:
    db = mongo[f"amends_test_{suffix}_decision"]
    store: Replies = adapter(db)
    await store.create_indexes()
    first, second, other = draft("c-1", None, 0), draft("c-2", None, 1), draft("c-3", "shop-a", 2)
    assert await store.add([first, second, other]) == {
        first.reply_id, second.reply_id, other.reply_id}
    assert await store.add([first]) == set()  # a redelivery: already drafted

    approved = ReplyStep(first.reply_id, ReplyStepKind.approved, 0, "rita", T0, first.draft)
    assert await store.add_step(approved)
    assert not await store.add_step(approved)  # a racing approval: the first stands
    assert await store.add_step(ReplyStep(first.reply_id, ReplyStepKind.posted, 0, "rita",
                                          T0 + timedelta(hours=2), first.draft,
                                          "https://reviews.example/c-1#reply"))

    open_ = await store.listing(None, posted=False, limit=10)
    assert [r.reply_id for r, _ in open_] == [second.reply_id, other.reply_id]
    mine = await store.listing(["shop-a"], posted=False, limit=10)
    assert [r.customer_id for r, _ in mine] == ["c-3"]
    [(done, steps)] = await store.listing(None, posted=True, limit=10)
    assert done == first  # read back whole, times aware
    assert sorted(s.kind.value for s in steps) == ["approved", "posted"]
    view = replies.view(done, steps, replies.ReplySla(timedelta(hours=4), timedelta(hours=24)),
                        T0 + timedelta(days=1))
    assert (view.state.value, view.overdue, view.public_url) == (
        "posted", False, "https://reviews.example/c-1#reply")
    found = await store.get(second.reply_id)
    assert found == (second, [])
    assert await store.get("no-such-reply") is None


@pytest.mark.parametrize("adapter", [FerretReplies, MongoReplies])
async def test_an_erased_customers_reply_is_pseudonymised_and_still_reads(
        mongo: AsyncMongoClient[Doc], suffix: str, adapter: type[FerretReplies]) -> None:
    db = mongo[f"amends_test_{suffix}_decision"]
    store: Replies = adapter(db)
    mine, theirs = draft("c-1", None, 0), draft("c-12", None, 1)
    await store.add([mine, theirs])
    request = ErasureRequest(erasure_id="e-1", customer_id="c-1", tenant="default",
                             requested_by="admin-1", requested_at=T0 + timedelta(days=1))
    pseudonym = Pseudonyms(PSEUDONYM_KEY).of("c-1")
    report = await erase_in_database(db, request, Scrub("c-1", pseudonym),
                                     default_tenant="default")
    assert report.scrubbed == {"public_replies": 1}
    found = await store.get(mine.reply_id)
    assert found is not None
    assert found[0].customer_id == pseudonym
    assert found[0].draft == mine.draft  # our own words, never the customer's
    assert await store.get(theirs.reply_id) == (theirs, [])
