"""One thread doing database work in order, so commits never hold up the event loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class SerialWorker:
    """Work handed to one thread of its own, done in the order it was given.

    For what waits on a commit (the compliance ledgers, the attempt rows), which must not hold
    up the AMI events and FastAGI routing of the calls in flight, inside the 2 s a live answer
    may wait. One thread, not a pool: a release or an outcome comes after its reservation, a
    call's updates come in order, and the work never runs twice at once.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Do `fn(*args)` on the thread and wait for its result (or its exception)."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    def later(self, fn: Callable[..., object], *args: Any) -> None:
        """Queue `fn(*args)`; a failure is logged, as nobody waits for it."""
        self._thread.submit(fn, *args).add_done_callback(self._log_failure)

    def _log_failure(self, done: Future[object]) -> None:
        exc = done.exception()
        if exc is not None:
            log.error("x %s failed: %s", self.name, exc, exc_info=exc)

    async def drain(self) -> None:
        """Wait until everything queued is done; the worker takes nothing more."""
        await asyncio.get_running_loop().run_in_executor(None, self._thread.shutdown, True)
