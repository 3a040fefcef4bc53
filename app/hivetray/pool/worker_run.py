"""One worker process's lifetime, and the callbacks that are tied to it.

Why: a role outlives its workers. After a load error, a retry or a settings change can start a
new worker before the old process has exited; the old one's exit (or a late message) must then
be applied to the old worker, never to the new one — otherwise it would orphan the new worker,
count a phantom crash or ask for an illegal state change. So every spawn gets a
:class:`WorkerRun`, and its link reports through a :class:`RunSink` bound to that run: the
supervisor hears about the current run through its public callbacks and about older runs only
through :meth:`RunOwner.on_retired_exit`.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any, Protocol

from hivetray.pool.transport import WorkerLink

_generations = itertools.count(1)


@dataclass(eq=False)
class WorkerRun:
    """A spawned worker: its link, pid, exit report, and where its log began."""

    link: WorkerLink
    #: resolved (with the exit code) once the process has exited and been reaped
    exited: asyncio.Future[int | None]
    #: size of the worker log at spawn: a crash report quotes only this worker's lines
    log_offset: int
    #: clock time of the spawn, for the start deadline
    spawned_at: float
    #: seconds this worker may take to load before it is killed as stuck
    start_timeout_s: float
    generation: int = field(default_factory=lambda: next(_generations))
    pid: int | None = None
    #: set when Hivetray itself killed the worker (hung, start deadline): how it is reported
    kill_reason: str | None = None

    @property
    def alive(self) -> bool:
        return not self.exited.done()


class RunOwner(Protocol):
    """What a run reports to: the supervisor's callbacks for its current worker."""

    run: WorkerRun | None

    def on_started(self, pid: int) -> None: ...

    def on_spawn_failed(self, reason: str) -> None: ...

    def on_message(self, msg: dict[str, Any]) -> None: ...

    def on_control(self, msg: dict[str, Any]) -> None: ...

    def on_exit(self, exitcode: int | None) -> None: ...

    def on_retired_exit(self, run: WorkerRun, exitcode: int | None) -> None: ...


class RunSink:
    """The link's callbacks for one run: forwarded to the owner only while the run is current.

    Called on the loop thread (the link posts with ``call_soon_threadsafe``). The run's own
    bookkeeping (pid, exit future) is updated whatever happens, so a retired worker can still
    be signalled and its reap awaited.
    """

    def __init__(self, owner: RunOwner, run: WorkerRun) -> None:
        self.owner = owner
        self.run = run

    @property
    def current(self) -> bool:
        return self.owner.run is self.run

    def on_started(self, pid: int) -> None:
        self.run.pid = pid
        if self.current:
            self.owner.on_started(pid)

    def on_spawn_failed(self, reason: str) -> None:
        if self.current:
            self.owner.on_spawn_failed(reason)
        else:
            self._finish(None)

    def on_message(self, msg: dict[str, Any]) -> None:
        if self.current:
            self.owner.on_message(msg)

    def on_control(self, msg: dict[str, Any]) -> None:
        if self.current:
            self.owner.on_control(msg)

    def on_exit(self, exitcode: int | None) -> None:
        if self.current:
            self.owner.on_exit(exitcode)
        else:
            self._finish(exitcode)

    def _finish(self, exitcode: int | None) -> None:
        self.run.link.close()
        if not self.run.exited.done():
            self.run.exited.set_result(exitcode)
        self.owner.on_retired_exit(self.run, exitcode)
