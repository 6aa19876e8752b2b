"""A hand-written, in-memory fake of intake's store (`services/intake/ports.py`), with the
adapters' contract: a record under an id that exists already is "already done", the first
record of a key is kept, captures take slots one after another."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import datetime

from schemas.common import CustomerSnapshot, Money
from schemas.incident import Incident
from services.intake.domain.aftermath import Fact, Followed
from services.intake.domain.detection import (
    Capture,
    Check,
    CheckKind,
    OrderPayments,
    check_id,
    closed_id,
)
from services.intake.domain.outages import Declaration, Outage, Resolution


def _hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


class FakeIncidents:
    """The incident outbox: each incident once under its id; `failing` makes every call
    raise it (a database that refuses writes)."""

    def __init__(self) -> None:
        self.kept: dict[str, Incident] = {}
        self.sent: set[str] = set()
        self.failing: BaseException | None = None

    async def add_new(self, records: Sequence[tuple[str, Incident]]) -> set[str]:
        if self.failing is not None:
            raise self.failing
        new = {key for key, _ in records if key not in self.kept}
        for key, incident in records:
            self.kept.setdefault(key, incident)
        return new

    async def published(self, ids: Sequence[str]) -> set[str]:
        return set(ids) & self.sent

    async def mark_published(self, ids: Sequence[str]) -> None:
        self.sent |= set(ids)


class FakeAftermaths:
    """Followed incidents and their facts, each kept once under its id (the first wins)."""

    def __init__(self) -> None:
        self.followed: dict[str, Followed] = {}
        self.facts: dict[str, Fact] = {}

    async def follow(self, followed: Sequence[Followed]) -> set[str]:
        new = {f.incident_id for f in followed if f.incident_id not in self.followed}
        for one in followed:
            self.followed.setdefault(one.incident_id, one)
        return new

    async def add(self, facts: Sequence[Fact]) -> None:
        for fact in facts:
            if fact.incident_id in self.followed:
                self.facts.setdefault(fact.fact_id, fact)

    async def since(self, start: datetime, stop: datetime | None = None
                    ) -> list[tuple[Followed, list[Fact]]]:
        return [(f, [x for x in self.facts.values() if x.incident_id == f.incident_id])
                for f in self.followed.values()
                if start <= f.occurred_at and (stop is None or f.occurred_at < stop)]


class FakeIntakeStore:
    def __init__(self, chunk: int = 1000) -> None:
        self.chunk = chunk
        self.incidents = FakeIncidents()
        self.aftermaths = FakeAftermaths()
        self.checks: dict[str, Check] = {}
        self.settled: dict[str, datetime] = {}
        self.totals: dict[str, Money] = {}
        self.payments: dict[str, list[Capture]] = {}  # per order, slot by slot
        self.seen: dict[tuple[str, datetime], tuple[CustomerSnapshot, str | None]] = {}
        self.outages: dict[str, Outage] = {}
        self.receipts: dict[str, list[str]] = {}
        self.claims: dict[str, datetime] = {}  # receipt -> claimed at
        self.received_at: dict[str, datetime] = {}
        self.erasures: dict[str, datetime] = {}

    async def create_indexes(self) -> None:
        return None

    # --- scheduled checks ----------------------------------------------------------------

    async def schedule(self, checks: Sequence[Check]) -> set[str]:
        new = {c.check_id for c in checks if c.check_id not in self.checks}
        for check in checks:
            self.checks.setdefault(check.check_id, check)
        return new

    async def close(self, kind: CheckKind, keys: Sequence[str], at: datetime,
                    steps: int = 1) -> None:
        for key in keys:
            self.settled.setdefault(closed_id(kind, key), at)
            for step in range(steps):
                self.checks.pop(check_id(kind, key, step), None)

    async def due(self, now: datetime, limit: int) -> list[Check]:
        due = sorted((c for c in self.checks.values() if c.due_at <= now),
                     key=lambda c: c.due_at)
        return due[:limit]

    async def closed(self, ids: Sequence[str]) -> set[str]:
        return set(ids) & set(self.settled)

    async def ran(self, ids: Sequence[str]) -> None:
        for key in ids:
            self.checks.pop(key, None)

    async def promises(self, orders: Sequence[str], steps: int
                       ) -> dict[str, tuple[datetime, Money | None]]:
        found: dict[str, tuple[datetime, Money | None]] = {}
        for order in orders:
            for step in range(steps):
                check = self.checks.get(check_id(CheckKind.delivery, order, step))
                if check is not None:
                    found[order] = (check.origin, check.order_value)
        return found

    # --- payments ------------------------------------------------------------------------

    async def record_totals(self, totals: Sequence[tuple[str, Money]]) -> None:
        for order, total in totals:
            self.totals.setdefault(order, total)

    async def order_totals(self, orders: Sequence[str]) -> dict[str, Money]:
        return {o: self.totals[o] for o in orders if o in self.totals}

    async def claim_first_captures(self, firsts: Sequence[tuple[str, Capture, datetime]]
                                   ) -> set[str]:
        claimed = set()
        for order, capture, _ in firsts:
            if order not in self.payments:
                self.payments[order] = [capture]
                claimed.add(order)
        return claimed

    async def order_payments(self, orders: Sequence[str]) -> dict[str, OrderPayments]:
        return {o: OrderPayments(total=self.totals.get(o),
                                 captures=list(self.payments.get(o, [])),
                                 next_slot=max(len(self.payments.get(o, [])) - 1, 0))
                for o in orders}

    async def record_captures(self, captures: Sequence[tuple[str, int, Capture, datetime]]
                              ) -> int:
        for claimed, (order, slot, capture, _) in enumerate(captures):
            taken = self.payments.setdefault(order, [])
            if slot != len(taken) - 1:  # the first capture is before slot 0
                return claimed
            taken.append(capture)
        return len(captures)

    # --- customers seen ------------------------------------------------------------------

    async def see(self, seen: Sequence[tuple[CustomerSnapshot, str | None, datetime]]
                  ) -> None:
        for customer, tenant, at in seen:
            self.seen.setdefault((customer.id, _hour(at)), (customer, tenant))

    async def seen_since(self, since: datetime, tenant: str | None
                         ) -> AsyncIterator[list[CustomerSnapshot]]:
        newest_first = sorted(self.seen.items(), key=lambda item: item[0][1], reverse=True)
        given: set[str] = set()
        chunk: list[CustomerSnapshot] = []
        for (customer_id, hour), (customer, of) in newest_first:
            if hour < _hour(since) or customer_id in given or (
                    tenant is not None and of != tenant):
                continue
            given.add(customer_id)
            chunk.append(customer)
            if len(chunk) >= self.chunk:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    # --- outages -------------------------------------------------------------------------

    async def outage_declared(self, outage_id: str, declaration: Declaration) -> Outage:
        outage = replace(self.outages.get(outage_id, Outage(outage_id)),
                         declaration=declaration)
        self.outages[outage_id] = outage
        return outage

    async def outage_resolved(self, outage_id: str, resolution: Resolution) -> Outage:
        outage = replace(self.outages.get(outage_id, Outage(outage_id)), resolution=resolution)
        self.outages[outage_id] = outage
        return outage

    async def outage_fanned_out(self, outage_id: str, affected: int, told: bool) -> None:
        outage = self.outages[outage_id]
        self.outages[outage_id] = replace(outage, affected_customers=affected,
                                          duration_told=outage.duration_told or told)

    async def duration_told(self, outage_id: str) -> None:
        self.outages[outage_id] = replace(self.outages[outage_id], duration_told=True)

    async def outage(self, outage_id: str) -> Outage | None:
        return self.outages.get(outage_id)

    async def outage_incidents(self, outage_id: str) -> AsyncIterator[list[Incident]]:
        found = [i for i in self.incidents.kept.values() if i.outage_id == outage_id]
        for start in range(0, len(found), self.chunk):
            yield found[start:start + self.chunk]

    # --- receipts, erased customers ------------------------------------------------------

    async def received_before(self, receipts: Sequence[str]) -> dict[str, list[str]]:
        return {r: list(self.receipts[r]) for r in receipts if r in self.receipts}

    async def claim_receipts(self, receipts: Sequence[str], at: datetime) -> set[str]:
        claimed = set(receipts) - set(self.claims)
        self.claims |= dict.fromkeys(claimed, at)
        return claimed

    async def release_receipts(self, receipts: Sequence[str]) -> None:
        for receipt in receipts:
            self.claims.pop(receipt, None)

    async def mark_received(self, receipts: Sequence[tuple[str, list[str]]],
                            at: datetime) -> None:
        for receipt, ids in receipts:
            self.receipts.setdefault(receipt, list(ids))
            self.received_at.setdefault(receipt, at)

    async def erased(self) -> dict[str, datetime]:
        return dict(self.erasures)

    async def add_erased(self, pseudonym: str, at: datetime) -> None:
        self.erasures.setdefault(pseudonym, at)
