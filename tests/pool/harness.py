"""Build a supervisor over fakes and drive it, for the unit tests of the state machine."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from hivetray.config import PoolConfig, RoleConfig
from hivetray.pool.events import Event, EventKind, EventLog
from hivetray.pool.role import RoleSupervisor
from hivetray.pool.states import RoleState
from tests.pool.fakes import FakeClock, FakeSpawner

T = TypeVar("T")


@dataclass
class Rig:
    role: RoleSupervisor
    spawner: FakeSpawner
    clock: FakeClock
    events: EventLog
    transitions: list[tuple[str, str]] = field(default_factory=list)

    def kinds(self, kind: EventKind) -> list[Event]:
        return [e for e in self.events.recent() if e.kind is kind]


def make_rig(tmp_path: Path, *, model: str | None = "/models/m.gguf", pinned: bool = False,
             idle_timeout_s: float = 60.0, pool: PoolConfig | None = None,
             exits_on: frozenset[str] = frozenset({"shutdown"})) -> Rig:
    clock = FakeClock()
    events = EventLog()
    spawner = FakeSpawner(exits_on)
    role = RoleSupervisor(
        "chat", RoleConfig(model=model, pinned=pinned, idle_timeout_s=idle_timeout_s),
        pool or PoolConfig(restart_budget=3, restart_window_s=60, cooldown_s=60,
                           health_interval_s=10, ping_timeout_s=5, shutdown_grace_s=0.05),
        spawner=spawner, clock=clock, events=events, log_path=tmp_path / "worker-chat.log",
        validate_model=lambda role, model, mmproj: None, run_blocking=inline)
    role.timing.term_s = 0.05
    rig = Rig(role, spawner, clock, events)
    events.subscribe(lambda e: rig.transitions.append((e.data["old"], e.data["new"]))
                     if e.kind is EventKind.STATE else None)
    return rig


async def inline(fn: Callable[[], T]) -> T:
    """The file check (and the memory probe) run in a thread in production; here they are
    instant and inline."""
    return fn()


#: scenarios run on a fake clock over fake workers and finish in milliseconds; one still running
#: after this long waits for something that never comes (a broken stop escalation, say)
SCENARIO_DEADLINE_S = 10.0


async def settle(rounds: int = 5) -> None:
    """Let callbacks scheduled with call_soon run (not a timed wait)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


async def start_ready(rig: Rig) -> None:
    """stopped → starting → ready through a real ``ensure_ready`` call."""
    waiter = asyncio.ensure_future(rig.role.ensure_ready())
    await settle()
    rig.spawner.last.ready()
    await waiter


@contextlib.asynccontextmanager
async def open_request(rig: Rig, method: str = "chat") -> AsyncIterator[
        tuple[asyncio.Task[list[dict[str, Any]]], int]]:
    """Start a streamed request in a task; yield it and its request id."""
    async def consume() -> list[dict[str, Any]]:
        return [chunk async for chunk in rig.role.stream(method, {})]

    task = asyncio.ensure_future(consume())
    await settle()
    try:
        yield task, rig.spawner.last.last_request_id
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def state(rig: Rig) -> RoleState:
    return rig.role.state
