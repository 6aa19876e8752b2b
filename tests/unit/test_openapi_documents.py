"""The committed OpenAPI documents are those the services serve."""

from __future__ import annotations

import pytest

from services import openapi

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("service", sorted(openapi.DOCUMENTS))
def test_the_committed_openapi_document_is_current(service: str) -> None:
    committed = openapi.path(service)
    assert committed.exists(), "generate it: .venv/bin/python -m services.openapi"
    assert committed.read_text() == openapi.render(service), (
        f"docs/api/{committed.name} is stale: regenerate with "
        "`.venv/bin/python -m services.openapi`")
