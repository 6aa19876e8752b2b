"""Which storage adapter a service uses: FerretDB's or MongoDB's, by setting or by what the
server says it is.

The two differ in strategy, not in what they store: FerretDB v1 (the local stack's server)
scans a whole collection on every read, has no transactions and applies updates
non-atomically under concurrency, so its adapters insert marks under unique ids instead of
updating and keep bodies as JSON text; on MongoDB the adapters use nested documents,
indexed `$in`, conditional updates and, on a replica set, transactions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pymongo import AsyncMongoClient

from services.common.adapters.mongo import Doc

Backend = Literal["ferretdb", "mongodb"]


@dataclass(frozen=True, slots=True)
class Server:
    """What the storage adapters need to know about the server."""

    backend: Backend
    transactions: bool  # a replica set or a sharded cluster: multi-document transactions


async def server_of(client: AsyncMongoClient[Doc],
                    setting: Literal["auto", "ferretdb", "mongodb"] = "auto") -> Server:
    """The server behind `client`: FerretDB reports itself in `buildInfo`
    (`ferretdbVersion`); a MongoDB server has transactions when `hello` names a replica set
    or it is a mongos. `setting` overrides the backend (not the transactions)."""
    hello = await client.admin.command("hello")
    transactions = "setName" in hello or hello.get("msg") == "isdbgrid"
    if setting != "auto":
        return Server(setting, transactions and setting == "mongodb")
    info = await client.admin.command("buildInfo")
    if "ferretdbVersion" in info or "ferretdbFeatures" in info:
        return Server("ferretdb", False)
    return Server("mongodb", transactions)
