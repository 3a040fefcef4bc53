"""From a role's settings to a running worker: the file check off the loop, then the spawn.

Why apart from the supervisor: these are the mechanics (what is checked, where it runs, what a
worker is handed); the supervisor decides *when*, and what a failure means for the role.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from hivetray.config import RoleConfig
from hivetray.errors import InvalidModelFile, ModelLoadError
from hivetray.models.gguf_types import GGUFInfo
from hivetray.models.validate import check_role
from hivetray.pool.clock import Clock
from hivetray.pool.health import files_size, start_timeout_s
from hivetray.pool.logtail import log_size
from hivetray.pool.memory import Admit, MemoryEstimate, admit_always, estimate_worker_memory
from hivetray.pool.remote.link import RemoteLink
from hivetray.pool.tasks import consume_exception, in_thread, wait_shielded
from hivetray.pool.transport import Spawner
from hivetray.pool.worker_run import RunOwner, RunSink, WorkerRun
from hivetray.workers.spec import WorkerSpec

T = TypeVar("T")
#: (role, model, mmproj) -> the model's header (or anything else: then the memory estimate
#: knows only the files' size), or raises ModelLoadError; injected so logic tests need no files
ModelCheck = Callable[[str, str | None, str | None], object]


class BlockingRunner(Protocol):
    """Runs a blocking function off the event loop (a thread in production, inline in unit
    tests) and returns its result."""

    def __call__(self, fn: Callable[[], T], /) -> Awaitable[T]: ...


@dataclass(frozen=True)
class CheckedFiles:
    """What the check before a spawn learned: the bytes a load reads (for the start deadline)
    and what the worker will need in memory (for admission)."""

    model_bytes: int
    memory: MemoryEstimate


class Launcher:
    def __init__(self, role: str, *, spawner: Spawner, clock: Clock, log_path: Path,
                 faults: frozenset[str] = frozenset(), validate_model: ModelCheck = check_role,
                 run_blocking: BlockingRunner = in_thread, admit: Admit = admit_always) -> None:
        self.role = role
        self.spawner = spawner
        self.clock = clock
        self.log_path = log_path
        self.faults = faults
        self.validate_model = validate_model
        self.run_blocking = run_blocking
        self.admit = admit
        #: what the last check estimated a worker for the role's settings needs (None before
        #: any check, and after the settings changed)
        self.mem_estimate: int | None = None

    async def prepare(self, config: RoleConfig, wanted: Callable[[], bool]) -> CheckedFiles:
        """Check the files, then (if the start is still ``wanted``) pass memory admission,
        which may stop idle roles to make room. Raises :class:`ModelLoadError` or
        :class:`~hivetray.errors.InsufficientMemory`; the caller spawns only if still wanted."""
        if config.remote:  # nothing to read or hold here: the engine elsewhere does
            return CheckedFiles(0, MemoryEstimate(0, 0, 0, 0))
        checked = await self.check(config)
        if wanted():
            self.mem_estimate = checked.memory.total
            await self.admit(self.role, checked.memory.total)
        return checked

    async def check(self, config: RoleConfig) -> CheckedFiles:
        """Check the role's files in a thread (a slow or huge header never stalls the loop);
        return their size and the worker's memory estimate, computed there from the header the
        check read. Any failure is a :class:`ModelLoadError`."""
        def check() -> CheckedFiles:
            info = self.validate_model(self.role, config.model, config.mmproj)
            size = files_size(config.model, config.mmproj)
            header = info if isinstance(info, GGUFInfo) else None
            return CheckedFiles(size, estimate_worker_memory(self.role, header, config.n_ctx,
                                                             size))

        try:
            return await self.run_blocking(check)
        except ModelLoadError:
            raise
        except Exception as exc:  # a bug in the check must not leave the role in starting
            raise InvalidModelFile(f"{config.model} could not be checked ({type(exc).__name__}:"
                                   f" {exc}); is it really a GGUF model?", config.model) from exc

    def spawn(self, config: RoleConfig, model_bytes: int, owner: RunOwner) -> WorkerRun:
        """Start a worker (or, for a remote role, a :class:`RemoteLink`) for ``config``; it
        is ``owner.run`` before its link starts, so every report of the link (through its
        :class:`RunSink`) is tied to it. Raises when the
        process cannot be created (the run is then closed and no longer the owner's)."""
        spec = WorkerSpec(self.role, config.model or "", config.mmproj, config.n_ctx,
                          config.n_threads, str(self.log_path), self.faults)
        link = (RemoteLink(self.role, config, self.clock) if config.remote
                else self.spawner(spec))
        deadline = start_timeout_s(config.start_timeout_s or (
            config.timeout_s if config.remote else 0.0), model_bytes)
        run = WorkerRun(link, asyncio.get_running_loop().create_future(),
                        log_size(self.log_path), self.clock.now(), deadline)
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
