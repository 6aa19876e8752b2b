"""Fulfilment's stores on MongoDB: the native model. Decisions and outcomes are nested
documents, the outboxes' "published" a flag set by one conditional update per batch, and the
reads by decision or customer go through indexes.

Every write is a single-document insert under a deterministic id or a conditional update, so
none needs a transaction: a crash between two writes is repaired by the redelivery, which
finds what was done. (Tested against FerretDB as far as it goes: nested documents, `$in` and
conditional updates work there; transactions are not used.)"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from pymongo.asynchronous.database import AsyncDatabase

from services.common.adapters.mongo import Doc
from services.common.adapters.outbox import FlagOutbox
from services.fulfilment.adapters.mongo import assemble, outcome_encoder, task_document
from services.fulfilment.ports import KeptOutcome, KeptTask, Stores


def stores(db: AsyncDatabase[Doc]) -> tuple[Stores, Callable[[], Awaitable[None]]]:
    """Fulfilment's stores in `db`, and what creates their indexes."""
    outcomes: FlagOutbox[KeptOutcome] = FlagOutbox(db["outcomes"], outcome_encoder("nested"))
    tasks: FlagOutbox[KeptTask] = FlagOutbox(db["tasks"], task_document)
    return assemble(db, "nested", outcomes, tasks)
