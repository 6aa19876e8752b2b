"""Process entry helpers: logging set-up and serving a service's ASGI app with uvicorn."""

from __future__ import annotations

import logging

import uvicorn
from fastapi import FastAPI

from services.common.settings import ServiceSettings


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # One line per HTTP request or Kafka message would drown the service's own lines.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


def serve(app: FastAPI, settings: ServiceSettings) -> None:
    configure_logging(settings.log_level)
    uvicorn.run(app, host=settings.http_host, port=settings.http_port, log_config=None,
                access_log=False, lifespan="on")
