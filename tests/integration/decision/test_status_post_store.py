"""The status posts' store on the real server: a post kept once under its id, an approval
recorded once and read back with the post, a release marked once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pymongo import AsyncMongoClient

from schemas.incident import Incident
from services.common.adapters.mongo import Doc
from services.decision.adapters.status_posts import MongoStatusPosts
from services.decision.domain.policy import PublicPosts, load_policy
from services.decision.status_posts import Drafter
from tests.factories import incident

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
POLICY = load_policy("deploy/policy/default.yaml").model_copy(
    update={"public": PublicPosts(approval=True)})


async def test_a_post_its_approval_and_its_release_are_each_kept_once(
        mongo: AsyncMongoClient[Doc], suffix: str) -> None:
    store = MongoStatusPosts(mongo[f"amends_test_{suffix}_decision"])
    body = incident("service_outage", fact="out-1", at=T0, order_id=None, outage_id="out-1",
                    outage_service="Checkout")
    post = Drafter().post(Incident.model_validate(body), POLICY, T0)
    assert await store.add_new(post)
    assert not await store.add_new(post.model_copy(update={"drafted_at": T0
                                                            + timedelta(hours=1)}))
    assert await store.get(post.post_id) == post
    assert await store.approve(post.post_id, "rita", T0 + timedelta(minutes=5))
    assert not await store.approve(post.post_id, "olga", T0 + timedelta(minutes=6))
    [kept] = await store.all()
    assert (kept.approved_by, kept.approved_at) == ("rita", T0 + timedelta(minutes=5))
    assert kept.drafts == post.drafts
    assert await store.released([post.post_id]) == set()
    await store.mark_released([post.post_id])
    await store.mark_released([post.post_id])
    assert await store.released([post.post_id, "other"]) == {post.post_id}
    assert await store.get("other") is None
