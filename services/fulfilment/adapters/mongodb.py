"""Fulfilment's stores on MongoDB: the native model. Decisions and outcomes are nested
documents, the outboxes' "published" a flag set by one conditional update per batch, and the
reads by decision or customer go through indexes.

Every write is a single-document insert under a deterministic id or a conditional update, so
none needs a transaction: a crash between two writes is repaired by the redelivery, which
finds what was done. (Tested against FerretDB as far as it goes: nested documents, `$in` and
conditional updates work there; transactions are not used.)"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase

from services.common.adapters.mongo import Doc
from services.common.adapters.outbox import FlagOutbox
from services.fulfilment.adapters.mongo import (
    MongoDecisionLog,
    MongoEffectLog,
    MongoLedger,
    MongoPerks,
    Outcomes,
    outcome_encoder,
    task_document,
)
from services.fulfilment.adapters.vouchers import VoucherStore
from services.fulfilment.ports import KeptOutcome, KeptTask, Stores


def stores(db: AsyncDatabase[Doc]) -> tuple[Stores, Callable[[], Awaitable[None]]]:
    """Fulfilment's stores in `db`, and what creates their indexes."""
    decisions = MongoDecisionLog(db["decisions"], "nested")
    outcomes: FlagOutbox[KeptOutcome] = FlagOutbox(db["outcomes"], outcome_encoder("nested"))
    tasks: FlagOutbox[KeptTask] = FlagOutbox(db["tasks"], task_document)
    refunds, messages = MongoEffectLog(db["refunds"]), MongoEffectLog(db["messages"])
    vouchers = VoucherStore(db)

    async def create_indexes() -> None:
        await decisions.create_indexes()
        for log in (refunds, messages):
            await log.create_indexes()
        for name in ("outcomes", "tasks", "points_ledger", "perks"):
            await db[name].create_index([("customer_id", ASCENDING),
                                         ("created_at", DESCENDING)])
        await vouchers.create_indexes()

    return Stores(decisions=decisions, outcomes=Outcomes(outcomes, db["outcomes"]),
                  tasks=tasks, ledger=MongoLedger(db["points_ledger"]),
                  perks=MongoPerks(db["perks"]), refunds=refunds, messages=messages,
                  vouchers=vouchers), create_indexes
