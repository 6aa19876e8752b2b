"""Which adapter keeps intake's store: FerretDB's or MongoDB's, by the `store_backend`
setting or by what the server says it is."""

from __future__ import annotations

from pymongo import AsyncMongoClient

from services.common.adapters.mongo import Doc
from services.common.adapters.storage import server_of
from services.intake.adapters.ferretdb import FerretIntakeStore
from services.intake.adapters.mongodb import MongoIntakeStore
from services.intake.ports import IntakeStore
from services.intake.settings import IntakeSettings


async def open_store(client: AsyncMongoClient[Doc], settings: IntakeSettings) -> IntakeStore:
    server = await server_of(client, settings.store_backend)
    db = client[settings.mongo_db]
    if server.backend == "ferretdb":
        return FerretIntakeStore(db, settings.write_chunk)
    return MongoIntakeStore(db, settings.write_chunk, transactions=server.transactions)
