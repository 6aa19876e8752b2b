"""Fulfilment's stores on FerretDB v1 (the local stack's server), which scans a whole
collection on every read, has no transactions and applies updates one document at a time:
bodies are kept as JSON text, the outboxes' "published" are marks inserted under unique ids
(never updates), and the hot path reads only what a redelivery needs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from pymongo.asynchronous.database import AsyncDatabase

from services.common.adapters.mongo import Doc
from services.common.adapters.outbox import MongoOutbox
from services.fulfilment.adapters.mongo import assemble, outcome_encoder, task_document
from services.fulfilment.ports import KeptOutcome, KeptTask, Stores


def stores(db: AsyncDatabase[Doc]) -> tuple[Stores, Callable[[], Awaitable[None]]]:
    """Fulfilment's stores in `db`, and what creates their indexes."""
    outcomes: MongoOutbox[KeptOutcome] = MongoOutbox(db["outcomes"], outcome_encoder("text"))
    tasks: MongoOutbox[KeptTask] = MongoOutbox(db["tasks"], task_document)
    return assemble(db, "text", outcomes, tasks, (outcomes.create_indexes, tasks.create_indexes))
