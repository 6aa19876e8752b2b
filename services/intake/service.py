"""Intake's service layer: parse upstream events, keep the little state detection needs,
detect incidents, and record and publish each of them once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from pydantic import ValidationError

from schemas.common import INPUT_CONTEXT, CustomerSnapshot, Tier, deterministic_id
from schemas.deadletter import DeadLetterReason
from schemas.incident import Incident, IncidentDetected
from schemas.report import IncidentReport
from schemas.upstream import (
    UPSTREAM_EVENT_TYPES,
    OrderCancelledEvent,
    OrderDeliveredEvent,
    OrderPlacedEvent,
    OutageDeclaredEvent,
    OutageResolvedEvent,
    PaymentCapturedEvent,
    SupportTicketUpdatedEvent,
    UpstreamEvent,
    upstream_event_adapter,
)
from services.common.clock import Clock
from services.common.errors import TransientError, describe
from services.common.messaging import DeadLetters, Outgoing, Publisher, Record, outgoing
from services.common.outbox import record_then_publish
from services.intake.aftermath import AftermathView
from services.intake.domain import batches
from services.intake.domain import detection as rules
from services.intake.domain.detection import CheckKind, Thresholds
from services.intake.domain.outages import Declaration, Outage, Resolution
from services.intake.domain.retention_gauges import Counts, add, retention_counts
from services.intake.erasure import ErasedCustomers
from services.intake.ports import IntakeStore
from services.intake.settings import IntakeSettings
from services.intake.watermark import EventTime
from services.registry.incident_types import (
    INCIDENT_TYPES,
    Detect,
    IncidentEntry,
    thresholds_of,
    triggered_by,
)
from services.registry.remedy_kinds import RegistryError

log = logging.getLogger(__name__)

E = TypeVar("E")

_CLAIM_ROUNDS = 20  # rounds of claiming capture slots against other instances
_GAUGE_PART = 2000  # incidents counted between turns given to the event loop


class IntakeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter("amends_upstream_events_total", "Upstream events accepted",
                              ["type"], registry=registry)
        self.incidents = Counter("amends_incidents_detected_total",
                                 "Incidents detected (new ones only)", ["type", "detection"],
                                 registry=registry)
        self.checks = Counter("amends_intake_checks_run_total",
                              "Scheduled checks that came due and were run", ["kind"],
                              registry=registry)
        self.watermark_behind = Gauge(
            "amends_intake_watermark_behind_seconds",
            "How far each upstream partition's watermark (event time read) trails the clock: "
            "checks due within it wait", ["topic", "partition"], registry=registry)
        self.followed = Gauge("amends_aftermath_followed",
                              "Incidents whose aftermath is followed (in memory)",
                              registry=registry)
        self.facts = Counter("amends_aftermath_facts_total",
                             "What customers did after an incident, counted once per "
                             "incident and fact", ["kind"], registry=registry)
        # The retention gauges (ADR 0019): counts, summed over instances by the rules.
        gauged = ["type", "days"]
        self.closed = Gauge("amends_aftermath_closed",
                            "Incidents followed (the last longest window) whose window of "
                            "`days` has closed", gauged, registry=registry)
        self.reordered = Gauge("amends_aftermath_reordered",
                               "Of those, the customers who ordered again within the window",
                               gauged, registry=registry)
        self.complained_again = Gauge("amends_aftermath_complained_again",
                                      "Of those, the customers who complained again within "
                                      "the window", gauged, registry=registry)
        self.fan_out = Histogram("amends_outage_fan_out_customers",
                                 "Customers an outage was fanned out to",
                                 buckets=(1, 10, 100, 1000, 10_000, 100_000),
                                 registry=registry)


@dataclass
class Processed:
    """What a batch of events produced: per event (by position) the incident ids it led to,
    and which incidents were new."""

    incident_ids: dict[int, list[str]] = field(default_factory=lambda: defaultdict(list))
    new: list[Incident] = field(default_factory=list)


def chunks(items: Sequence[E], size: int) -> list[Sequence[E]]:
    return [items[start:start + size] for start in range(0, len(items), size)]


def _of(events: Sequence[tuple[int, UpstreamEvent]], kind: type[E]) -> list[tuple[int, E]]:
    return [(i, e) for i, e in events if isinstance(e, kind)]


def _future() -> asyncio.Future[list[str]]:
    future: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
    # A failure is raised in the request that met it; waiters that left need not read it.
    future.add_done_callback(lambda done: done.cancelled() or done.exception())
    return future


def receipt_id(event: UpstreamEvent) -> str:
    """The HTTP receipt of an event: a retry of the same event finds it."""
    return deterministic_id("received", event.source, event.id)


Handler = Callable[["IntakeService", Sequence[tuple[int, Any]], datetime],
                   Coroutine[Any, Any, list[tuple[int, Incident]]]]


def stateless(entries: Sequence[IncidentEntry], overrides: Mapping[str, Any]) -> Handler:
    """The handler of an event type whose incidents need nothing but the event: each distinct
    detector of the entries it triggers, with that entry's thresholds."""
    detectors: dict[Detect, dict[str, Any]] = {}
    for entry in entries:
        assert entry.stateless is not None
        detectors.setdefault(entry.stateless.detect, thresholds_of(entry, overrides))

    async def handle(_service: IntakeService, events: Sequence[tuple[int, Any]],
                     now: datetime) -> list[tuple[int, Incident]]:
        return [(index, incident) for index, event in events
                for detect, limits in detectors.items()
                if (incident := detect(event, now, limits)) is not None]

    return handle


