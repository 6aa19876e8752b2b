"""schemathesis against fulfilment's committed OpenAPI document, served by a real fulfilment (real
broker and database, uvicorn): generated requests, with an operator's credentials or
without, never get a server error, and without credentials nothing answers 2xx."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings

from services.common.access import Role
from services.fulfilment.app import create_app
from tests import auth
from tests.infra import Infra, new_suffix
from tests.pipeline import Topics, settings_for
from tests.servers import served

pytestmark = pytest.mark.integration

CREDENTIALS = ("authorization", "x-api-key")


@pytest.fixture(scope="module")
def base_url(infra: Infra) -> Iterator[str]:
    """Fulfilment served by uvicorn in a thread of its own (its own event loop), so that the
    synchronous schemathesis calls do not block it."""
    suffix = new_suffix()
    *_, fulfilment = settings_for(infra, Topics.unique(suffix), f"amends_test_{suffix}")
    with served(create_app(fulfilment), "fulfilment") as url:
        yield url


OPENAPI = Path(__file__).resolve().parents[3] / "docs" / "api" / "fulfilment.openapi.json"
schema = schemathesis.openapi.from_path(OPENAPI)


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_error_and_nothing_without_credentials(case: schemathesis.Case[Any],
                                                         base_url: str) -> None:
    for name in [k for k in case.headers or {} if k.lower() in CREDENTIALS]:
        del case.headers[name]
    anonymous = case.call(base_url=base_url)
    assert anonymous.status_code < 500, anonymous.text
    if case.path.startswith("/v1/"):
        # The customer's page takes only its link's token, and a generated one is forged.
        assert not 200 <= anonymous.status_code < 300, (case.path, anonymous.text)
    # Sent as given: schemathesis drops an Authorization header from the cases it generates
    # as "missing credentials".
    request = case.as_transport_kwargs(base_url=base_url)
    request["headers"] = {**(request.get("headers") or {}), **auth.headers(Role.admin)}
    operator = requests.request(**request, timeout=30)
    assert operator.status_code < 500, operator.text
    if case.path.startswith("/v1/") and not case.path.startswith("/v1/customer/"):
        assert operator.status_code not in {401, 403}, operator.text
