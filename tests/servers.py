"""Serving an app for real over HTTP in a test, as the services serve it: uvicorn on a free
port, in a thread with its own event loop (for synchronous clients: schemathesis, the CLI) or
in the test's loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator

import uvicorn
from fastapi import FastAPI

from services.common.runtime import server_config


@contextlib.contextmanager
def served(app: FastAPI, name: str = "the app") -> Iterator[str]:
    """Serve `app` (its lifespan too) on 127.0.0.1 and a free port; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(server_config(app, "127.0.0.1", port))
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


def bound() -> socket.socket:
    """A socket on 127.0.0.1 and a free port, held: an app's URL known before it is built
    (its settings name it) and no other process can take the port meanwhile."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.asynccontextmanager
async def served_here(app: FastAPI, sock: socket.socket | None = None) -> AsyncIterator[str]:
    """An app whose lifespan runs already, served over HTTP on a free port (or on `sock`,
    from `bound()`) in this event loop (async clients only); yields its base URL."""
    sock = sock or bound()
    port = sock.getsockname()[1]
    server = uvicorn.Server(server_config(app, "127.0.0.1", port, lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        assert not task.done(), "the server stopped before it started"
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
