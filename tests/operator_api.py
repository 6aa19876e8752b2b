"""Decision's API served over HTTP for tests of the operators' tools: the CLI checks the
caller's credentials with its `GET /v1/whoami`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, Request

from services.common.access import Principal, Role, operator
from services.decision.app import create_app as decision_app
from tests.infra import Infra, new_suffix
from tests.pipeline import Topics, settings_for
from tests.servers import served


def with_whoami(app: FastAPI) -> FastAPI:
    """Decision's app, answering `GET /v1/whoami` (any operator) as the CLI expects. Decision's
    own route lands with its operator API (another branch); until then the same answer from
    the same authenticator, and when it is there this adds nothing."""
    if any(getattr(route, "path", None) == "/v1/whoami" for route in app.routes):
        return app
    runtime = app.state.runtime
    caller = operator(runtime.access, Role.viewer)

    @app.get("/v1/whoami")
    async def whoami(request: Request) -> dict[str, Any]:
        me: Principal = await caller(request, None)
        return {"subject": me.subject, "roles": sorted(r.name for r in me.roles),
                "tenant": me.tenant, "via": me.via}

    return app


@contextlib.contextmanager
def decision_api(infra: Infra) -> Iterator[str]:
    """A decision service of its own (its own topics and database, the test operators'
    keys) served over HTTP: what the CLI checks credentials against."""
    suffix = new_suffix()
    _, settings, _ = settings_for(infra, Topics.unique(suffix), f"amends_test_{suffix}")
    with served(with_whoami(decision_app(settings)), "decision") as url:
        yield url
