"""A service's real app served by uvicorn on a free local port, in a thread of its own, for
tests that call it over HTTP as an operator's tools do."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn
from fastapi import FastAPI, Request

from services.common.access import Principal, Role, operator
from services.decision.app import create_app as decision_app
from tests.infra import Infra, new_suffix
from tests.pipeline import Topics, settings_for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def served(app: FastAPI, *, timeout_s: float = 60.0) -> Iterator[str]:
    """The app's base URL while the block runs; its lifespan runs as in production."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(),
                                           log_config=None, lifespan="on"))
    thread = threading.Thread(target=server.run, name="served-app", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError("the app did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


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
    with served(with_whoami(decision_app(settings))) as url:
        yield url
