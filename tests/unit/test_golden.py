"""The domain decides and says exactly what it did before: digests of the decisions and of
the messages in every locale for generated incidents (tests/golden.py says how to record
them when a change of behaviour is intended)."""

from __future__ import annotations

import json

import pytest

from tests.golden import DIGESTS, digests

pytestmark = pytest.mark.unit


def test_decisions_and_messages_are_unchanged() -> None:
    recorded = json.loads(DIGESTS.read_text())
    changed = sorted(name for name, digest in digests().items() if recorded.get(name) != digest)
    assert not changed, f"changed: {', '.join(changed)} (tests/golden.py says what to do)"
