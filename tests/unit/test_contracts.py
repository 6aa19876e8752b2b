"""The contracts: generated documents are current, changes stay backward compatible, and bad
input is refused with the field and the problem named."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from schemas.common import Money, deterministic_id
from schemas.compat import breaking_changes
from schemas.generate import RELEASED_DIR, stale_files
from schemas.registry import CONTRACTS, json_schema
from schemas.upstream import OrderDeliveredEvent, upstream_event_adapter
from services.common.errors import field_errors
from tests.factories import order_delivered

pytestmark = pytest.mark.unit


def test_generated_documents_are_current() -> None:
    stale = stale_files()
    assert not stale, f"run `make schemas`: stale {[p.name for p in stale]}"


@pytest.mark.parametrize("name", sorted(CONTRACTS))
def test_contract_is_backward_compatible_with_the_released_one(name: str) -> None:
    released = json.loads((RELEASED_DIR / f"{name}.schema.json").read_text())
    assert breaking_changes(released, json_schema(name)) == []


OBJECT: dict[str, Any] = {
    "type": "object",
    "properties": {"a": {"type": "string"}, "b": {"$ref": "#/$defs/Kind"}},
    "required": ["a"],
    "$defs": {"Kind": {"enum": ["x", "y"], "type": "string"}},
}


def _changed(**edits: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(json.dumps(OBJECT))
    for path, value in edits.items():
        target = doc
        *parents, last = path.split("__")
        for part in parents:
            target = target[part]
        if value is None:
            del target[last]
        else:
            target[last] = value
    return doc


@pytest.mark.parametrize(("edits", "problem"), [
    ({"properties__a": None}, "$.a: property removed"),
    ({"properties__a": {"type": "integer"}}, "$.a: type changed"),
    ({"required": ["a", "b"]}, "$.b: became required"),
    ({"$defs__Kind__enum": ["x"]}, "$.b: enumerated values removed: ['y']"),
])
def test_compatibility_check_finds_breaking_changes(edits: dict[str, Any], problem: str) -> None:
    problems = breaking_changes(OBJECT, _changed(**edits))
    assert any(p.startswith(problem) for p in problems), problems


def test_compatibility_check_accepts_additions() -> None:
    added = _changed(properties__c={"type": "string"}, **{"$defs__Kind__enum": ["x", "y", "z"]})
    assert breaking_changes(OBJECT, added) == []


def test_money_refuses_floats_and_keeps_decimals_exact() -> None:
    with pytest.raises(ValidationError, match="decimal string"):
        Money.model_validate({"amount": 12.5, "currency": "EUR"})
    money = Money.model_validate({"amount": "0.10", "currency": "EUR"})
    assert json.loads(money.model_dump_json())["amount"] == "0.10"
    with pytest.raises(ValidationError, match="currency"):
        Money.model_validate({"amount": "1", "currency": "euro"})


def test_bad_upstream_event_names_each_field_and_problem() -> None:
    event = order_delivered("c1", "o1", promised=_now(), delivered=_now())
    event["data"]["delivered_at"] = "yesterday"
    event["data"]["total"]["amount"] = 3.5
    with pytest.raises(ValidationError) as caught:
        upstream_event_adapter.validate_python(event)
    fields = {e["field"]: e["problem"] for e in field_errors(caught.value)}
    assert set(fields) == {"data.delivered_at", "data.total.amount"}
    assert "decimal string" in fields["data.total.amount"]


def test_upstream_event_round_trips_and_contacts_stay_out_of_repr() -> None:
    event = upstream_event_adapter.validate_python(
        order_delivered("c1", "o1", promised=_now(), delivered=_now()))
    assert isinstance(event, OrderDeliveredEvent)
    assert "example.org" not in repr(event)
    again = upstream_event_adapter.validate_json(event.model_dump_json())
    assert again == event


def test_ids_are_deterministic() -> None:
    assert deterministic_id("incident", "a", "b") == deterministic_id("incident", "a", "b")
    assert deterministic_id("incident", "a", "b") != deterministic_id("incident", "ab")


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
