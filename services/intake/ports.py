"""Intake's storage port: what the service keeps and reads, in contracts and domain objects.

Two adapters implement it (`adapters/ferretdb.py`, `adapters/mongodb.py`), chosen by the
`store_backend` setting or by what the server says it is; `tests/fakes/intake.py` keeps it in
memory. Every write is idempotent: a record under an id that exists already is "already
done", so a redelivered or replayed event lands on the same records.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Protocol

from schemas.common import CustomerSnapshot, Money
from schemas.incident import Incident
from services.common.outbox import Outbox
from services.intake.domain.aftermath import Fact, Followed
from services.intake.domain.detection import Capture, Check, CheckKind, OrderPayments
from services.intake.domain.outages import Declaration, Outage, Resolution


class Aftermaths(Protocol):
    """The incidents followed and what their customers did afterwards (ADR 0013): written
    once each under deterministic ids (a duplicate is "already done"); read whole at start
    and by reports, never on the hot path."""

    async def follow(self, followed: Sequence[Followed]) -> set[str]:
        """Start following these incidents (the first record of an incident is kept);
        returns the incident ids new to the store."""

    async def add(self, facts: Sequence[Fact]) -> None:
        """Keep these facts of followed incidents (each `follow`ed before), once per
        `Fact.fact_id`."""

    async def since(self, start: datetime, stop: datetime | None = None
                    ) -> list[tuple[Followed, list[Fact]]]:
        """The incidents that occurred in [start, stop) and every fact kept of each."""


class IntakeStore(Protocol):
    # The incidents raised, each under its deterministic id, and which were published.
    @property
    def incidents(self) -> Outbox[Incident]: ...

    @property
    def aftermaths(self) -> Aftermaths: ...

    async def create_indexes(self) -> None: ...

    # --- scheduled checks: pending ones, and the subjects settled ----------------------

    async def schedule(self, checks: Sequence[Check]) -> set[str]:
        """Keep the checks that are new (a replayed order keeps its first check); returns
        their ids."""

    async def close(self, kind: CheckKind, keys: Sequence[str], at: datetime,
                    steps: int = 1) -> None:
        """Settle every check of these subjects: one scheduled again later (a replay) is
        dropped when it comes due, and no pending check of them is left."""

    async def due(self, now: datetime, limit: int) -> list[Check]:
        """Up to `limit` pending checks due by `now`, earliest first."""

    async def closed(self, ids: Sequence[str]) -> set[str]:
        """Which of these subjects (`Check.closed_id`) were settled."""

    async def ran(self, ids: Sequence[str]) -> None:
        """Forget these pending checks (by `Check.check_id`)."""

    async def promises(self, orders: Sequence[str], steps: int
                       ) -> dict[str, tuple[datetime, Money | None]]:
        """The promised delivery time and order value of orders with a pending check."""

    # --- payments ----------------------------------------------------------------------

    async def record_totals(self, totals: Sequence[tuple[str, Money]]) -> None:
        """Each order's total (the first one seen is kept)."""

    async def order_totals(self, orders: Sequence[str]) -> dict[str, Money]: ...

    async def claim_first_captures(self, firsts: Sequence[tuple[str, Capture, datetime]]
                                   ) -> set[str]:
        """Claim each order for its first capture; returns the orders claimed now."""

    async def order_payments(self, orders: Sequence[str]) -> dict[str, OrderPayments]:
        """Each order's total and captures (the first, then slot by slot), and its next
        free slot."""

    async def record_captures(self, captures: Sequence[tuple[str, int, Capture, datetime]]
                              ) -> int:
        """Claim slots (order, slot, capture, captured at) after the first capture, in this
        order; stops at the first slot already taken. Returns how many were claimed."""

    # --- customers seen, for outages declared as a segment ------------------------------

    async def see(self, seen: Sequence[tuple[CustomerSnapshot, str | None, datetime]]
                  ) -> None:
        """Who was seen in which hour (the first snapshot of a customer's hour is kept)."""

    def seen_since(self, since: datetime, tenant: str | None
                   ) -> AsyncIterator[list[CustomerSnapshot]]:
        """The customers seen since the hour of `since` (of `tenant`, when given), newest
        snapshot first, a chunk at a time, each customer once."""

    # --- outages ------------------------------------------------------------------------

    async def outage_declared(self, outage_id: str, declaration: Declaration) -> Outage:
        """Record the declaration (its resolution may have come first); returns the outage."""

    async def outage_resolved(self, outage_id: str, resolution: Resolution) -> Outage:
        """Record the resolution; returns the outage."""

    async def outage_fanned_out(self, outage_id: str, affected: int, told: bool) -> None:
        """How many customers the fan-out reached, and whether it told them the duration."""

    async def duration_told(self, outage_id: str) -> None: ...

    async def outage(self, outage_id: str) -> Outage | None: ...

    def outage_incidents(self, outage_id: str) -> AsyncIterator[list[Incident]]:
        """The incidents raised for an outage, a chunk at a time (a read of what grows, for
        a rare event: an outage resolved after its customers were told of it)."""

    # --- events received over HTTP (receipts), and the claims of those in progress --------

    async def received_before(self, receipts: Sequence[str]) -> dict[str, list[str]]:
        """Of these receipts, those completed before, with the incident ids they produced."""

    async def claim_receipts(self, receipts: Sequence[str], at: datetime) -> set[str]:
        """Claim receipts for processing; returns those claimed now."""

    async def release_receipts(self, receipts: Sequence[str]) -> None: ...

    async def mark_received(self, receipts: Sequence[tuple[str, list[str]]],
                            at: datetime) -> None:
        """Complete each receipt once, with the incident ids it produced."""

    # --- customers erased (under pseudonyms, never ids) ---------------------------------

    async def erased(self) -> dict[str, datetime]:
        """Every erased pseudonym, with when it was erased."""

    async def add_erased(self, pseudonym: str, at: datetime) -> None: ...
