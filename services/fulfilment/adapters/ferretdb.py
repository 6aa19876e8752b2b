"""Fulfilment's stores on FerretDB v1 (the local stack's server), which scans a whole
collection on every read, has no transactions and applies updates one document at a time:
bodies are kept as JSON text, the outboxes' "published" are marks inserted under unique ids
(never updates), and the hot path reads only what a redelivery needs.

The refunds and messages logs keep which of their effects are unfinished in memory
(`TrackedEffectLog`, `unfinished_view.UnfinishedView`): the sweep that runs every
`sweep_seconds` asks memory and reads only the effects it knows are due (nothing when none
are). The whole log is scanned for unfinished effects at start and every
`full_sweep_seconds` (`recall`), which finds those a process that died left behind."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import datetime

from pymongo.asynchronous.database import AsyncDatabase

from services.common.adapters.mongo import Doc
from services.common.adapters.outbox import MongoOutbox
from services.fulfilment.adapters.mongo import assemble, outcome_encoder, task_document
from services.fulfilment.adapters.unfinished_view import UnfinishedView
from services.fulfilment.domain.effects import UNFINISHED, Change, Effect
from services.fulfilment.ports import EffectLog, KeptOutcome, KeptTask, Stores


class TrackedEffectLog:
    """An effect log (`inner`) whose unfinished effects are also kept in memory: every write
    and read through it updates the view, and `unfinished` reads only what the view says is
    due. Nothing is answered from memory alone: the effects the sweep acts on are read."""

    def __init__(self, inner: EffectLog) -> None:
        self.inner = inner
        self.view = UnfinishedView()

    async def add_new(self, effects: Sequence[Effect]) -> set[str]:
        new = await self.inner.add_new(effects)
        self.view.note(e for e in effects if e.key in new)
        return new

    async def get(self, keys: Sequence[str]) -> list[Effect]:
        found = await self.inner.get(keys)
        # Another process's claim read here (a redelivery) is then watched too: if that
        # process died, the sweep takes it over once its lease runs out.
        self.view.note(found)
        return found

    async def settle(self, results: Sequence[tuple[Effect, Change]]) -> int:
        held = await self.inner.settle(results)
        if held == len(results):
            self.view.note(replace(effect.changed(change), attempts=effect.attempts + 1)
                           for effect, change in results)
        # Otherwise which were taken over is not known here: those the view holds stay due
        # and are read again (`remote.perform` reads them back at once).
        return held

    async def renew(self, keys: Sequence[str], claim: str | None, now: datetime) -> None:
        await self.inner.renew(keys, claim, now)
        self.view.renewed(keys, claim, now)

    async def wake_paused(self, remote: str, now: datetime) -> None:
        await self.inner.wake_paused(remote, now)
        # Effects another process paused for it are woken in the store, and reach this
        # process's view at the next full sweep (or their own time comes first).
        self.view.woken(remote, now)

    async def unfinished(self, limit: int,
                         ready: Callable[[Effect], bool] | None = None) -> list[Effect]:
        if not self.view.loaded:  # a caller that did not `recall` at start
            await self.recall()
        keys = self.view.due(ready, limit)
        if not keys:
            return []
        found = await self.inner.get(keys)
        self.view.note(found)
        self.view.forget(set(keys) - {e.key for e in found})
        unfinished = [e for e in found
                      if e.status in UNFINISHED and (ready is None or ready(e))]
        return unfinished[:limit] if limit else unfinished

    async def recall(self) -> None:
        started = self.view.scan_started()
        self.view.load(await self.inner.unfinished(0), started)

    async def take_over(self, effect: Effect, change: Change) -> bool:
        taken = await self.inner.take_over(effect, change)
        if taken:
            now = effect.changed(change)
            self.view.note([replace(now, gateway_id=None) if "redriven_by" in change
                            else now])
        # Lost: someone changed it since it was read; the view's entry stays due and the
        # next sweep reads what it is now.
        return taken

    async def failed(self, keys: Sequence[str]) -> list[Effect]:
        return await self.inner.failed(keys)

    async def of_customer(self, customer_id: str) -> list[Effect]:
        return await self.inner.of_customer(customer_id)


def stores(db: AsyncDatabase[Doc]) -> tuple[Stores, Callable[[], Awaitable[None]]]:
    """Fulfilment's stores in `db`, and what creates their indexes."""
    outcomes: MongoOutbox[KeptOutcome] = MongoOutbox(db["outcomes"], outcome_encoder("text"))
    tasks: MongoOutbox[KeptTask] = MongoOutbox(db["tasks"], task_document)
    built, create_indexes = assemble(db, "text", outcomes, tasks,
                                     (outcomes.create_indexes, tasks.create_indexes))
    return replace(built, refunds=TrackedEffectLog(built.refunds),
                   messages=TrackedEffectLog(built.messages)), create_indexes
