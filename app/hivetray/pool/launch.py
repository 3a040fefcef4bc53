"""From a role's settings to a running worker: the file check off the loop, then the spawn.

Why apart from the supervisor: these are the mechanics (what is checked, where it runs, what a
worker is handed); the supervisor decides *when*, and what a failure means for the role.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from hivetray.config import RoleConfig
from hivetray.errors import InvalidModelFile, ModelLoadError
from hivetray.models.validate import check_role
from hivetray.pool.clock import Clock
from hivetray.pool.health import files_size, start_timeout_s
from hivetray.pool.logtail import log_size
from hivetray.pool.tasks import consume_exception, in_thread, wait_shielded
from hivetray.pool.transport import Spawner
from hivetray.pool.worker_run import RunOwner, RunSink, WorkerRun
from hivetray.workers.spec import WorkerSpec

#: (role, model, mmproj) -> anything, or raises ModelLoadError; injected so logic tests need
#: no model files
ModelCheck = Callable[[str, str | None, str | None], object]
#: runs a blocking function off the event loop (a thread in production, inline in unit tests)
BlockingRunner = Callable[[Callable[[], int]], Awaitable[int]]


class Launcher:
    def __init__(self, role: str, *, spawner: Spawner, clock: Clock, log_path: Path,
                 faults: frozenset[str] = frozenset(), validate_model: ModelCheck = check_role,
                 run_blocking: BlockingRunner = in_thread) -> None:
        self.role = role
        self.spawner = spawner
        self.clock = clock
        self.log_path = log_path
        self.faults = faults
        self.validate_model = validate_model
        self.run_blocking = run_blocking

    async def check(self, config: RoleConfig) -> int:
        """Check the role's files in a thread (a slow or huge header never stalls the loop);
        return the bytes a load will read. Any failure is a :class:`ModelLoadError`."""
        def check() -> int:
            self.validate_model(self.role, config.model, config.mmproj)
            return files_size(config.model, config.mmproj)

        try:
            return await self.run_blocking(check)
        except ModelLoadError:
            raise
        except Exception as exc:  # a bug in the check must not leave the role in starting
            raise InvalidModelFile(f"{config.model} could not be checked ({type(exc).__name__}:"
                                   f" {exc}); is it really a GGUF model?", config.model) from exc

    def spawn(self, config: RoleConfig, model_bytes: int, owner: RunOwner) -> WorkerRun:
        """Start a worker for ``config``; it is ``owner.run`` before its link starts, so every
        report of the link (through its :class:`RunSink`) is tied to it. Raises when the
        process cannot be created (the run is then closed and no longer the owner's)."""
        spec = WorkerSpec(self.role, config.model or "", config.mmproj, config.n_ctx,
                          config.n_threads, str(self.log_path), self.faults)
        link = self.spawner(spec)
        run = WorkerRun(link, asyncio.get_running_loop().create_future(),
                        log_size(self.log_path), self.clock.now(),
                        start_timeout_s(config.start_timeout_s, model_bytes))
        owner.run = run
        try:
            link.start(RunSink(owner, run))
        except BaseException:
            owner.run = None
            link.close()
            raise
        return run


class StartGate:
    """The single flight of a role's start: every caller that needs the worker awaits the one
    future of the current attempt, and a late result of an older attempt is recognised."""

    def __init__(self) -> None:
        self.attempt = 0
        self._future: asyncio.Future[None] | None = None

    def open(self) -> int:
        """A new attempt; its number, to tell later whether it is still the current one."""
        self.attempt += 1
        self._future = asyncio.get_running_loop().create_future()
        self._future.add_done_callback(consume_exception)  # a pinned start nobody awaits
        return self.attempt

    async def wait(self) -> None:
        assert self._future is not None
        await wait_shielded(self._future)

    def succeed(self) -> None:
        if self._future is not None and not self._future.done():
            self._future.set_result(None)

    def fail(self, error: BaseException) -> None:
        if self._future is not None and not self._future.done():
            self._future.set_exception(error)
