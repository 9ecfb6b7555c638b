"""Screen pops on time: the case is read when the debtor answers and pushed when the agent is
connected, so the agent sees it with the first word, not seconds later.

Follows the engine's calls (engine.CallWatcher); the database work runs on threads, the pushes
on the event loop. `latencies_ms` keeps how long each pop took from connection to push.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from datetime import datetime

from dialer.desk.pop import ScreenPop, build_screen_pop
from dialer.store.db import Store

log = logging.getLogger(__name__)

Push = Callable[[str, dict[str, object]], bool]

# Pops read ahead and not yet pushed (answered calls still waiting for an agent).
_PREFETCH_MAX = 2_000


class ScreenPops:
    """Reads each answered call's case ahead and pushes it to the agent it is connected to."""

    def __init__(
        self,
        store: Store,
        *,
        tenant_id: int,
        script_template: str,
        creditor: str,
        push: Push,
        agent_name: Callable[[str], str] = lambda agent_id: agent_id,
        wallclock: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.tenant_id = tenant_id
        self.script_template = script_template
        self.creditor = creditor
        self.push = push
        self.agent_name = agent_name
        self.wallclock = wallclock
        self._ahead: OrderedDict[int, asyncio.Task[ScreenPop | None]] = OrderedDict()
        self.latencies_ms: deque[float] = deque(maxlen=10_000)

    def _read(self, attempt_id: int, agent_id: str | None) -> asyncio.Task[ScreenPop | None]:
        task = self._ahead.get(attempt_id)
        if task is None:
            task = asyncio.get_running_loop().create_task(
                asyncio.to_thread(
                    build_screen_pop,
                    self.store,
                    self.tenant_id,
                    attempt_id,
                    now=self.wallclock(),
                    script_template=self.script_template,
                    agent_name=self.agent_name(agent_id) if agent_id else "",
                    creditor=self.creditor,
                ),
                name=f"pop-{attempt_id}",
            )
            self._ahead[attempt_id] = task
            while len(self._ahead) > _PREFETCH_MAX:
                _, old = self._ahead.popitem(last=False)
                old.cancel()
        return task

    # ----- engine.CallWatcher -----

    def call_answered(self, attempt_id: int) -> None:
        self._read(attempt_id, None)

    def call_connected(self, agent_id: str, attempt_id: int) -> None:
        started = time.perf_counter()
        task = self._read(attempt_id, agent_id)
        if task.done():
            self._deliver(agent_id, attempt_id, task, started)
        else:
            task.add_done_callback(lambda t: self._deliver(agent_id, attempt_id, t, started))

    def call_ended(self, agent_id: str, attempt_id: int) -> None:
        task = self._ahead.pop(attempt_id, None)
        if task is not None and not task.done():
            task.cancel()
        self.push(agent_id, {"type": "call_ended", "attempt_id": attempt_id})

    def _deliver(
        self,
        agent_id: str,
        attempt_id: int,
        task: asyncio.Task[ScreenPop | None],
        started: float,
    ) -> None:
        self._ahead.pop(attempt_id, None)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("x attempt %s: screen pop not read: %s", attempt_id, exc)
            return
        pop = task.result()
        if pop is None:
            log.error("x attempt %s: no case to pop", attempt_id)
            return
        case = pop.to_json()
        # The agent's name in the script is theirs, whoever the prefetch was made for.
        case["script"] = pop.script_for(self.agent_name(agent_id))
        if self.push(agent_id, {"type": "pop", "case": case}):
            self.latencies_ms.append((time.perf_counter() - started) * 1000.0)
