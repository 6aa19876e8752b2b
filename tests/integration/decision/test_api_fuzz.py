"""Decision's OpenAPI document, fuzzed (schemathesis): every operator endpoint refuses a
request without credentials (401) whatever it carries, the customer's endpoint refuses one
without a genuine link, and no request, with or without credentials, gets a 5xx."""

from __future__ import annotations

import warnings
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.core import NotSet
from schemathesis.core.result import Ok

from services.common.access import Role
from tests import auth
from tests.infra import Infra
from tests.integration.decision.test_access_api import decider, late

pytestmark = pytest.mark.integration

OPEN = {"/alive", "/health", "/metrics"}
EXAMPLES = 25


def cases(operation: Any, n: int) -> list[Any]:
    """`n` requests schemathesis makes for `operation` (drawn, not sent: they are sent on
    the test's event loop, where the app's clients live)."""
    drawn: list[Any] = []

    @given(operation.as_strategy())
    @settings(max_examples=n, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    def draw(case: Any) -> None:
        drawn.append(case)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        draw()
    return drawn


async def test_no_endpoint_answers_without_credentials_and_none_fails(
        infra: Infra, suffix: str) -> None:
    async with decider(infra, suffix) as d:
        held = (await d.decide(late(f"{suffix}-late")))[f"{suffix}-late"]
        schema = schemathesis.openapi.from_dict(d.app.openapi())
        results = list(schema.get_all_operations())
        operations = [result.ok() for result in results if isinstance(result, Ok)]
        assert len(operations) == len(results), "the OpenAPI document is valid"
        assert {op.path for op in operations} >= {"/v1/review", "/v1/manual-vouchers",
                                                   "/v1/customer/decisions/{decision_id}/choice"}
        sent = 0
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=d.app),
                                     base_url="http://decision") as client:
            for operation in operations:
                if operation.path in OPEN:
                    continue
                for n, case in enumerate(cases(operation, EXAMPLES)):
                    path = case.formatted_path
                    if n % 3 == 0 and "{decision_id}" in operation.path:
                        path = operation.path.replace("{decision_id}", held)  # a real one
                    request: dict[str, Any] = {"params": case.query}
                    if not isinstance(case.body, NotSet):
                        request["json"] = case.body
                    bare = await client.request(case.method, path, **request,
                                                headers=dict(case.headers or {}))
                    with_key = await client.request(case.method, path, **request,
                                                    headers=auth.headers(Role.admin))
                    sent += 2
                    label = f"{case.method} {path}"
                    assert bare.status_code < 500, (label, bare.text)
                    assert with_key.status_code < 500, (label, with_key.text)
                    assert not 200 <= bare.status_code < 300, (label, bare.text)
                    if not operation.path.startswith("/v1/customer/"):
                        assert bare.status_code == 401, (label, bare.text)
        assert sent > 100
