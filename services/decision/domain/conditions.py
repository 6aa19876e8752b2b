"""The conditions of a rule or a review trigger (`When`): the value each looks at, whether it
holds, and the words of a rule's trace naming what decided it."""

from __future__ import annotations

from typing import Any

from schemas.incident import Detection, Incident
from services.decision.domain.history import WindowFacts
from services.decision.domain.policy import Range, When
from services.decision.domain.remedies import amount_in


def condition_value(name: str, incident: Incident, facts: WindowFacts, currency: str) -> Any:
    """The value a condition of `When` looks at (None: unknown; an amount in another
    currency than the policy's is unknown)."""
    match name:
        case "tier" | "locale":
            return getattr(incident.customer, name)
        case "lifetime_value":
            return amount_in(incident.customer.lifetime_value, currency)
        case "order_value" | "item_value":
            return amount_in(getattr(incident, name), currency)
        case "incidents_in_window":
            return facts.incidents
        case "same_type_in_window":
            return facts.same_type
        case "claims_in_window":  # this one included
            return facts.claims + (incident.detection is not Detection.proactive)
        case "compensation_in_window":
            return facts.compensation
        case _:
            return getattr(incident, name)


def judged(name: str, wanted: Range | list[Any], value: Any) -> tuple[bool, str]:
    """Whether `value` satisfies one condition, and the words naming what decided it."""
    if value is None:
        return False, f"{name} unknown"
    if isinstance(wanted, Range):
        failure = wanted.failure(value)
        if failure is not None:
            return False, f"{name} {failure}"
        return True, f"{name} {value} ({wanted})"
    if value not in wanted:
        return False, f"{name} {value} not in {', '.join(str(v) for v in wanted)}"
    return True, f"{name} {value}"


def matches(when: When, incident: Incident, facts: WindowFacts, currency: str
            ) -> tuple[bool, str]:
    """Whether all conditions of `when` hold (in the order of its fields), and why."""
    held = []
    for name in type(when).model_fields:
        wanted = getattr(when, name)
        if wanted is None:
            continue
        ok, words = judged(name, wanted, condition_value(name, incident, facts, currency))
        if not ok:
            return False, words
        held.append(words)
    return True, "; ".join(held) or "no conditions"
