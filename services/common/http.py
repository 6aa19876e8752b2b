"""The operational endpoints every service serves: /health, /alive and /metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

Check = Callable[[], Awaitable[object]]


def ops_router(registry: CollectorRegistry, checks: Mapping[str, Check],
               timeout_s: float = 2.0) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/alive", summary="The process runs")
    async def alive() -> dict[str, str]:
        return {"status": "alive"}

    @router.get("/health", summary="Ready: the broker and the database answer")
    async def health() -> JSONResponse:
        results: dict[str, str] = {}
        for name, check in checks.items():
            try:
                await asyncio.wait_for(check(), timeout_s)
                results[name] = "ok"
            except Exception as exc:
                results[name] = f"failed: {type(exc).__name__}"
        ready = all(v == "ok" for v in results.values())
        return JSONResponse({"status": "ready" if ready else "unavailable", "checks": results},
                            status_code=200 if ready else 503)

    @router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router
