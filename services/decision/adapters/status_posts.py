"""Status posts on MongoDB or FerretDB, the same on both: one small collection (a post or two
per outage) read whole, and every write an insert under a unique id — the post, its
approval, and the mark that it was released — so no update races another."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pymongo.asynchronous.database import AsyncDatabase

from schemas.status_post import StatusPost
from services.common.adapters.mongo import Doc, insert_new


class MongoStatusPosts:
    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.posts = db["status_posts"]
        self.approvals = db["status_post_approvals"]
        self.marks = db["status_post_released"]

    async def add_new(self, post: StatusPost) -> bool:
        doc = {"_id": post.post_id, "subject_id": post.subject_id, "tenant": post.tenant,
               "body": post.model_dump_json()}
        return bool(await insert_new(self.posts, [doc]))

    async def get(self, post_id: str) -> StatusPost | None:
        doc = await self.posts.find_one({"_id": post_id})
        if doc is None:
            return None
        approval = await self.approvals.find_one({"_id": post_id})
        return _post(doc, approval)

    async def approve(self, post_id: str, by: str, at: datetime) -> bool:
        approval = {"_id": post_id, "by": by, "at": at.isoformat()}
        return bool(await insert_new(self.approvals, [approval]))

    async def all(self) -> list[StatusPost]:
        approvals = {d["_id"]: d async for d in self.approvals.find({})}
        posts = [_post(d, approvals.get(d["_id"])) async for d in self.posts.find({})]
        return sorted(posts, key=lambda p: p.drafted_at, reverse=True)

    async def released(self, post_ids: Sequence[str]) -> set[str]:
        return {d["_id"] async for d in self.marks.find({"_id": {"$in": list(post_ids)}})}

    async def mark_released(self, post_ids: Sequence[str]) -> None:
        await insert_new(self.marks, [{"_id": i} for i in post_ids])

    async def create_indexes(self) -> None:
        """Nothing to index beyond `_id`: the collections hold a post or two per outage."""


def _post(doc: Doc, approval: Doc | None) -> StatusPost:
    post = StatusPost.model_validate_json(doc["body"])
    if approval is None:
        return post
    return post.model_copy(update={"approved_by": approval["by"],
                                   "approved_at": datetime.fromisoformat(approval["at"])})
