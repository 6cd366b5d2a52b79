"""Background tasks that never die quietly: run, count failures, restart.

The control plane runs a few loops beside its servers (the folder watcher,
the learning loop, the rollout ticker). Each is started with
:meth:`Supervisor.spawn`, which hands the loop a :class:`TaskHealth` to
report each round's result on (``health(None)`` for a good round,
``health(exc)`` for a failed one). If the loop itself raises, the exception
is logged and counted the same way and the loop is started again after a
back-off (0.5 s doubling to 10 s), until the supervisor is stopped.

A task with ``FAILING_AFTER`` failures in a row is *failing*: ``/healthz``
answers 503 with its name and last error (a liveness probe then restarts a
process that cannot recover by itself), and ``skyroute status`` lists it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from skyroute.control.limits import clip
from skyroute.control.logs import event

log = logging.getLogger("skyroute.control.supervise")

FAILING_AFTER = 5


@dataclass(slots=True)
class TaskHealth:
    """One task's record: rounds, failures, the current streak and the last error."""

    name: str
    rounds: int = 0
    failures: int = 0
    restarts: int = 0
    in_a_row: int = 0
    last_error: str = ""
    failing_since_unix_ms: int = 0

    def __call__(self, error: BaseException | None) -> None:
        self.rounds += 1
        if error is None:
            self.in_a_row = 0
            self.failing_since_unix_ms = 0
            return
        self.failures += 1
        self.in_a_row += 1
        self.last_error = clip(repr(error))
        if self.in_a_row == 1:
            self.failing_since_unix_ms = int(time.time() * 1000)

    @property
    def failing(self) -> bool:
        return self.in_a_row >= FAILING_AFTER

    def as_dict(self) -> dict[str, object]:
        return {
            "rounds": self.rounds,
            "failures": self.failures,
            "restarts": self.restarts,
            "in_a_row": self.in_a_row,
            "failing": self.failing,
            "last_error": self.last_error,
            "failing_since_unix_ms": self.failing_since_unix_ms,
        }


Loop = Callable[[TaskHealth], Awaitable[None]]


class Supervisor:
    """Starts loops, restarts the ones that raise, and says which keep failing."""

    def __init__(self, stop: asyncio.Event, backoff_s: float = 0.5, max_backoff_s: float = 10.0):
        self.stop = stop
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.health: dict[str, TaskHealth] = {}
        self.tasks: list[asyncio.Task[None]] = []

    def spawn(self, name: str, loop: Loop) -> asyncio.Task[None]:
        health = self.health[name] = TaskHealth(name)
        task = asyncio.create_task(self._keep(health, loop), name=f"skyroute-{name}")
        self.tasks.append(task)
        return task

    async def _keep(self, health: TaskHealth, loop: Loop) -> None:
        backoff = self.backoff_s
        while not self.stop.is_set():
            try:
                await loop(health)
                return  # the loop saw stop and ended
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                health(exc)
                health.restarts += 1
                event(log, "task_crashed", logging.ERROR, task=health.name, error=repr(exc))
                log.debug("task %s crashed", health.name, exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), backoff)
            backoff = min(backoff * 2, self.max_backoff_s)

    def failing(self) -> list[str]:
        """``"name: last error"`` for each task failing now."""
        return [f"{h.name}: {h.last_error}" for h in self.health.values() if h.failing]

    async def join(self, timeout: float = 2.0) -> None:
        """After ``stop`` is set: wait for every task, cancelling the ones that linger."""
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=timeout)
