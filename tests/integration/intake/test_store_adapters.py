"""Intake's store adapters against the real server: the FerretDB adapter and the MongoDB
adapter (both run here against FerretDB, the only server the local stack has) keep the same
contract as the in-memory fake, which runs the same tests.

What FerretDB cannot show: the MongoDB adapter's transactions (FerretDB has none, so
`transactions=False` here) and its conditional updates under real concurrency (FerretDB
applies updates non-atomically); those hold on MongoDB by its documented semantics."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from pymongo import AsyncMongoClient

from schemas.common import CustomerSnapshot, Money
from schemas.incident import Incident
from services.common.adapters.mongo import Doc
from services.common.adapters.storage import server_of
from services.intake.adapters.ferretdb import FerretIntakeStore
from services.intake.adapters.mongodb import MongoIntakeStore
from services.intake.adapters.storage import open_store
from services.intake.domain.detection import Capture, Check, CheckKind
from services.intake.domain.outages import Declaration, Resolution
from services.intake.ports import IntakeStore
from services.intake.settings import IntakeSettings
from tests import factories as f
from tests.fakes.intake import FakeIntakeStore
from tests.infra import Infra

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ADAPTERS: dict[str, Callable[[AsyncMongoClient[Doc], str], IntakeStore]] = {
    "ferretdb": lambda client, db: FerretIntakeStore(client[db], chunk=3),
    "mongodb": lambda client, db: MongoIntakeStore(client[db], chunk=3),
    "fake": lambda *_: FakeIntakeStore(chunk=3),
}


@pytest.fixture(params=list(ADAPTERS))
async def store(request: pytest.FixtureRequest, mongo: AsyncMongoClient[Doc],
                suffix: str) -> IntakeStore:
    store = ADAPTERS[request.param](mongo, f"amends_test_{suffix}_intake_store")
    await store.create_indexes()
    return store


def customer(customer_id: str) -> CustomerSnapshot:
    return CustomerSnapshot.model_validate(f.customer(customer_id))


def eur(amount: str) -> Money:
    return Money.model_validate(f.eur(amount))


def check(key: str, step: int, due: datetime, kind: CheckKind = CheckKind.delivery) -> Check:
    return Check(kind, key, step, due, T0, customer("c"), "brand-a", "shop", f"e-{key}",
                 eur("42.00"))


async def test_checks_are_kept_once_come_due_in_order_and_are_settled(
        store: IntakeStore) -> None:
    first = [check(f"o-{n}", 0, T0 + timedelta(minutes=10 - n)) for n in range(5)]
    assert await store.schedule(first) == {c.check_id for c in first}
    assert await store.schedule([*first, check("o-9", 0, T0)]) == {"delivery:o-9:0"}
    due = await store.due(T0 + timedelta(minutes=8), limit=10)
    assert [c.key for c in due] == ["o-9", "o-4", "o-3", "o-2"]
    assert due[1] == first[4]  # the whole check, as scheduled
    assert [c.key for c in await store.due(T0 + timedelta(hours=1), limit=2)] == ["o-9", "o-4"]
    assert await store.promises(["o-1", "o-nothing"], steps=2) == {
        "o-1": (T0, eur("42.00"))}
    await store.close(CheckKind.delivery, ["o-1", "o-2", "o-1"], T0, steps=2)
    assert await store.closed(["delivery:o-1:closed", "delivery:o-3:closed"]) == {
        "delivery:o-1:closed"}
    await store.ran(["delivery:o-9:0"])
    left = await store.due(T0 + timedelta(hours=1), limit=10)
    assert [c.key for c in left] == ["o-4", "o-3", "o-0"]


async def test_captures_take_slots_one_after_another(store: IntakeStore) -> None:
    await store.record_totals([("o-1", eur("42.00"))])
    await store.record_totals([("o-1", eur("99.00"))])  # a replay: the first one is kept
    assert await store.order_totals(["o-1", "o-2"]) == {"o-1": eur("42.00")}
    one = Capture("p-1", eur("42.00"))
    assert await store.claim_first_captures([("o-1", one, T0), ("o-2", one, T0)]) == {
        "o-1", "o-2"}
    assert await store.claim_first_captures([("o-1", Capture("p-x", eur("1.00")), T0)]) == set()
    two, three = Capture("p-2", eur("42.00")), Capture("p-3", eur("5.00"), "p-2", eur("50.00"))
    assert await store.record_captures([("o-1", 0, two, T0), ("o-1", 1, three, T0)]) == 2
    # Another instance that read o-1 before those slots were taken stops at the first one.
    assert await store.record_captures([("o-2", 0, two, T0), ("o-1", 1, one, T0)]) == 1
    payments = await store.order_payments(["o-1", "o-2", "o-3"])
    assert payments["o-1"].total == eur("42.00")
    assert payments["o-1"].captures == [one, two, three]
    assert payments["o-1"].next_slot == 2
    assert (payments["o-2"].captures, payments["o-2"].next_slot) == ([one, two], 1)
    assert (payments["o-3"].captures, payments["o-3"].next_slot) == ([], 0)


async def test_customers_seen_come_newest_first_once_a_chunk_at_a_time(
        store: IntakeStore) -> None:
    await store.see([(customer(f"c-{n}"), "brand-a", T0 - timedelta(hours=2))
                     for n in range(5)])
    await store.see([(customer("c-1"), "brand-a", T0 - timedelta(minutes=10)),
                     (customer("c-b"), "brand-b", T0),
                     (customer("c-old"), "brand-a", T0 - timedelta(days=2))])
    chunks = [chunk async for chunk in store.seen_since(T0 - timedelta(hours=3), "brand-a")]
    assert [len(chunk) for chunk in chunks] == [3, 2]
    ids = [c.id for chunk in chunks for c in chunk]
    assert ids[0] == "c-1"
    assert sorted(ids) == [f"c-{n}" for n in range(5)]
    every = [c.id async for chunk in store.seen_since(T0 - timedelta(hours=1), None)
             for c in chunk]
    assert sorted(every) == ["c-1", "c-b"]


async def test_an_outage_is_recorded_whichever_event_comes_first(store: IntakeStore) -> None:
    declaration = Declaration("checkout", "major", T0, "brand-a", "e-1", T0)
    resolution = Resolution(T0 + timedelta(minutes=75), "status-page", "e-2",
                            prevention="A standby now takes over.")
    assert await store.outage("out") is None
    resolved = await store.outage_resolved("out", resolution)
    assert (resolved.resolution, resolved.declaration, resolved.minutes) == (
        resolution, None, None)
    declared = await store.outage_declared("out", declaration)
    assert (declared.declaration, declared.resolution, declared.minutes) == (
        declaration, resolution, 75)
    await store.outage_fanned_out("out", 12, told=False)
    outage = await store.outage("out")
    assert outage is not None
    assert (outage.affected_customers, outage.duration_told) == (12, False)
    await store.duration_told("out")
    outage = await store.outage("out")
    assert outage is not None
    assert outage.duration_told


async def test_incidents_are_kept_once_published_once_and_found_by_outage(
        store: IntakeStore) -> None:
    incidents = [Incident.model_validate(f.incident(
        "service_outage", customer_id=f"c-{n}", fact="out", outage_id="out",
        order_id=None)) for n in range(4)]
    incidents.append(Incident.model_validate(f.incident(customer_id="c-9")))
    records = [(i.incident_id, i) for i in incidents]
    assert await store.incidents.add_new(records[:2]) == {i.incident_id for i in incidents[:2]}
    assert await store.incidents.add_new(records) == {i.incident_id for i in incidents[2:]}
    ids = [i.incident_id for i in incidents]
    assert await store.incidents.published(ids) == set()
    await store.incidents.mark_published(ids[:3])
    assert await store.incidents.published(ids) == set(ids[:3])
    found = [chunk async for chunk in store.outage_incidents("out")]
    assert [len(chunk) for chunk in found] == [3, 1]
    assert sorted((i for chunk in found for i in chunk), key=lambda i: i.incident_id) == (
        sorted(incidents[:4], key=lambda i: i.incident_id))


async def test_receipts_are_claimed_once_released_and_completed_once(
        store: IntakeStore) -> None:
    assert await store.claim_receipts(["r-1", "r-2", "r-1"], T0) == {"r-1", "r-2"}
    assert await store.claim_receipts(["r-1", "r-3"], T0) == {"r-3"}
    await store.release_receipts(["r-3"])
    assert await store.claim_receipts(["r-3"], T0) == {"r-3"}
    await store.mark_received([("r-1", ["i-1", "i-2"]), ("r-2", [])], T0)
    await store.mark_received([("r-1", ["i-other"])], T0)  # a racing retry: the first kept
    assert await store.received_before(["r-1", "r-2", "r-3"]) == {
        "r-1": ["i-1", "i-2"], "r-2": []}


async def test_erasures_are_kept_under_their_pseudonym_once(store: IntakeStore) -> None:
    assert await store.erased() == {}
    await store.add_erased("erased-abc", T0)
    await store.add_erased("erased-abc", T0 + timedelta(days=1))
    assert await store.erased() == {"erased-abc": T0}


async def test_the_adapter_is_chosen_by_the_setting_or_by_the_server(
        infra: Infra, mongo: AsyncMongoClient[Doc], suffix: str) -> None:
    settings = IntakeSettings(mongo_url=infra.mongo_url, mongo_db=f"amends_test_{suffix}")
    server = await server_of(mongo, "auto")
    auto = await open_store(mongo, settings)
    assert isinstance(auto, FerretIntakeStore if server.backend == "ferretdb"
                      else MongoIntakeStore)
    chosen = await open_store(mongo, settings.model_copy(update={"store_backend": "mongodb"}))
    assert isinstance(chosen, MongoIntakeStore)
    chosen = await open_store(mongo, settings.model_copy(update={"store_backend": "ferretdb"}))
    assert isinstance(chosen, FerretIntakeStore)
