"""Serving an app for real over HTTP in a test: uvicorn on a free port, in a thread with its
own event loop, so synchronous clients (schemathesis, the CLI) can call it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI


@contextlib.contextmanager
def served(app: FastAPI, name: str = "the app") -> Iterator[str]:
    """Serve `app` (its lifespan too) on 127.0.0.1 and a free port; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_config=None,
                                           access_log=False))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])),
                              daemon=True, name=f"serve {name}")
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive(), f"{name} stopped before it started"
        assert time.monotonic() < deadline, f"{name} did not start within 60 s"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