def event_handlers(overrides: Mapping[str, Any]) -> dict[str, Handler]:
    """Intake's handler table, in the order a batch is handled: the stateful handlers (they
    keep state across events: checks, watermarks, captures), then every event type whose
    entries are all stateless. Outages are fanned out after the rest is published."""
    table: dict[str, Handler] = dict(STATEFUL)
    table.update(dict.fromkeys(RECORDED_ONLY, _detects_nothing))
    for event_type, entries in triggered_by(INCIDENT_TYPES).items():
        if event_type in table or event_type in AFTER_PUBLISH:
            continue
        if any(entry.stateless is None for entry in entries):
            missing = ", ".join(e.type.value for e in entries if e.stateless is None)
            raise RegistryError(f"upstream event {event_type}: no intake handler for {missing}")
        table[event_type] = stateless(entries, overrides)
    return table


@dataclass
class IntakeService:
    settings: IntakeSettings
    store: IntakeStore
    publisher: Publisher
    dead_letters: DeadLetters
    clock: Clock
    metrics: IntakeMetrics
    # How far the upstream partitions are read; without the consumer's progress (the app
    # wires it) no partition is known to be read, and no check fires.
    event_time: EventTime = field(default_factory=lambda: EventTime(timedelta(0), timedelta(0)))
    # Customers erased: their events from before the erasure are dropped (`erasure.py`).
    erased: ErasedCustomers | None = None
    # The incidents followed for their aftermath, in memory (`aftermath.py`, ADR 0013).
    aftermath: AftermathView = field(init=False, repr=False)
    # Events posted over HTTP being processed now, by receipt: a second request with the
    # same event waits for the first one's incidents instead of racing it to publish them.
    _in_flight: dict[str, asyncio.Future[list[str]]] = field(default_factory=dict,
                                                             init=False, repr=False)
    # Each upstream event type's handler (outages apart): `event_handlers`.
    handlers: dict[str, Handler] = field(init=False, repr=False)

    @property
    def chunk(self) -> int:
        """Records per write: bounded, so no single request grows without limit."""
        return min(self.settings.write_chunk, 1000)

    def __post_init__(self) -> None:
        # Built at start: a registry entry intake cannot handle fails here, not mid-stream.
        self.handlers = event_handlers(self.settings.thresholds)
        self.aftermath = AftermathView(self.settings.aftermath_windows_days)

    @property
    def thresholds(self) -> Thresholds:
        return Thresholds(tuple(self.settings.delay_bands), self.settings.delivery_grace_minutes,
                          self.settings.support_first_answer_minutes)

    # --- Kafka ---------------------------------------------------------------------------

    def parse(self, record: Record) -> UpstreamEvent | tuple[DeadLetterReason, str]:
        try:
            return upstream_event_adapter.validate_json(record.value, strict=True,
                                                        context=INPUT_CONTEXT)
        except ValidationError as exc:
            return rejection(record.value, exc)

    async def handle_upstream(self, records: Sequence[Record]) -> list[Incident]:
        """Process one batch of upstream records; returns the incidents that are new."""
        rejected: list[tuple[Record, DeadLetterReason, str]] = []
        events: list[UpstreamEvent] = []
        read: list[tuple[str, int, datetime]] = []  # event time, per partition
        for record in records:
            parsed = self.parse(record)
            if isinstance(parsed, tuple):
                if not self._erased_raw(record.value):
                    rejected.append((record, *parsed))
            else:
                events.append(parsed)
                read.append((record.topic, record.partition, parsed.time))
        await self.dead_letters.send(rejected)
        new = (await self.process(events)).new
        self.event_time.read(read)
        return new

    # --- HTTP ----------------------------------------------------------------------------

    async def accept(self, events: Sequence[UpstreamEvent]
                     ) -> list[tuple[UpstreamEvent, bool, list[str]]]:
        """Events posted over HTTP: each is processed once per (source, id); a retry gets the
        incident ids of the first time. Returns (event, was a duplicate, incident ids).

        The same event posted at once by several requests is processed by one of them: in
        this process, the others wait for its result; across instances, the one whose
        claim on the receipt is new processes it, and the others wait for its receipt
        (up to `receipt_wait_seconds`, then they process it themselves: a claimer that
        died)."""
        receipts = [receipt_id(e) for e in events]
        before = await self.store.received_before(receipts)
        fresh: dict[str, UpstreamEvent] = {}
        elsewhere: dict[str, asyncio.Future[list[str]]] = {}
        mine: dict[str, asyncio.Future[list[str]]] = {}
        for receipt, event in zip(receipts, events, strict=True):
            if receipt in before or receipt in fresh or receipt in elsewhere:
                continue
            running = self._in_flight.get(receipt)
            if running is not None:  # the same event, posted at once by another request
                elsewhere[receipt] = running
                continue
            fresh[receipt] = event
            mine[receipt] = self._in_flight[receipt] = _future()
        produced: dict[str, list[str]] = {}
        try:
            claimed = await self.store.claim_receipts(list(fresh), self.clock())
            held = [r for r in fresh if r not in claimed]
            if held:  # another instance is processing them
                for receipt, ids in (await self._wait_for_receipts(held)).items():
                    before[receipt] = produced[receipt] = ids
                    del fresh[receipt]
            todo = list(fresh.items())
            processed = await self.process([e for _, e in todo])
            done = {receipt: list(dict.fromkeys(processed.incident_ids.get(i, [])))
                    for i, (receipt, _) in enumerate(todo)}
            await self.store.mark_received(list(done.items()), self.clock())
            produced |= done
        except BaseException as exc:
            for future in mine.values():
                future.set_exception(exc)
            with contextlib.suppress(Exception):  # a retry need not wait for a dead claim
                await self.store.release_receipts([r for r in fresh if r not in produced])
            raise
        finally:
            for receipt in mine:
                self._in_flight.pop(receipt, None)
        for receipt, future in mine.items():
            future.set_result(produced[receipt])
        for receipt, future in elsewhere.items():
            before[receipt] = await future
        out: list[tuple[UpstreamEvent, bool, list[str]]] = []
        first_seen: set[str] = set()
        for receipt, event in zip(receipts, events, strict=True):
            duplicate = receipt in before or receipt in first_seen
            first_seen.add(receipt)
            out.append((event, duplicate, before.get(receipt) or produced.get(receipt, [])))
        return out

    async def _wait_for_receipts(self, receipts: Sequence[str]) -> dict[str, list[str]]:
        """The receipts another instance completes within `receipt_wait_seconds`."""
        deadline = time.monotonic() + self.settings.receipt_wait_seconds
        done: dict[str, list[str]] = {}
        while True:
            done |= await self.store.received_before([r for r in receipts if r not in done])
            if len(done) == len(receipts) or time.monotonic() >= deadline:
                return done
            await asyncio.sleep(0.1)

    async def report(self, report: IncidentReport, source: str) -> tuple[Incident, bool]:
        """An incident reported directly; returns it and whether it is new. The same report
        posted at once by several requests is published by the first one."""
        incident = rules.reported_incident(report, source, self.clock())
        running = self._in_flight.get(incident.incident_id)
        if running is not None:
            await running
            return incident, False
        future = self._in_flight[incident.incident_id] = _future()
        try:
            if report.order_id and incident.type in batches.CARRY_CAPTURED:
                # What the decision may refund for the order across all its incidents.
                payments = await self.store.order_payments([report.order_id])
                incident = batches.with_captured(incident, payments.get(report.order_id))
            new = await self.publish([incident])
        except BaseException as exc:
            future.set_exception(exc)
            raise
        finally:
            self._in_flight.pop(incident.incident_id, None)
        future.set_result([incident.incident_id])
        return incident, incident.incident_id in new

    # --- detection -----------------------------------------------------------------------

    async def process(self, events: Sequence[UpstreamEvent]) -> Processed:
        """Detect the incidents of a batch of valid events, keeping state for later ones."""
        now = self.clock()
        out = Processed()
        numbered = list(enumerate(events))
        if self.erased is not None:
            numbered = [(i, e) for i, e in numbered if not self._erased(e)]
            events = [e for _, e in numbered]
        for _, event in numbered:
            self.metrics.events.labels(event.type).inc()
        await self._see_customers(events)
        by_type: dict[str, list[tuple[int, Any]]] = defaultdict(list)
        for index, event in numbered:
            by_type[event.type].append((index, event))
        found: list[tuple[int, Incident]] = []
        for event_type, handle in self.handlers.items():
            if by_type.get(event_type):
                found += await handle(self, by_type[event_type], now)
        for index, incident in found:
            out.incident_ids[index].append(incident.incident_id)
        new = await self.publish([incident for _, incident in found])
        out.new = [i for _, i in found if i.incident_id in new]
        # Resolutions first: a declaration in the same batch (before or after its resolution)
        # then fans out with the outage's duration, as it would a batch later.
        # A resolution that comes after the fan-out fans out again, with the duration.
        for index, resolved in _of(numbered, OutageResolvedEvent):
            ids, fresh = await self._outage_resolved(resolved, now)
            out.incident_ids[index].extend(ids)
            out.new.extend(fresh)
        for index, event in _of(numbered, OutageDeclaredEvent):
            ids, fresh = await self._outage_declared(event, now)
            out.incident_ids[index].extend(ids)
            out.new.extend(fresh)
        await self._follow_up(events)
        return out

    # --- the aftermath ---------------------------------------------------------------------

    async def load_aftermath(self) -> None:
        """Follow again, from the store, the incidents whose windows are still open."""
        loaded = await self.aftermath.load(self.store.aftermaths, self.clock())
        self.metrics.followed.set(len(self.aftermath))
        log.info("following the aftermath of %d incidents", loaded)

    def prune_aftermath(self) -> None:
        self.aftermath.prune(self.clock())
        self.metrics.followed.set(len(self.aftermath))

    async def count_retention(self) -> None:
        """The retention gauges, counted again from memory (no read of the store), a part
        at a time so that consumers keep their turn on the event loop: about 10 ms per
        thousand incidents followed
        (`python -m devtools retention-sim`)."""
        now, windows = self.clock(), self.aftermath.windows
        followed = self.aftermath.followed()
        counts: dict[tuple[str, int], Counts] = {}
        for start in range(0, len(followed), _GAUGE_PART):
            add(counts, retention_counts(followed[start:start + _GAUGE_PART], windows, now))
            await asyncio.sleep(0)
        for (kind, days), found in counts.items():
            labels = (kind, str(days))
            self.metrics.closed.labels(*labels).set(found.closed)
            self.metrics.reordered.labels(*labels).set(found.reordered)
            self.metrics.complained_again.labels(*labels).set(found.complained)

    async def _follow(self, incidents: Sequence[Incident]) -> None:
        followed = self.aftermath.unfollowed(incidents)
        if followed:
            await self.store.aftermaths.follow(followed)
            self.aftermath.follow(followed)
            self.metrics.followed.set(len(self.aftermath))

    async def _follow_up(self, events: Sequence[UpstreamEvent]) -> None:
        """What these events tell of the customers' incidents followed: new facts only,
        stored in one bulk write (a duplicate id is a fact kept before)."""
        facts = self.aftermath.facts(events)
        if facts:
            await self.store.aftermaths.add(facts)
            self.aftermath.keep(facts)
            for fact in facts:
                self.metrics.facts.labels(fact.kind.value).inc()

    async def _see_customers(self, events: Sequence[UpstreamEvent]) -> None:
        await self.store.see(batches.customers_seen(events))

    async def _orders_placed(self, placed: Sequence[tuple[int, OrderPlacedEvent]],
                             _now: datetime) -> list[tuple[int, Incident]]:
        if not placed:
            return []
        checks = [c for _, e in placed if (c := rules.delivery_check(e, self.thresholds))]
        await self.store.schedule(checks)
        await self.store.record_totals([(e.data.order_id, e.data.total) for _, e in placed])
        return []

    async def _payments(self, captures: Sequence[tuple[int, PaymentCapturedEvent]],
                        now: datetime) -> list[tuple[int, Incident]]:
        if not captures:
            return []
        orders = list(dict.fromkeys(e.data.order_id for _, e in captures))
        state = await self._record_captures([e for _, e in captures], orders)
        return batches.double_charges(captures, state, now)

    async def _record_captures(self, events: Sequence[PaymentCapturedEvent],
                               orders: Sequence[str]) -> dict[str, rules.OrderPayments]:
        """Record each new capture: the first of an order by claiming the order (nothing to
        read when the claim is new), the others in their order's next slot; when another
        instance took a slot first, read the orders again and go on from there. Returns the
        orders' payments, these captures included."""
        firsts = rules.first_captures(events)
        claimed = await self.store.claim_first_captures([
            (order, rules.capture_of(e), e.data.captured_at) for order, e in firsts.items()])
        state = {order: rules.OrderPayments(captures=[rules.capture_of(firsts[order])])
                 for order in claimed}
        # An order first captured now needs its total only when captured again already.
        again = {e.data.order_id for e in events
                 if e.data.order_id in claimed and e is not firsts[e.data.order_id]}
        if again:
            for order, total in (await self.store.order_totals(list(again))).items():
                state[order].total = total
        state |= await self.store.order_payments([o for o in orders if o not in claimed])
        for _ in range(_CLAIM_ROUNDS):
            slots = batches.claim_slots(events, state)
            if not slots or await self.store.record_captures(slots) == len(slots):
                return state
            state = await self.store.order_payments(orders)
        raise TransientError("the captures of these orders kept changing while recording them")

    async def _cancellations(self, cancelled: Sequence[tuple[int, OrderCancelledEvent]],
                             now: datetime) -> list[tuple[int, Incident]]:
        if not cancelled:
            return []
        state = await self.store.order_payments(
            list(dict.fromkeys(e.data.order_id for _, e in cancelled)))
        found = []
        for index, event in cancelled:
            incident = rules.merchant_cancellation(
                event, state[event.data.order_id].captured(), now)
            if incident is not None:
                found.append((index, incident))
        await self.store.close(CheckKind.delivery, [e.data.order_id for _, e in cancelled],
                               now, len(self.settings.delay_bands))
        return found

    async def _deliveries(self, delivered: Sequence[tuple[int, OrderDeliveredEvent]],
                          now: datetime) -> list[tuple[int, Incident]]:
        if not delivered:
            return []
        unknown = [e.data.order_id for _, e in delivered
                   if e.data.promised_delivery_at is None or e.data.total is None]
        steps = len(self.settings.delay_bands)
        promises = await self.store.promises(unknown, steps) if unknown else {}
        found = []
        for index, event in delivered:
            promised, value = promises.get(event.data.order_id, (None, None))
            incident = rules.late_delivery(event, promised, now, self.thresholds, value)
            if incident is not None:
                found.append((index, incident))
        await self.store.close(CheckKind.delivery, [e.data.order_id for _, e in delivered],
                               now, steps)
        return found

    async def _tickets(self, tickets: Sequence[tuple[int, SupportTicketUpdatedEvent]],
                       now: datetime) -> list[tuple[int, Incident]]:
        if not tickets:
            return []
        found = []
        waiting = []
        answered = []
        for index, event in tickets:
            verdict = rules.support_ticket(event, now, self.thresholds)
            if verdict.incident is not None:
                found.append((index, verdict.incident))
            if verdict.check is not None:
                waiting.append(verdict.check)
            if verdict.answered or verdict.incident is not None:
                answered.append(event.data.ticket_id)
        await self.store.schedule(waiting)
        await self.store.close(CheckKind.support, answered, now)
        return found

    # --- outages -------------------------------------------------------------------------

    async def _outage_declared(self, event: OutageDeclaredEvent, now: datetime
                               ) -> tuple[list[str], list[Incident]]:
        data = event.data
        outage = await self.store.outage_declared(data.outage_id, Declaration(
            service=data.service, severity=data.severity.value, started_at=data.started_at,
            tenant=event.tenant, event_id=event.id, declared_at=now))
        minutes = outage.minutes
        resolved_prevention = outage.resolution.prevention if outage.resolution else None
        ids: list[str] = []
        new: list[Incident] = []
        # Every incident tells the outage's size, so intake counts its customers per tier
        # first (a second read of the segment), then fans out.
        tiers: dict[Tier, int] = {}
        counted: set[str] = set()
        async for part in self._affected(event, now, counting=True):
            counted.update(c.id for c in part)
            for tier, n in rules.tier_counts(part).items():
                tiers[tier] = tiers.get(tier, 0) + n
        seen = 0
        async for part in self._affected(event, now, counting=False, only=counted):
            seen += len(part)
            incidents = rules.outage_incidents(event, part, now, minutes, tiers,
                                               prevention=resolved_prevention)
            created = await self.publish(incidents)
            ids.extend(i.incident_id for i in incidents)
            new.extend(i for i in incidents if i.incident_id in created)
        await self.store.outage_fanned_out(data.outage_id, seen, minutes is not None)
        self.metrics.fan_out.observe(seen)
        log.info("outage %s: %d affected customers, %d new incidents", data.outage_id,
                 seen, len(new))
        if minutes is None:
            # Resolved elsewhere (another partition, another instance) during the fan-out:
            # what that resolution did not see yet is told here.
            after = await self.store.outage(data.outage_id)
            if after is not None and after.minutes is not None:
                told, fresh = await self._tell_duration(after, now)
                ids.extend(told)
                new.extend(fresh)
        return ids, new

    async def _affected(self, event: OutageDeclaredEvent, now: datetime, *, counting: bool,
                        only: set[str] | None = None) -> AsyncIterator[list[CustomerSnapshot]]:
        """The outage's customers, a chunk at a time, each once, without the erased ones
        (counted as dropped only once: by the pass that fans out) and, given `only`, only
        those (the ones counted: a customer first seen between the passes is not told)."""
        data, seen = event.data, set[str]()

        def fresh(customers: Sequence[CustomerSnapshot]) -> list[CustomerSnapshot]:
            unique = {c.id: c for c in customers}  # a customer listed twice counts once
            out = [c for c in unique.values() if c.id not in seen]
            if self.erased is not None:
                ids = [c.id for c in out]
                kept = ([not self.erased.covers(c, event.time) for c in ids] if counting
                        else self.erased.keep(ids, event.time, "outage_fan_out"))
                out = [c for c, keep in zip(out, kept, strict=True) if keep]
            seen.update(c.id for c in out)
            return out if only is None else [c for c in out if c.id in only]

        if data.affected_customers:
            for part in chunks(data.affected_customers, self.chunk):
                yield fresh(part)
        if data.segment is not None:
            since = now - timedelta(hours=data.segment.seen_within_hours)
            async for part in self.store.seen_since(since, event.tenant):
                yield fresh(part)

    async def _outage_resolved(self, event: OutageResolvedEvent, now: datetime
                               ) -> tuple[list[str], list[Incident]]:
        """Record the resolution; when its customers were told the outage was going on, tell
        each of them its duration (an incident of the resolved stage: decision tops up)."""
        data = event.data
        outage = await self.store.outage_resolved(data.outage_id, Resolution(
            resolved_at=data.resolved_at, source=event.source, event_id=event.id,
            prevention=data.prevention))
        if outage.minutes is None:  # declared later: the declaration fills the duration in
            return [], []
        log.info("outage %s resolved after %d minutes", data.outage_id, outage.minutes)
        if outage.duration_told:  # a redelivery, or a fan-out that knew the duration
            return [], []
        return await self._tell_duration(outage, now)

    async def _tell_duration(self, outage: Outage, now: datetime
                             ) -> tuple[list[str], list[Incident]]:
        """Fan out the resolved stage to the customers whose incidents of the outage had no
        duration, a chunk at a time, publishing each chunk in bulk; idempotent (the stage's
        ids are deterministic)."""
        minutes, resolution = outage.minutes, outage.resolution
        if minutes is None or resolution is None:
            return [], []
        ids: list[str] = []
        new: list[Incident] = []
        async for part in self.store.outage_incidents(outage.outage_id):
            incidents = rules.outage_resolved_incidents(
                outage.outage_id, part, minutes, now, source=resolution.source,
                source_event_id=resolution.event_id, prevention=resolution.prevention)
            created = await self.publish(incidents)
            ids.extend(i.incident_id for i in incidents)
            new.extend(i for i in incidents if i.incident_id in created)
        await self.store.duration_told(outage.outage_id)
        log.info("outage %s: %d customers told it lasted %d minutes", outage.outage_id,
                 len(ids), minutes)
        return ids, new

    # --- scheduled checks ----------------------------------------------------------------

    def _topic_of(self, kind: CheckKind) -> str:
        """Where the events that settle a check arrive."""
        return (self.settings.orders_topic if kind is CheckKind.delivery
                else self.settings.support_topic)

    async def run_due_checks(self) -> int:
        """Run the checks that nothing settled and that are due on event time: intake has read
        their subject's partition past their due time (`watermark.py`). Returns how many
        ran."""
        ran = 0
        limit = self.settings.check_sweep_limit
        marks = await self.event_time.watermarks(
            [self.settings.orders_topic, self.settings.support_topic], self.clock())
        started = self.clock()
        for (topic, partition), mark in marks.marks.items():
            self.metrics.watermark_behind.labels(topic, str(partition)).set(
                (started - mark).total_seconds())
        horizon = marks.latest
        if horizon is None:
            return 0
        while True:
            now = self.clock()
            found = await self.store.due(horizon, limit)
            due = [c for c in found
                   if (at := marks.of(self._topic_of(c.kind), c.customer.id)) is not None
                   and c.due_at <= at]
            if not due:
                return ran
            closed = await self.store.closed([c.closed_id for c in due])
            sweep = batches.run_due(
                due, closed, now, self.thresholds,
                lambda check: marks.of(self._topic_of(check.kind), check.customer.id))
            for check in sweep.fired:
                self.metrics.checks.labels(check.kind.value).inc()
            await self.publish(sweep.incidents)
            await self.store.schedule(sweep.following)
            await self.store.ran(sweep.done)
            ran += len(sweep.done)
            if len(found) < limit or not sweep.done:
                return ran

    # --- erased customers ---------------------------------------------------------------

    def _erased(self, event: UpstreamEvent) -> bool:
        customer: CustomerSnapshot | None = getattr(event.data, "customer", None)
        if customer is None or self.erased is None:
            return False
        return not self.erased.keep([customer.id], event.time, event.type)[0]

    def _erased_raw(self, raw: bytes) -> bool:
        """Whether a message that is not a valid event is about an erased customer from
        before the erasure: then it is dropped, not dead-lettered with their data."""
        if self.erased is None:
            return False
        try:
            body = json.loads(raw)
            customer_id = body["data"]["customer"]["id"]
            at = datetime.fromisoformat(body["time"])
        except (ValueError, KeyError, TypeError):
            return False
        if not isinstance(customer_id, str) or at.tzinfo is None:
            return False
        return not self.erased.keep([customer_id], at, "invalid")[0]

    # --- recording and publishing --------------------------------------------------------

    async def publish(self, incidents: Sequence[Incident]) -> set[str]:
        """Record each incident once and publish it once, in chunks; returns the new ids."""
        now = self.clock()
        new: set[str] = set()
        for part in chunks(incidents, self.chunk):
            items: list[tuple[str, Incident, Outgoing]] = []
            for incident in part:
                event = IncidentDetected(id=incident.incident_id, source="amends/intake",
                                         time=now, subject=incident.customer.id,
                                         tenant=incident.tenant, data=incident)
                items.append((incident.incident_id, incident,
                              outgoing(self.settings.incidents_topic, event)))
            new |= await record_then_publish(self.store.incidents, self.publisher, items)
        await self._follow(incidents)
        counted: set[str] = set()
        for incident in incidents:
            if incident.incident_id in new and incident.incident_id not in counted:
                counted.add(incident.incident_id)
                self.metrics.incidents.labels(incident.type.value,
                                              incident.detection.value).inc()
        return new


