"""Negative reviews through intake in memory: a review.posted on the support topic makes
one incident (once, however often it comes), a good review none, the threshold is intake's
setting by name, and a bad record is dead-lettered alone, without the review's text."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import generate_latest

from tests import factories as f
from tests.component.intake.harness import intake

pytestmark = pytest.mark.component

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
TEXT = "The parcel was soaked and nobody answered my calls"


def review(review_id: str, rating: Any, customer: str = "c-1") -> dict[str, Any]:
    return f.event("review.posted", {
        "review_id": review_id, "customer": f.customer(customer), "posted_at": T0.isoformat(),
        "rating": rating, "text": TEXT, "platform": "trustpilot",
        "url": f"https://reviews.example/{review_id}"}, subject=customer, at=T0)


async def test_a_poor_review_makes_one_incident_and_a_good_one_none() -> None:
    app = intake(T0)
    await app.consume([review("r-1", 1), review("r-2", 4, "c-2"), review("r-1", 1)],
                      "support")
    [incident] = app.incidents()
    assert (incident["type"], incident["severity"], incident["rating"],
            incident["review_platform"], incident["review_url"]) == (
        "negative_review", "high", 1, "trustpilot", "https://reviews.example/r-1")
    assert TEXT not in str(incident)
    assert app.metric("amends_incidents_detected_total",
                      {"type": "negative_review", "detection": "proactive"}) == 1


async def test_the_threshold_comes_from_settings_by_name() -> None:
    app = intake(T0, thresholds={"negative_review.max_rating": 3})
    await app.consume([review("r-3", 3), review("r-4", 4, "c-2")], "support")
    assert [i["rating"] for i in app.incidents()] == [3]


async def test_a_bad_review_is_dead_lettered_alone_without_its_text(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    app = intake(T0)
    await app.consume([review("r-5", 2), review("r-6", 9, "c-2"), review("r-7", 1, "c-3")],
                      "support")
    assert [i["review_url"] for i in app.incidents()] == [
        "https://reviews.example/r-5", "https://reviews.example/r-7"]
    [letter] = app.dead_letters()
    assert (letter["reason"], letter["offset"]) == ("invalid", 1)
    assert "data.rating" in letter["error"]
    assert TEXT not in letter["error"]
    assert TEXT not in caplog.text
    assert TEXT not in generate_latest(app.registry).decode()
