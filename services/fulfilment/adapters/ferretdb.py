"""Fulfilment's stores on FerretDB v1 (the local stack's server), which scans a whole
collection on every read, has no transactions and applies updates one document at a time:
bodies are kept as JSON text, the outboxes' "published" are marks inserted under unique ids
(never updates), and the hot path reads only what a redelivery needs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase

from services.common.adapters.mongo import Doc
from services.common.adapters.outbox import MongoOutbox
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
    decisions = MongoDecisionLog(db["decisions"], "text")
    outcomes: MongoOutbox[KeptOutcome] = MongoOutbox(db["outcomes"], outcome_encoder("text"))
    tasks: MongoOutbox[KeptTask] = MongoOutbox(db["tasks"], task_document)
    refunds, messages = MongoEffectLog(db["refunds"]), MongoEffectLog(db["messages"])
    vouchers = VoucherStore(db)

    async def create_indexes() -> None:
        await decisions.create_indexes()
        for log in (refunds, messages):
            await log.create_indexes()
        for outbox in (outcomes, tasks):
            await outbox.create_indexes()
        for name in ("outcomes", "tasks", "points_ledger", "perks"):
            await db[name].create_index([("customer_id", ASCENDING),
                                         ("created_at", DESCENDING)])
        await vouchers.create_indexes()

    return Stores(decisions=decisions, outcomes=Outcomes(outcomes, db["outcomes"]),
                  tasks=tasks, ledger=MongoLedger(db["points_ledger"]),
                  perks=MongoPerks(db["perks"]), refunds=refunds, messages=messages,
                  vouchers=vouchers), create_indexes
