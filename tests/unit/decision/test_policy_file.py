"""Policy files: errors name the line, the field and the problem; the JSON Schema is current."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.decision.domain.policy import PolicyError, parse_policy, policy_json_schema

pytestmark = pytest.mark.unit

DEFAULT = Path("deploy/policy/default.yaml")


def problems_of(text: str) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "p.yaml")
    return caught.value.problems


def test_the_default_policy_validates() -> None:
    policy = parse_policy(DEFAULT.read_text(), str(DEFAULT))
    assert policy.currency == "EUR"
    assert len(policy.rules) > 10


def test_a_float_amount_is_refused_with_its_line() -> None:
    text = DEFAULT.read_text().replace('incident_cap: "500.00"', "incident_cap: 500.5")
    line = next(n for n, row in enumerate(text.splitlines(), 1) if "incident_cap" in row)
    assert problems_of(text) == [
        f'line {line}: guards.incident_cap: write 500.5 in quotes ("500.5"): amounts are '
        "decimals, not floats"]


def test_an_unknown_key_and_a_bad_offer_default_are_named() -> None:
    text = DEFAULT.read_text().replace("      - points: 200\n", "      - pionts: 200\n", 1)
    text = text.replace("      default: 0\n", "      default: 5\n", 1)
    problems = problems_of(text)
    assert any("pionts: Extra inputs are not permitted" in p for p in problems), problems
    assert any("default is 5 but there are only 2 options" in p for p in problems), problems
    assert all(p.startswith("line ") and not p.startswith("line ?") for p in problems)


def test_duplicate_rule_ids_and_a_grant_with_two_remedies() -> None:
    text = DEFAULT.read_text().replace("id: wrong-item", "id: item-defective")
    assert any("rule id 'item-defective' is used twice" in p for p in problems_of(text))
    text = DEFAULT.read_text().replace("      - points: 200\n",
                                       "      - points: 200\n        gift: {item: x, value: 1}\n",
                                       1)
    assert any("a grant names exactly one remedy" in p for p in problems_of(text))


def test_not_yaml_and_not_a_mapping() -> None:
    assert problems_of("rules: [")[0].startswith("not valid YAML")
    assert problems_of("- 1\n- 2\n") == [
        "line 1: the policy must be a mapping (version, currency, values, guards, rules)"]


def test_the_committed_json_schema_is_current() -> None:
    committed = json.loads(Path("deploy/policy/policy.schema.json").read_text())
    assert committed == policy_json_schema(), "run: amends policy schema"
