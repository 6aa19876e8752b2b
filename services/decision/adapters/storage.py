"""Which of decision's adapters keep its records: FerretDB's or MongoDB's, by the setting
`store_backend` or by what the server says it is."""

from __future__ import annotations

from typing import Literal

from pymongo.asynchronous.database import AsyncDatabase

from services.common.adapters.mongo import Client, Doc
from services.common.adapters.storage import Server, server_of
from services.decision.adapters.budget import FerretBudget
from services.decision.adapters.ferretdb import FerretDecisions
from services.decision.adapters.mongodb import MongoBudget, MongoDecisions
from services.decision.adapters.replies import FerretReplies, MongoReplies
from services.decision.ports import Budget, Decisions, Replies


def adapters(db: AsyncDatabase[Doc], server: Server) -> tuple[Decisions, Budget]:
    if server.backend == "mongodb":
        return MongoDecisions(db), MongoBudget(db, transactions=server.transactions)
    return FerretDecisions(db), FerretBudget(db)


async def open_storage(client: Client, db: str,
                       setting: Literal["auto", "ferretdb", "mongodb"] = "auto"
                       ) -> tuple[Decisions, Budget, Server]:
    """The store and the budget for database `db` on the server behind `client`."""
    server = await server_of(client, setting)
    store, budget = adapters(client[db], server)
    return store, budget, server


def reply_store(db: AsyncDatabase[Doc], server: Server) -> Replies:
    """The reply queue's adapter for the server (ADR 0017)."""
    return MongoReplies(db) if server.backend == "mongodb" else FerretReplies(db)
