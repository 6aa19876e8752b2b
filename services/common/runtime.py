"""Process entry helpers: logging set-up and serving a service's ASGI app with uvicorn."""

from __future__ import annotations

import logging
from typing import Literal

import uvicorn
from fastapi import FastAPI

from services.common.settings import ServiceSettings


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # One line per HTTP request or Kafka message would drown the service's own lines.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


def server_config(app: FastAPI, host: str, port: int, *,
                  lifespan: Literal["on", "off"] = "on") -> uvicorn.Config:
    """How a service's app is served. No access log: a request line would carry the query,
    and the customer's page takes its link's token there."""
    return uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False,
                          lifespan=lifespan)


def serve(app: FastAPI, settings: ServiceSettings) -> None:
    configure_logging(settings.log_level)
    uvicorn.Server(server_config(app, settings.http_host, settings.http_port)).run()
