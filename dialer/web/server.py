"""Serving the pages from the dialer's own event loop with uvicorn (no second process)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Iterator

import uvicorn
from fastapi import FastAPI

log = logging.getLogger(__name__)


class _InLoopServer(uvicorn.Server):
    """uvicorn without its signal handlers: Ctrl-C belongs to the dialer (first: stop dialling,
    second: hang up), which stops the pages itself."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serving(app: FastAPI, host: str, port: int) -> AsyncIterator[int]:
    """Serve `app` on host:port (0: any free port) while the block runs; yields the port."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"the pages cannot listen on {host}:{port}: {exc.strerror}") from exc
    bound = int(sock.getsockname()[1])
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        ws="websockets-sansio",
        ws_ping_interval=20,
        ws_ping_timeout=20,
        timeout_graceful_shutdown=3,
    )
    server = _InLoopServer(config)
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]), name="web")
    while not server.started:
        if task.done():
            sock.close()
            task.result()
            raise RuntimeError("the pages' server stopped while starting")
        await asyncio.sleep(0.02)
    log.info("= pages on http://%s:%d/", host, bound)
    try:
        yield bound
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await task
        sock.close()
