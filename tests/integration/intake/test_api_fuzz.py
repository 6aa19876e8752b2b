"""schemathesis against intake's committed OpenAPI document, served by a real intake (real
broker and database): generated requests, signed or not, never get a server error."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from services.intake.app import create_app
from tests.infra import Infra, new_suffix
from tests.integration.intake.helpers import intake_settings
from tests.pipeline import Topics
from tests.servers import served
from tests.upstream import signed

pytestmark = pytest.mark.integration

OPENAPI = Path(__file__).resolve().parents[3] / "docs" / "api" / "intake.openapi.json"
schema = schemathesis.openapi.from_path(OPENAPI)


@pytest.fixture(scope="module")
def base_url(infra: Infra) -> Iterator[str]:
    suffix = new_suffix()
    app = create_app(intake_settings(infra, Topics.unique(suffix),
                                     f"amends_test_{suffix}_intake",
                                     sources={"shop": {"event_types": ["*"], "tenants": ["*"],
                                                       "report_incidents": True,
                                                       "rate_per_second": 10_000,
                                                       "burst": 10_000}}),
                     sweep=False)
    with served(app, "intake") as url:
        yield url


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_gets_a_server_error(case: schemathesis.Case[Any], base_url: str) -> None:
    if isinstance(case.body, dict | list) and hash(repr(case.body)) % 3:
        # Most requests signed as a configured source, so they reach validation and
        # processing; the rest keep the generated headers and are refused.
        raw, headers = signed("shop", json.dumps(case.body).encode(), int(time.time()))
        response = case.call(base_url=base_url, headers=headers, data=raw)
    else:
        response = case.call(base_url=base_url)
    case.validate_response(response, checks=[not_a_server_error])
