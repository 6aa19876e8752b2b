"""Event time and erasure in memory: a scheduled check fires only once intake has read its
subject's partition past the check's due time; an erased customer's earlier events are
dropped (the fan-out skips them) and their later ones kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from schemas.erasure import ErasureRequest
from schemas.upstream import upstream_event_adapter
from services.common.erasure import Pseudonyms
from services.intake.erasure import ErasedCustomers
from tests import factories as f
from tests.component.intake.harness import intake

pytestmark = pytest.mark.component

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ERASED_AT = T0 + timedelta(hours=1)


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


async def test_a_check_waits_while_intake_lags_behind_an_on_time_delivery() -> None:
    app = intake(T0)
    await app.consume([f.order_placed("c", "o-on-time", at=T0, promised=T0 + minutes(60)),
                       f.order_placed("c", "o-never", at=T0, promised=T0 + minutes(60))])
    # The batch that brings the on-time delivery is still queued behind consumer lag.
    app.lag("orders", "c")
    app.clock.now = T0 + minutes(300)
    assert await app.service.run_due_checks() == 0
    assert app.incidents() == []
    # Operators see why: the partition's watermark trails the clock by hours.
    [behind] = [m.samples for m in app.service.metrics.watermark_behind.collect()]
    assert max(sample.value for sample in behind) > 4 * 3600

    # Intake catches up: the delivery settles its check; only the order still on its way is
    # apologised for, for the delay known where intake has read to.
    await app.consume([f.delivered("c", "o-on-time", at=T0 + minutes(55),
                                   promised=T0 + minutes(60))])
    await app.consume([f.order_placed(f"c-{n}", f"o-later-{n}", at=T0 + minutes(56),
                                      promised=None) for n in range(20)])
    await app.consume([f.order_placed("c", "o-last", at=T0 + minutes(300), promised=None)])
    app.progress.lagging.clear()
    assert await app.service.run_due_checks() == 1
    [incident] = app.incidents()
    assert (incident["order_id"], incident["delay_band"], incident["delivered_at"]) == (
        "o-never", "late_2h", None)


async def test_an_idle_stream_fires_its_checks_after_the_fallback_and_no_sooner() -> None:
    app = intake(T0, idle_fallback_seconds=300)
    await app.consume([f.order_placed("c", "o-1", at=T0, promised=T0 + minutes(30))])
    due = T0 + minutes(30 + 11)  # the promise and the grace period (10 minutes)
    app.clock.now = due + minutes(4)  # within the five minutes' fallback: not yet
    assert await app.service.run_due_checks() == 0
    app.clock.now = due + minutes(5)
    assert await app.service.run_due_checks() == 1
    [incident] = app.incidents()
    assert (incident["order_id"], incident["delay_minutes"]) == ("o-1", 11)


async def test_a_partition_not_assigned_here_leaves_its_checks_to_another_process() -> None:
    app = intake(T0)
    await app.consume([f.order_placed("c", "o-1", at=T0, promised=T0 + minutes(30))])
    app.progress.unassigned = True
    app.clock.now = T0 + timedelta(days=1)
    assert await app.service.run_due_checks() == 0
    app.progress.unassigned = False
    assert await app.service.run_due_checks() == 1


async def test_an_erased_customer_s_earlier_events_are_dropped_and_later_ones_kept() -> None:
    app = intake(T0 + timedelta(hours=5))
    pseudonyms = Pseudonyms(app.service.settings.erasure_pseudonym_key)
    request = ErasureRequest(erasure_id="e-1", customer_id="gone", tenant="default",
                             requested_by="admin-1", requested_at=ERASED_AT)
    assert await app.erased.add(request, pseudonyms.of("gone")) == 1
    assert await app.erased.add(request, pseudonyms.of("gone")) == 0  # once
    processed = await app.service.process([
        upstream_event_adapter.validate_python(body) for body in (
            f.delivered("gone", "o-1", at=T0 + minutes(50), promised=T0),
            f.delivered("gone", "o-2", at=T0 + timedelta(hours=3),
                        promised=T0 + timedelta(hours=2)),
            f.delivered("kept", "o-3", at=T0 + minutes(50), promised=T0),
            f.outage_declared("out", at=T0 + minutes(30), customers=["gone", "kept"]))])
    assert processed.incident_ids.get(0, []) == []
    assert sorted((i.customer.id, i.order_id or i.type.value) for i in processed.new) == [
        ("gone", "o-2"), ("kept", "o-3"), ("kept", "service_outage")]

    bad = f.delivered("gone", "o-8", at=T0)
    bad["data"]["delivered_at"] = "yesterday"
    bad_kept = f.delivered("kept", "o-9", at=T0)
    bad_kept["data"]["delivered_at"] = "yesterday"
    await app.consume([bad, bad_kept])
    letters = app.dead_letters()
    assert [letter["offset"] for letter in letters] == [1]  # the kept customer's only
    assert "gone" not in str(letters)
    for kind in ("order.delivered", "outage_fan_out", "invalid"):
        assert app.metric("amends_erased_events_dropped_total", {"kind": kind}) == 1

    # Durable, and under the pseudonym only: another instance knows it after a read.
    assert "gone" not in str(app.store.erasures)
    other = ErasedCustomers(app.store, pseudonyms, CollectorRegistry())
    assert not other.covers("gone", ERASED_AT)
    await other.load()
    assert other.covers("gone", ERASED_AT)
    assert not other.covers("gone", ERASED_AT + timedelta(seconds=1))
    assert not other.covers("kept", ERASED_AT)
