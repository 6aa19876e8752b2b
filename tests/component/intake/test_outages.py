"""Outages in memory: the fan-out to listed customers and to those seen recently, each once,
and the resolution told once, whichever comes first and whatever is redelivered."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas.common import CustomerSnapshot
from schemas.upstream import UpstreamEvent, upstream_event_adapter
from tests import factories as f
from tests.component.intake.harness import intake

pytestmark = pytest.mark.component

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


async def test_an_outage_fans_out_to_the_customers_seen_recently_once() -> None:
    app = intake(T0, write_chunk=100)  # several chunks
    recent = [CustomerSnapshot.model_validate(f.customer(f"c-{n}")) for n in range(250)]
    await app.store.see([(c, None, T0 - timedelta(hours=2)) for c in recent])
    await app.store.see([(c, None, T0 - timedelta(hours=1)) for c in recent[:50]])
    await app.store.see([(CustomerSnapshot.model_validate(f.customer("c-old")), None,
                          T0 - timedelta(days=3))])
    declared = f.outage_declared("out", at=T0 - timedelta(minutes=30), seen_within_hours=24,
                                 severity="critical")
    await app.consume([declared])
    incidents = app.incidents()
    customers = [i["customer"]["id"] for i in incidents]
    assert len(customers) == len(set(customers)) == 250
    assert "c-old" not in customers
    assert {i["severity"] for i in incidents} == {"high"}
    outage = await app.store.outage("out")
    assert outage is not None
    assert outage.affected_customers == 250

    # The declaration again (a replay) and then the resolution: each customer, told the
    # outage was going on, is told once that it lasted 75 minutes (decision tops up).
    resolved = f.outage_resolved("out", at=T0 + timedelta(minutes=45))
    await app.consume([declared, resolved])
    await app.consume([resolved])
    again = app.incidents()
    assert len(again) == 500
    told = [i for i in again if i["outage_minutes"] is not None]
    assert sorted(i["customer"]["id"] for i in told) == sorted(customers)
    assert {i["outage_minutes"] for i in told} == {75}
    assert {i["source"] for i in told} == {"shop"}  # the resolution's source
    assert not {i["incident_id"] for i in told} & {i["incident_id"] for i in incidents}
    outage = await app.store.outage("out")
    assert outage is not None
    assert (outage.minutes, outage.duration_told) == (75, True)


async def test_a_segment_outage_of_a_tenant_reaches_that_tenant_s_customers_only() -> None:
    app = intake(T0)
    await app.consume([f.order_placed("c-a", "o-1", at=T0, promised=None, tenant="brand-a"),
                       f.order_placed("c-b", "o-2", at=T0, promised=None, tenant="brand-b")])
    await app.consume([f.outage_declared("out", at=T0, seen_within_hours=1,
                                         tenant="brand-a")])
    assert [i["customer"]["id"] for i in app.incidents()] == ["c-a"]


def parsed(body: dict[str, Any]) -> UpstreamEvent:
    return upstream_event_adapter.validate_python(body)


async def test_an_outage_with_a_list_of_customers_is_chunked_and_deduplicated() -> None:
    listed = [f"c-{n}" for n in range(2_300)] + ["c-7"]
    app = intake(T0)
    resolved = parsed(f.outage_resolved("out", at=T0 + timedelta(minutes=90)))
    declared = parsed(f.outage_declared("out", at=T0, customers=listed))
    await app.service.process([resolved])  # the resolution may come first
    first = await app.service.process([declared])
    assert len(first.new) == 2_300
    assert {i.outage_minutes for i in first.new} == {90}
    assert (await app.service.process([declared])).new == []
    assert len(app.store.incidents.kept) == 2_300
    assert app.registry.get_sample_value("amends_outage_fan_out_customers_count") == 2


async def test_an_outage_declared_and_resolved_in_one_batch_has_its_duration() -> None:
    declared, resolved = f.outage_of_75_minutes("out", ["c-1", "c-2"], at=T0)
    for batch in ([declared, resolved], [resolved, declared]):
        app = intake(T0 + timedelta(minutes=80))
        new = (await app.service.process(batch)).new
        assert sorted((i.customer.id, i.outage_minutes) for i in new) == [
            ("c-1", 75), ("c-2", 75)]


async def test_an_outage_resolved_after_its_fan_out_is_told_once_whatever_is_redelivered(
        ) -> None:
    customers = [f"c-{n}" for n in range(3)]
    declared, resolved = f.outage_of_75_minutes("out", customers, at=T0)
    app = intake(T0 + timedelta(minutes=80))
    ongoing = (await app.service.process([declared])).new
    assert {i.outage_minutes for i in ongoing} == {None}
    told = await app.service.process([resolved])
    assert sorted(i.customer.id for i in told.new) == customers
    assert {i.outage_minutes for i in told.new} == {75}
    assert told.incident_ids[0] == [i.incident_id for i in told.new]
    # Resolved again, twice in a batch, and after a crash before the outage was marked
    # told: the same incidents, none new.
    assert (await app.service.process([resolved, resolved])).new == []
    app.store.outages["out"] = replace(app.store.outages["out"], duration_told=False)
    again = await app.service.process([resolved])
    assert again.new == []
    assert sorted(again.incident_ids[0]) == sorted(told.incident_ids[0])
    assert len(app.store.incidents.kept) == 6
    assert len(app.incidents()) == 6


async def test_a_resolution_recorded_during_the_fan_out_is_told_by_the_fan_out(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Another instance records the resolution while the declaration fans out: it finds no
    incident to tell yet, so the fan-out tells them."""
    customers = ["c-0", "c-1"]
    declared, resolved = f.outage_of_75_minutes("out", customers, at=T0)
    app = intake(T0 + timedelta(minutes=80))
    service = app.service
    publish = service.publish
    raced: list[list[str]] = []

    async def racing_publish(incidents: Any) -> set[str]:
        if incidents and not raced:  # the fan-out's first chunk
            raced.append((await service.process([resolved])).incident_ids[0])
        return await publish(incidents)

    monkeypatch.setattr(service, "publish", racing_publish)
    fanned = await service.process([declared])
    assert raced == [[]]  # the other instance found nothing to tell yet
    assert sorted((i.customer.id, i.outage_minutes or 0) for i in fanned.new) == sorted(
        [(c, 0) for c in customers] + [(c, 75) for c in customers])


