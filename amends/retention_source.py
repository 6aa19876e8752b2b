"""Where the retention report's rows come from (ADR 0013, 0019): the incidents' aftermath
from intake's store joined with their decisions from decision's store. A read of what grows,
for people (the report, the console's page), never on a service's hot path."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from amends import aftermath_report as report
from schemas.decision import Decision, decision_id
from services.common.adapters.mongo import Client, make_client
from services.common.adapters.storage import server_of
from services.decision.adapters.storage import open_storage
from services.intake.adapters.ferretdb import FerretAftermaths
from services.intake.adapters.mongodb import MongoAftermaths
from services.intake.domain.aftermath import Aftermath, aftermath
from services.intake.ports import Aftermaths

CHUNK = 1000


async def aftermaths(client: Client, db: str, since: datetime, windows: Sequence[int]
                     ) -> list[Aftermath]:
    server = await server_of(client, "auto")
    store: Aftermaths = (FerretAftermaths(client[db]) if server.backend == "ferretdb"
                         else MongoAftermaths(client[db]))
    return [aftermath(followed, facts, windows)
            for followed, facts in await store.since(since)]


async def decisions(client: Client, db: str, incident_ids: Sequence[str],
                    advance: Callable[[int], object] = lambda _: None
                    ) -> dict[str, Decision]:
    """The decisions on these incidents, by incident id, read in chunks (`advance` is told
    how many incidents each chunk covered)."""
    store, _, _ = await open_storage(client, db)
    found: dict[str, Decision] = {}
    for start in range(0, len(incident_ids), CHUNK):
        part = incident_ids[start:start + CHUNK]
        for decision in (await store.find([decision_id(i) for i in part])).values():
            found[decision.incident.incident_id] = decision
        advance(len(part))
    return found


async def load(mongo_url: str, intake_db: str, decision_db: str, since: datetime,
               windows: Sequence[int], *,
               advance: Callable[[int], object] = lambda _: None) -> list[report.Row]:
    """The report's rows of the incidents since `since`."""
    client = make_client(mongo_url)
    try:
        found = await aftermaths(client, intake_db, since, windows)
        joined = await decisions(client, decision_db,
                                 [a.followed.incident_id for a in found], advance)
    finally:
        await client.close()
    return report.rows(found, joined)
