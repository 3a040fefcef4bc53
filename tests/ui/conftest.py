"""UI tests run offscreen (QT_QPA_PLATFORM=offscreen) over a pool with fake workers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hivetray.config import PoolConfig
from hivetray.paths import AppPaths
from hivetray.pool import WorkerPool
from tests.conftest import make_config
from tests.pool.fakes import FakeClock, FakeSpawner
from tests.pool.harness import inline


@dataclass
class PoolRig:
    pool: WorkerPool
    clock: FakeClock
    spawner: FakeSpawner
    loop: asyncio.AbstractEventLoop

    def run(self, coro):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(coro)

    def ready_chat(self) -> None:
        """Spawn the chat worker and make it ready."""
        role = self.pool.role("chat")

        async def go() -> None:
            waiter = asyncio.ensure_future(role.ensure_ready())
            for _ in range(5):
                await asyncio.sleep(0)
            self.spawner.last.ready()
            await waiter

        self.run(go())

    def crash_chat(self, times: int = 1) -> None:
        for _ in range(times):
            self.ready_chat()
            self.spawner.last.exit(-9)


@pytest.fixture
def pool_rig(home: AppPaths) -> Iterator[PoolRig]:
    loop = asyncio.new_event_loop()
    clock = FakeClock()
    spawner = FakeSpawner()
    config = make_config(Path("/models/chat.gguf"),
                         pool=PoolConfig(restart_budget=1, cooldown_s=60, shutdown_grace_s=0.05))
    pool = WorkerPool(config, home, spawner=spawner, clock=clock,
                      validate_model=lambda role, model, mmproj: None, run_blocking=inline)
    yield PoolRig(pool, clock, spawner, loop)
    loop.close()
