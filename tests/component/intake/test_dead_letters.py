"""Records intake cannot take, in memory: each dead-lettered alone with the bad field named,
the later records of their partition processed in order, and no contact detail in the logs,
the metrics or an error."""

from __future__ import annotations

import base64
import logging
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import generate_latest

from services.common.adapters.mongo import StoreWriteError
from tests import factories as f
from tests.component.intake.harness import intake

pytestmark = pytest.mark.component

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


async def test_malformed_messages_are_dead_lettered_and_the_later_ones_processed() -> None:
    late = f.delivered("c", "o-1", at=T0 + timedelta(hours=2), promised=T0)
    wrong_schema = f.delivered("c", "o-2", at=T0, promised=T0)
    wrong_schema["data"]["total"] = {"amount": 12.5, "currency": "euro"}
    unknown = {**late, "id": "e-unknown", "type": "order.teleported"}
    finer = f.delivered("c", "o-3", at=T0, promised=T0)
    finer["data"]["total"] = f.eur("10.005")
    negative = f.payment_captured("c", "o-4", "p-4", at=T0, amount="-42.00")
    app = intake(T0)
    records = app.records([b"\xff\xfe not json", wrong_schema, unknown, finer], "orders")
    records += app.records([negative], "payments") + app.records([late], "orders")
    await app.service.handle_upstream(records)
    assert [i["order_id"] for i in app.incidents()] == ["o-1"]
    letters = app.dead_letters()
    by_offset = {(d["topic"], d["offset"]): d for d in letters}
    assert [d["reason"] for d in letters] == [
        "undecodable", "invalid", "unknown_type", "invalid", "invalid"]
    assert base64.b64decode(by_offset["orders", 0]["value_b64"]) == b"\xff\xfe not json"
    assert "data.total.amount" in by_offset["orders", 1]["error"]
    assert "data.total.currency" in by_offset["orders", 1]["error"]
    assert "order.teleported" in by_offset["orders", 2]["error"]
    assert ("data.total: Value error, amount 10.005 has more decimals than EUR allows (2)"
            in by_offset["orders", 3]["error"])
    assert "amount -42.00 is negative" in by_offset["payments", 0]["error"]
    for reason, count in (("undecodable", 1), ("invalid", 3), ("unknown_type", 1)):
        assert app.metric("amends_dead_letters_total",
                          {"reason": reason, "service": "intake"}) == count


async def test_a_record_that_keeps_failing_is_dead_lettered_alone_in_order() -> None:
    """A record whose processing fails (here: the store refuses its order's check) goes to
    the dead letters alone; the records before and after it on its partition are processed,
    in their order."""
    app = intake(T0)
    schedule = app.store.schedule

    async def refuse_o_poison(checks: object) -> set[str]:
        if any(c.key == "o-poison" for c in checks):  # type: ignore[attr-defined]
            raise StoreWriteError("bulk write refused: 1 write errors, codes [2]")
        return await schedule(checks)  # type: ignore[arg-type]

    app.store.schedule = refuse_o_poison  # type: ignore[method-assign]
    bodies = [f.order_placed("c", f"o-{n}", at=T0, promised=T0 + timedelta(minutes=n))
              for n in range(5)]
    bodies.insert(2, f.order_placed("c", "o-poison", at=T0, promised=T0))
    await app.guard(attempts=2).run(app.records(bodies))
    [letter] = app.dead_letters()
    assert (letter["reason"], letter["offset"]) == ("processing_failed", 2)
    assert "StoreWriteError" in letter["error"]
    assert "codes [2]" in letter["error"]
    assert sorted(app.store.checks) == [f"delivery:o-{n}:0" for n in range(5)]
    # Then the checks come due in the order of their promises.
    app.clock.now = T0 + timedelta(hours=1)
    assert await app.service.run_due_checks() == 5
    assert [i["order_id"] for i in app.incidents()] == [f"o-{n}" for n in range(5)]


async def test_contact_details_never_reach_the_logs_the_metrics_or_an_error(
        caplog: pytest.LogCaptureFixture) -> None:
    email, phone = "c.secret@example.org", "+44 7700 900123"

    events, broken = f.events_with_contact("c", "out", at=T0, email=email, phone=phone)
    caplog.set_level(logging.DEBUG)
    app = intake(T0 + timedelta(hours=3))
    await app.consume([*events, broken], "orders")
    assert len(app.incidents()) >= 5
    [letter] = app.dead_letters()
    metrics = generate_latest(app.registry).decode()
    records = [(r.name, f"{r.getMessage()} {r.exc_text or ''}") for r in caplog.records]
    assert any("dead-lettered" in text for _, text in records)  # logs were captured at all
    for secret in (email, phone, "7700 900123"):
        assert sorted({name for name, text in records if secret in text}) == []
        assert secret not in metrics
        assert secret not in letter["error"]
    assert email in base64.b64decode(letter["value_b64"]).decode()  # kept for a redrive


async def test_a_refused_write_reaches_the_dead_letters_as_codes_and_ids() -> None:
    app = intake(T0 + timedelta(hours=3))
    app.store.incidents.failing = StoreWriteError(
        "bulk write refused: 1 write errors, codes [2], ids x")
    late = f.delivered("c", "o-1", at=T0 + timedelta(hours=3), promised=T0)
    await app.guard(attempts=1).run(app.records([late]))
    [letter] = app.dead_letters()
    assert letter["reason"] == "processing_failed"
    assert "codes [2]" in letter["error"]
    assert app.incidents() == []
