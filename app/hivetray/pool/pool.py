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

from hivetray import ROLES
from hivetray.config import Config
from hivetray.errors import InvalidRequest
from hivetray.models.validate import check_role
from hivetray.paths import AppPaths
from hivetray.pool.clock import Clock, MonotonicClock
from hivetray.pool.events import Event, EventKind, EventLog
from hivetray.pool.launch import BlockingRunner, ModelCheck
from hivetray.pool.memory import (
    Candidate,
    MemoryProbe,
    SystemMemory,
    measure,
    plan_admission,
    refusal,
)
from hivetray.pool.registry import NoRegistry, WorkerRegistry
from hivetray.pool.remote.access import display_url
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
                 run_blocking: BlockingRunner = in_thread, private: bool = False,
                 memory: MemoryProbe | None = None) -> None:
        self.config = config
        self.paths = paths
        self.private = private
        self.clock = clock or MonotonicClock()
        self.events = EventLog()
        self.tasks = TaskSet(self._task_failed)
        self.tick_s = tick_s
        self.run_blocking = run_blocking
        #: memory available now (asked before each spawn) and the workers' RSS (status too)
        self.memory: MemoryProbe = memory or SystemMemory()
        #: role → the start attempt admission let through, so memory promised to a worker that
        #: is still loading is not promised again to another role
        self._admitted: dict[str, int] = {}
        self.record = WorkerRecord(paths.workers_record)
        registry: WorkerRegistry = NoRegistry() if private else self.record
        self.roles: dict[str, RoleSupervisor] = {
            name: RoleSupervisor(
                name, config.role(name), config.pool, spawner=spawner or process_spawner,
                clock=self.clock, events=self.events, log_path=paths.worker_log(name),
                registry=registry, faults=faults, validate_model=validate_model,
                run_blocking=run_blocking, tasks=self.tasks, eager=not private,
                admit=self._admit)
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

    # -- memory admission (hivetray.pool.memory decides; this gathers facts and acts) --------
    async def _admit(self, name: str, needed: int) -> None:
        """Let role ``name``'s worker (needing ``needed`` bytes) be spawned: return at once if
        it fits, or after stopping idle roles to make room; raise InsufficientMemory if not.

        The probe and the RSS reads run off the loop; the plan is made after them on the loop,
        from the roles' state at that moment, and its stops are asked in the same step, so a
        role that became busy meanwhile is never stopped."""
        others = [role for role in self.roles.values() if role.name != name]
        try:
            available, rss = await self.run_blocking(lambda: measure(
                self.memory, [r.pid for r in others if r.pid is not None]))
        except Exception as exc:  # a probe that fails must not keep every role from starting
            self.events.emit(Event(EventKind.TASK_FAILED, name, f"{name}: the memory check "
                                   f"failed ({exc}); starting without it", level="warning"))
            return
        live = {r.name: rss.get(r.pid, 0) for r in others if r.pid is not None}
        candidates = [Candidate(r.name, live[r.name], r.last_used, r.config.pinned,
                                idle=r.state is RoleState.READY and not r.in_flight)
                      for r in others if r.name in live]
        reserved = sum(max(0, (r.launcher.mem_estimate or 0) - live.get(r.name, 0))
                       for r in others if r.state is RoleState.STARTING
                       and self._admitted.get(r.name) == r.start_gate.attempt)
        plan = plan_admission(needed, available, candidates, reserved=reserved)
        if not plan.fits:
            raise refusal(name, plan, live, self.roles[name].config.n_ctx)
        self._admitted[name] = self.roles[name].start_gate.attempt
        stops = [task for other in plan.stop
                 if (task := self.roles[other].stop(f"making room for {name}")) is not None]
        await asyncio.gather(*map(wait_shielded, stops))

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
            last_error=role.last_error, last_failure=role.last_failure,
            rss_bytes=self.memory.rss(role.pid) if role.pid is not None else None,
            requests=role.usage.requests, tokens_per_s=role.usage.tokens_per_s,
            prompt_tokens=role.usage.prompt_tokens,
            completion_tokens=role.usage.completion_tokens, load_s=role.usage.load_s,
            uptime_s=round(now - role.started_at, 1) if role.started_at is not None else None,
            pinned=role.config.pinned, mem_estimate_bytes=role.launcher.mem_estimate,
            sampling=role.config.sampling if role.name in SAMPLED_ROLES else None,
            engine=role.config.engine, url=display_url(role.config.url) if role.config.remote
            else None, rtt_ms=getattr(role.run.link, "rtt_ms", None) if role.run else None)
