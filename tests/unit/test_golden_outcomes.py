"""Fulfilment's outcomes and messages for the golden decisions are the recorded ones
(tests/golden_outcomes.py says what is digested and what is left out)."""

from __future__ import annotations

import json

import pytest

from tests.golden_outcomes import DIGESTS, digests

pytestmark = pytest.mark.component


def test_fulfilment_publishes_and_sends_what_was_recorded() -> None:
    recorded = json.loads(DIGESTS.read_text())
    found, counts = digests()
    # Something of each kind was published or sent; dead letters only where a customer
    # cannot be reached or a refund fails.
    assert all(n > 0 for key, n in counts.items() if not key.endswith("/dead_letters")), counts
    assert counts["default-email-only/dead_letters"] > 0, counts
    assert counts["default-refunds-fail/dead_letters"] > 0, counts
    assert found == recorded
