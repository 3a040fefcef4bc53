"""The worker pool: the roles, the ticker that runs health/cooldown/reaping, and shutdown.

Lifecycle: ``start()`` sweeps workers left by a crashed instance, starts the ticker and spawns
pinned roles (concurrently); requests spawn the others lazily; ``shutdown()`` stops every worker
with escalation and is idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncGenerator
from typing import Any

import psutil

from hivetray import ROLES
from hivetray.config import Config
from hivetray.errors import InvalidRequest
from hivetray.models.validate import check_role
from hivetray.paths import AppPaths
from hivetray.pool.clock import Clock, MonotonicClock
from hivetray.pool.events import Event, EventKind, EventLog
from hivetray.pool.launch import BlockingRunner, ModelCheck
from hivetray.pool.registry import NoRegistry, WorkerRegistry
from hivetray.pool.role import RoleSupervisor
from hivetray.pool.states import RoleState
from hivetray.pool.status import PoolStatus, RoleStatus
from hivetray.pool.sweep import WorkerRecord
from hivetray.pool.tasks import TaskSet, in_thread, wait_shielded
from hivetray.pool.transport import Spawner, process_spawner
from hivetray.sampling import SAMPLED_ROLES

log = logging.getLogger(__name__)


class WorkerPool:
    """The roles' supervisors, their ticker, and shutdown.

    ``private=True`` is a pool for one command's duration (a CLI command with no instance
    reachable, the self-test): it never sweeps, never writes the shared worker record and never
    starts pinned roles by itself, so it cannot disturb the home's owner or another private
    pool. Only the owner (``private=False``, created after the home's lock is held) does.
    """

    def __init__(self, config: Config, paths: AppPaths, *, spawner: Spawner | None = None,
                 clock: Clock | None = None, tick_s: float = 0.25,
                 faults: frozenset[str] = frozenset(),
                 validate_model: ModelCheck = check_role,
                 run_blocking: BlockingRunner = in_thread, private: bool = False) -> None:
        self.config = config
        self.paths = paths
        self.private = private
        self.clock = clock or MonotonicClock()
        self.events = EventLog()
        self.tasks = TaskSet(self._task_failed)
        self.tick_s = tick_s
        self.record = WorkerRecord(paths.workers_record)
        registry: WorkerRegistry = NoRegistry() if private else self.record
        self.roles: dict[str, RoleSupervisor] = {
            name: RoleSupervisor(
                name, config.role(name), config.pool, spawner=spawner or process_spawner,
                clock=self.clock, events=self.events, log_path=paths.worker_log(name),
                registry=registry, faults=faults, validate_model=validate_model,
                run_blocking=run_blocking, tasks=self.tasks, eager=not private)
            for name in ROLES
        }
        self._ticker: asyncio.Task[None] | None = None
        self._shutdown: asyncio.Task[None] | None = None

    def _task_failed(self, name: str, error: BaseException) -> None:
        self.events.emit(Event(EventKind.TASK_FAILED, None, f"{name} failed: {error}",
                               {"type": type(error).__name__}, level="error"))

    async def start(self) -> None:
        """Sweep leftovers (owner only), start the ticker, start pinned roles (all at once)."""
        self.paths.ensure()
        if not self.private:
            swept = await asyncio.to_thread(self.record.sweep_leftovers)
            if swept:
                self.events.emit(Event(EventKind.SWEEP, None, f"stopped {len(swept)} worker(s) "
                                       f"left by a previous instance: {swept}", {"pids": swept},
                                       level="warning"))
        self._ticker = asyncio.get_running_loop().create_task(self._tick_forever())
        for role in self.roles.values():
            if role.config.pinned and role.config.configured and not self.private:
                role.begin_start()

    def role(self, name: str) -> RoleSupervisor:
        try:
            return self.roles[name]
        except KeyError:
            raise InvalidRequest(f"unknown role {name!r}; roles are {', '.join(ROLES)}") from None

    # -- requests ---------------------------------------------------------------------------
    async def stream(self, role: str, method: str,
                     params: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        async with contextlib.aclosing(self.role(role).stream(method, params)) as chunks:
            async for chunk in chunks:
                yield chunk

    async def call(self, role: str, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Run a request to the end; chunks' text is joined into ``text``."""
        texts: list[str] = []
        async with contextlib.aclosing(self.role(role).stream(method, params)) as chunks:
            async for chunk in chunks:
                if chunk.get("done"):
                    return {"text": "".join(texts), **chunk}
                texts.append(chunk.get("text", ""))
        raise RuntimeError("stream ended without a result")  # pragma: no cover

    async def ensure_started(self, role: str) -> None:
        await self.role(role).ensure_ready()

    # -- ticker -------------------------------------------------------------------------------
    def tick(self) -> None:
        """One pass of cooldown expiry, health pings and idle reaping over every role."""
        for role in self.roles.values():
            role.expire_cooldown()
            role.health_tick()
            role.reap_if_idle()

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            try:
                self.tick()
            except Exception:  # the ticker must survive a bug in one role
                log.exception("pool tick failed")

    # -- intents ------------------------------------------------------------------------------
    def retry(self, role: str) -> None:
        self.role(role).retry()

    async def stop_role(self, role: str, reason: str = "stop asked") -> None:
        task = self.role(role).stop(reason)
        if task is not None:
            await wait_shielded(task)

    async def restart(self, role: str) -> None:
        supervisor = self.role(role)
        await self.stop_role(role, "restart asked")
        supervisor.retry()
        await supervisor.ensure_ready()

    async def pause_all(self) -> None:
        tasks = [t for r in self.roles.values() if (t := r.stop("pause all")) is not None]
        await asyncio.gather(*map(wait_shielded, tasks))

    def apply_config(self, config: Config) -> None:
        self.config = config
        for name, role in self.roles.items():
            role.apply_pool_config(config.pool)
            role.reconfigure(config.role(name))

    # -- shutdown -----------------------------------------------------------------------------
    def close_to_requests(self) -> None:
        """Quitting: take no new request and restart nothing (pinned roles included)."""
        for role in self.roles.values():
            role.closed = True

    def kill_all_now(self) -> None:
        """A second Ctrl-C: SIGKILL every worker without waiting (the app exits at once)."""
        for role in self.roles.values():
            for link in role.live_links():
                link.kill()

    def shutdown(self) -> asyncio.Task[None]:
        """Stop everything; idempotent: every call returns the same task."""
        if self._shutdown is None:
            self._shutdown = asyncio.get_running_loop().create_task(self._shutdown_sequence())
        return self._shutdown

    async def _shutdown_sequence(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        self.close_to_requests()
        tasks = [t for r in self.roles.values() for t in r.stop_all_workers("quit")]
        await asyncio.gather(*map(wait_shielded, tasks))
        await self.tasks.wait()  # starts still checking their files, settling config changes

    # -- status -------------------------------------------------------------------------------
    def snapshot(self) -> PoolStatus:
        """Every role's status now (``hivetray status``, the tray, the status window)."""
        return PoolStatus(os.getpid(), tuple(self.role_snapshot(r) for r in self.roles.values()))

    def role_snapshot(self, role: RoleSupervisor) -> RoleStatus:
        now = self.clock.now()
        retry_in = role.breaker.retry_in_s() if role.state is RoleState.COOLING_DOWN else None
        return RoleStatus(
            role=role.name, state=role.state, pid=role.pid, model=role.config.model,
            in_flight=len(role.in_flight), crashes_in_window=role.breaker.crashes_in_window(),
            retry_in_s=round(retry_in, 1) if retry_in is not None else None,
            last_error=role.last_error, rss_bytes=_rss(role.pid),
            requests=role.usage.requests, tokens_per_s=role.usage.tokens_per_s,
            prompt_tokens=role.usage.prompt_tokens,
            completion_tokens=role.usage.completion_tokens, load_s=role.usage.load_s,
            uptime_s=round(now - role.started_at, 1) if role.started_at is not None else None,
            pinned=role.config.pinned,
            sampling=role.config.sampling if role.name in SAMPLED_ROLES else None)


def _rss(pid: int | None) -> int | None:
    if pid is None:
        return None
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error:
        return None
