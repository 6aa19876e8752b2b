"""Customers' histories kept in memory, for the FerretDB adapter: there every read scans the
whole `decisions` collection (ADR 0003), so the hot path must not read it. The view is loaded
by one scan at start, then kept up to date by what this process records, by every decision it
reads, and by the decisions other instances publish (`follower.py`). It answers exactly what
`mongo.history_query` would: the entries are built from the same stored fields
(`fields_of` -> `past_incident`), times cut to the store's milliseconds."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from schemas.decision import Decision
from services.common.adapters.mongo import Doc
from services.decision.adapters.mongo import fields_of, past_incident
from services.decision.domain.history import CustomerHistory, PastIncident

# Entries of no order and no outage only count within the window; once `since` has passed
# them by this much they are dropped (the margin covers a clock that steps back a little).
_PRUNE_MARGIN = timedelta(days=1)
_PRUNE_EVERY = timedelta(hours=1)


def _stored(decision: Decision) -> Doc:
    """The history fields of a decision as the store keeps them (BSON keeps milliseconds)."""
    doc = fields_of(decision)
    at: datetime = doc["decided_at"]
    doc["decided_at"] = at.replace(microsecond=at.microsecond // 1000 * 1000)
    return doc


@dataclass
class HistoryView:
    """Each customer's decided incidents by decision id, at the newest revision seen."""

    loaded: bool = False
    _customers: dict[str, dict[str, PastIncident]] = field(default_factory=dict)
    _of: dict[str, tuple[str, int]] = field(default_factory=dict)  # id -> customer, revision
    _pruned_until: datetime | None = None

    def __len__(self) -> int:
        return len(self._of)

    def load(self, docs: Iterable[Doc]) -> None:
        """Take the stored decisions' history fields (with `revision`); newer revisions
        learnt before the load stay."""
        for doc in docs:
            self._put(doc)
        self.loaded = True

    def apply(self, decisions: Iterable[Decision]) -> None:
        """Take decisions recorded or read: each replaces what is known of it unless the
        view has a newer revision."""
        for decision in decisions:
            known = self._of.get(decision.decision_id)
            if known is None or known[1] < decision.revision:
                self._put(_stored(decision))

    def has(self, decision_id: str) -> bool:
        return decision_id in self._of

    def knows(self, decision_id: str, revision: int) -> bool:
        """Whether the view has this revision of the decision or a newer one."""
        known = self._of.get(decision_id)
        return known is not None and known[1] >= revision

    def _put(self, doc: Doc) -> None:
        did, customer, revision = doc["_id"], doc["customer_id"], doc.get("revision", 0)
        known = self._of.get(did)
        if known is not None:
            if known[1] > revision:
                return
            if known[0] != customer:  # erased since: the pseudonym owns it now
                self._customers.get(known[0], {}).pop(did, None)
        self._of[did] = (customer, revision)
        self._customers.setdefault(customer, {})[did] = past_incident(doc)

    def histories(self, customers: Sequence[str], since: datetime, orders: Sequence[str],
                  outages: Sequence[str]) -> dict[str, CustomerHistory]:
        """What `history_query` selects: each customer's incidents decided after `since`,
        and those of `orders` and `outages` however old, oldest first."""
        self._prune(since)
        order_set: set[str | None] = set(orders)
        outage_set: set[str | None] = set(outages)
        found: dict[str, CustomerHistory] = {}
        for customer in customers:
            entries = self._customers.get(customer)
            if not entries:
                found[customer] = CustomerHistory()
                continue
            chosen = [p for p in entries.values()
                      if p.decided_at > since or p.order_id in order_set
                      or p.outage_id in outage_set]
            chosen.sort(key=lambda p: p.decided_at)
            found[customer] = CustomerHistory(tuple(chosen))
        return found

    def rename(self, customer: str, pseudonym: str) -> int:
        """An erased customer's entries belong to their pseudonym, as the store's do now.
        Returns how many moved."""
        entries = self._customers.pop(customer, {})
        if entries:
            self._customers.setdefault(pseudonym, {}).update(entries)
            for did in entries:
                self._of[did] = (pseudonym, self._of[did][1])
        return len(entries)

    def _prune(self, since: datetime) -> None:
        """Drop entries no history can select any more: those of no order and no outage
        decided well before the window. Entries of an order or an outage stay (a refund
        ceiling and a top-up look at every stage of a failure, however old)."""
        if self._pruned_until is not None and since - self._pruned_until < _PRUNE_EVERY:
            return
        cut = since - _PRUNE_MARGIN
        for customer in list(self._customers):
            entries = self._customers[customer]
            old = [did for did, p in entries.items()
                   if p.order_id is None and p.outage_id is None and p.decided_at <= cut]
            for did in old:
                del entries[did]
                del self._of[did]
            if not entries:
                del self._customers[customer]
        self._pruned_until = since
