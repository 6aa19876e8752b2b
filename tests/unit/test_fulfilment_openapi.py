"""Fulfilment's committed OpenAPI document is the one it serves; every operator operation
declares the bearer scheme, the customer's page does not (its token is the link's)."""

from __future__ import annotations

import json
from pathlib import Path

from services.fulfilment.openapi import render

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "api" / "fulfilment.openapi.json"


def test_the_committed_openapi_document_is_current() -> None:
    assert COMMITTED.read_text() == render(), (
        "docs/api/fulfilment.openapi.json is stale: regenerate it with "
        "`.venv/bin/python -m services.fulfilment.openapi > docs/api/fulfilment.openapi.json`")


def test_operator_operations_declare_the_bearer_scheme() -> None:
    document = json.loads(render())
    operations = {(path, method): operation for path, methods in document["paths"].items()
                  if path.startswith("/v1/") for method, operation in methods.items()}
    assert sorted(operations) == [
        ("/v1/customer/decisions/{decision_id}", "get"),
        ("/v1/customers/{customer_id}/case", "get"),
        ("/v1/vouchers/{code}", "get"),
        ("/v1/vouchers/{code}/redeem", "post")]
    for (path, _), operation in operations.items():
        assert bool(operation.get("security")) == (not path.startswith("/v1/customer/")), path
