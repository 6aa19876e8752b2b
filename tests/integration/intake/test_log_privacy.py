"""Intake's logs and dead letters at DEBUG when the database refuses a bulk write: the
driver's error text (it holds every failing document) is told by codes and ids only."""

from __future__ import annotations

import base64
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo.errors import BulkWriteError

from schemas.incident import Incident
from tests import factories as f
from tests.clock import FakeClock
from tests.infra import Infra
from tests.integration.intake.helpers import running_intake
from tests.kafka_tools import as_json, collect, produce

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


async def test_a_refused_bulk_write_reaches_logs_and_dead_letters_as_codes_and_ids(
        infra: Infra, suffix: str, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    email, phone = f"{suffix}.secret@example.org", "+44 7700 900456"
    customer = f"{suffix}-c"
    late = f.delivered(customer, "o-1", at=T0 + timedelta(hours=3), promised=T0)
    late["data"]["customer"]["contact"] = {"email": email, "phone": phone}
    caplog.set_level(logging.DEBUG)
    async with running_intake(infra, suffix, clock=FakeClock(T0 + timedelta(hours=3)),
                              log_level="DEBUG", batch_attempts=1) as intake:
        async def refuse(records: Sequence[tuple[str, Incident]]) -> set[Any]:
            # What PyMongo raises when the server refuses documents: each one in `op`.
            raise BulkWriteError({"writeErrors": [
                {"index": i, "code": 2, "errmsg": "refused",
                 "op": {"_id": key, "incident": incident.model_dump(mode="json")}}
                for i, (key, incident) in enumerate(records)],
                "writeConcernErrors": [], "nInserted": 0})

        monkeypatch.setattr(intake.service.store.incidents, "add_new", refuse)
        await produce(infra.kafka_bootstrap, intake.topics.orders, as_json([late]))
        letters = await collect(infra.kafka_bootstrap, intake.topics.deadletter,
                                lambda seen: len(seen) >= 1)
    error = letters[0]["data"]["error"]
    assert "BulkWriteError" in error
    assert "codes [2]" in error
    records = [f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records]
    assert any("BulkWriteError" in text for text in records)
    assert any(r.levelno == logging.DEBUG for r in caplog.records)
    for secret in (email, phone):
        assert secret not in error
        assert [text for text in records if secret in text] == []
    # The dead letter keeps the original record (for a redrive) and nothing more.
    original = base64.b64decode(letters[0]["data"]["value_b64"]).decode()
    assert email in original
