"""An event put together from its data's stored text is byte for byte the event dumped
whole: consumers and the outbox see no difference."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from schemas.decision import DecisionMade
from services.common.messaging import outgoing, outgoing_with_data
from services.decision.backtest import generate_incidents
from services.decision.domain.engine import decide
from services.decision.domain.history import CustomerHistory
from services.decision.domain.policy import load_policy

NOW = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)


def test_an_event_from_stored_text_equals_the_event_dumped_whole() -> None:
    policy = load_policy(Path("deploy/policy/default.yaml"))
    kinds = set()
    for n, incident in enumerate(generate_incidents(600, start=NOW, days=3)):
        decision = decide(incident, CustomerHistory(), policy, incident.detected_at)
        kinds.add((decision.status, decision.offer is not None))
        event = DecisionMade(id=decision.decision_id, source="amends/decision", time=NOW,
                             subject=decision.incident.customer.id,
                             tenant=None if n % 2 else f"brand-{n % 3}", data=decision)
        whole = outgoing("t", event)
        assert outgoing_with_data("t", event, decision.model_dump_json()) == whole
    assert len(kinds) >= 3  # approved, held and offers among them


def test_extension_attributes_keep_their_place_after_the_data() -> None:
    policy = load_policy(Path("deploy/policy/default.yaml"))
    [incident] = generate_incidents(1, start=NOW, days=1)
    decision = decide(incident, CustomerHistory(), policy, NOW)
    extension: dict[str, Any] = {"traceparent": "00-abc-def-01"}  # an envelope extra
    event = DecisionMade(id="e-1", source="amends/decision", time=NOW, subject="c-1",
                         data=decision, **extension)
    assert event.model_extra
    assert outgoing_with_data("t", event, decision.model_dump_json()) == outgoing("t", event)
