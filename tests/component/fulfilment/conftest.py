"""The fixture nearly every fulfilment component test starts from."""

from __future__ import annotations

import pytest

from tests.component.fulfilment.harness import Fulfilment


@pytest.fixture
def f() -> Fulfilment:
    """Fulfilment in memory with an email channel, the one most apologies go out on."""
    return Fulfilment.with_email()
