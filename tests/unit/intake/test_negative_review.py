"""The negative_review detector, as its registry entry gives it to intake: an incident at or
below the threshold (default 2 stars, overridable by name), severity from the rating, the
review's facts for the messages and never its text; a rating outside 1-5 refused by name."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from schemas.common import INPUT_CONTEXT
from schemas.incident import Incident, IncidentType, Severity
from schemas.upstream import ReviewPostedEvent, upstream_event_adapter
from services.common.erasure import ERASED_TEXT, Scrub
from services.intake.settings import IntakeSettings
from services.registry.incident_types import INCIDENT_TYPES, thresholds_of
from tests import factories as f

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
ENTRY = INCIDENT_TYPES[IncidentType.negative_review]


def review(rating: int, **data: Any) -> dict[str, Any]:
    body = {"review_id": f"r-{rating}", "customer": f.customer("c-1"),
            "posted_at": NOW.isoformat(), "rating": rating,
            "text": "Rude courier, cold food, never again.", "platform": "trustpilot",
            "url": "https://reviews.example/r/1", "order_id": "o-1", **data}
    return f.event("review.posted", body, subject="c-1", at=NOW)


def parsed(body: dict[str, Any]) -> ReviewPostedEvent:
    event = upstream_event_adapter.validate_python(body, context=INPUT_CONTEXT)
    assert isinstance(event, ReviewPostedEvent)
    return event


def detect(rating: int, limits: dict[str, Any] | None = None) -> Any:
    assert ENTRY.stateless is not None
    return ENTRY.stateless.detect(parsed(review(rating)), NOW,
                                  limits or thresholds_of(ENTRY, {}))


def test_the_default_threshold_is_two_stars_inclusive() -> None:
    assert thresholds_of(ENTRY, {}) == {"max_rating": 2}
    assert [detect(r) is not None for r in (1, 2, 3, 4, 5)] == [True, True, False, False, False]


def test_the_threshold_is_overridden_by_name_in_settings() -> None:
    settings = IntakeSettings(thresholds={"negative_review.max_rating": "3"})
    assert settings.thresholds == {"negative_review.max_rating": 3}
    limits = thresholds_of(ENTRY, settings.thresholds)
    assert detect(3, limits) is not None
    assert detect(4, limits) is None


def test_severity_follows_the_rating() -> None:
    assert (detect(1).severity, detect(2).severity) == (Severity.high, Severity.medium)


def test_the_incident_carries_what_the_messages_need_and_never_the_text() -> None:
    incident = detect(1)
    assert (incident.rating, incident.review_platform, incident.review_url, incident.order_id) \
        == (1, "trustpilot", "https://reviews.example/r/1", "o-1")
    assert "courier" not in incident.model_dump_json()
    assert detect(1).incident_id == incident.incident_id  # the same review, the same incident


def test_other_incidents_serialise_as_before_without_the_review_fields() -> None:
    other = f.incident("delivery_delayed", delay_minutes=30)
    dumped = Incident.model_validate(other).model_dump_json()
    assert "rating" not in dumped
    assert "review_" not in dumped


@pytest.mark.parametrize("rating", [0, 6, "2"])
def test_a_rating_outside_one_to_five_is_refused_naming_the_field(rating: object) -> None:
    body = review(2)
    body["data"]["rating"] = rating
    with pytest.raises(ValidationError) as refused:
        upstream_event_adapter.validate_json(json.dumps(body), strict=True,
                                             context=INPUT_CONTEXT)
    assert "data.rating" in str(refused.value)


def test_erasure_scrubs_the_reviews_text_and_the_customer() -> None:
    body = review(1)
    scrubbed = Scrub("c-1", "p-1").value(body)
    assert scrubbed["data"]["text"] == ERASED_TEXT
    assert scrubbed["data"]["customer"]["id"] == "p-1"
    assert scrubbed["data"]["rating"] == 1  # the facts that are not personal stay