async def test_an_outage_s_incidents_carry_its_service_and_what_prevents_a_repeat() -> None:
    declared = f.outage_declared("out", at=T0, customers=["c-1"])
    resolved = f.outage_resolved("out", at=T0 + timedelta(minutes=20))
    resolved["data"]["prevention"] = "A standby database now takes over within seconds."
    app = intake(T0 + timedelta(minutes=30))
    [ongoing] = (await app.service.process([parsed(declared)])).new
    assert (ongoing.outage_service, ongoing.outage_prevention) == ("checkout", None)
    [told] = (await app.service.process([parsed(resolved)])).new
    assert told.outage_service == "checkout"
    assert told.outage_prevention == "A standby database now takes over within seconds."
    # Kept with the outage: a declaration arriving after the resolution still tells it.
    late = intake(T0 + timedelta(minutes=30))
    await late.service.process([parsed(resolved)])
    [both] = (await late.service.process([parsed(declared)])).new
    assert (both.outage_minutes, both.outage_prevention) == (
        20, "A standby database now takes over within seconds.")


async def test_every_outage_incident_tells_the_outage_s_size_per_tier() -> None:
    app = intake(T0, write_chunk=100)  # the counts span the chunks
    seen = [CustomerSnapshot.model_validate(f.customer(f"s-{n}", tier="gold" if n % 4 else
                                                       "platinum")) for n in range(240)]
    await app.store.see([(c, None, T0 - timedelta(hours=1)) for c in seen])
    # s-3: listed (as standard) and seen (as gold): counted once, as the list tells it
    listed = [f"c-{n}" for n in range(130)] + ["s-3"]
    await app.consume([f.outage_declared("out", at=T0, customers=listed,
                                         seen_within_hours=24)])
    incidents = app.incidents()
    assert len(incidents) == 370
    assert {i["outage_affected"] for i in incidents} == {370}
    tiers = {tuple(sorted(i["outage_tiers"].items())) for i in incidents}
    assert tiers == {(("gold", 179), ("platinum", 60), ("standard", 131))}
    # the resolved stage carries them on
    await app.consume([f.outage_resolved("out", at=T0 + timedelta(minutes=30))])
    told = [i for i in app.incidents() if i["outage_minutes"] is not None]
    assert len(told) == 370
    assert {i["outage_affected"] for i in told} == {370}