def rejection(raw: bytes, exc: ValidationError) -> tuple[DeadLetterReason, str]:
    """Why a message is not an upstream event, naming each bad field."""
    first = exc.errors()[0]
    if first["type"] == "json_invalid":
        return DeadLetterReason.undecodable, f"not a JSON CloudEvent: {first['msg']}"
    if first["type"] in {"union_tag_invalid", "union_tag_not_found"}:
        return DeadLetterReason.unknown_type, unknown_type(raw)
    return DeadLetterReason.invalid, describe(exc)


def unknown_type(raw: bytes | Any) -> str:
    try:
        body = json.loads(raw) if isinstance(raw, bytes | str) else raw
        event_type = body.get("type")
    except (ValueError, AttributeError):
        event_type = None
    return (f"type: unknown event type {event_type!r}; expected one of "
            f"{', '.join(UPSTREAM_EVENT_TYPES)}")


# The event types whose detection keeps state, each with its own handler; the registry's
# entries say which incident types they make. Every other trigger is stateless.
STATEFUL: dict[str, Handler] = {
    "order.placed": IntakeService._orders_placed,
    "payment.captured": IntakeService._payments,
    "order.cancelled": IntakeService._cancellations,
    "order.delivered": IntakeService._deliveries,
    "support.ticket_updated": IntakeService._tickets,
}
# Events that make no incident: accepted (deduplicated like any other) and left on the
# upstream topic, where the learning loop reads them.
RECORDED_ONLY = ("remedy.rated", "customer.churned")


async def _detects_nothing(_service: IntakeService, _events: Sequence[tuple[int, Any]],
                           _now: datetime) -> list[tuple[int, Incident]]:
    return []


# Handled after the batch's other incidents are published (`process`): fan-outs.
AFTER_PUBLISH = ("outage.resolved", "outage.declared")
