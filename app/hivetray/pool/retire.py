"""Workers a role no longer counts as its own, still being stopped.

A worker that reported a load error, or one replaced before it had exited, is stopped aside
with the usual escalation; the role's state does not change for it. Quit must still wait for
every such process, so they are kept here until reaped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from hivetray.pool.shutdown import Timing, stop_worker
from hivetray.pool.tasks import TaskSet, wait_shielded
from hivetray.pool.worker_run import WorkerRun


class Retirement:
    def __init__(self, tasks: TaskSet, timing: Timing, name: str,
                 on_escalate: Callable[[str], None]) -> None:
        self._tasks = tasks
        self._timing = timing
        self._name = name
        self._on_escalate = on_escalate
        self._stopping: dict[WorkerRun, asyncio.Task[None]] = {}

    def __bool__(self) -> bool:
        return bool(self._stopping)

    def retire(self, run: WorkerRun) -> asyncio.Task[None]:
        """Stop ``run`` (once, however often asked); the task ends when it is reaped."""
        task = self._stopping.get(run)
        if task is None:
            task = self._tasks.spawn(stop_worker(run.link, run.exited, self._timing,
                                                 self._on_escalate), f"retire-{self._name}")
            self._stopping[run] = task
            task.add_done_callback(lambda _t: self._stopping.pop(run, None))
        return task

    def stops(self) -> list[asyncio.Task[None]]:
        return list(self._stopping.values())

    def links(self) -> list[Any]:
        return [run.link for run in self._stopping if run.alive]

    async def wait(self) -> None:
        await asyncio.gather(*map(wait_shielded, self.stops()))
