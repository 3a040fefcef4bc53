"""Real workers frozen or killed while loading their model: the start deadline ends a frozen
load, a death by an outside signal is a crash within the budget, and the pool never waits for
ever on a worker that will not load."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from hivetray.config import PoolConfig
from hivetray.errors import WorkerCrashed
from hivetray.pool.events import EventKind
from tests.helpers.realpool import PoolFactory, events, run, running
from tests.helpers.waiting import process_gone, until

pytestmark = pytest.mark.real
HANG = frozenset({"hang_load"})


def test_a_worker_frozen_while_loading_is_killed_at_its_start_deadline(
        make_pool: PoolFactory, tiny_models: dict[str, Path]) -> None:
    pool = make_pool(tiny_models["chat"], faults=HANG, start_timeout_s=1.0)

    async def body() -> None:
        async with running(pool):
            chat = pool.roles["chat"]
            with pytest.raises(WorkerCrashed, match="did not finish loading within 1 s"):
                await asyncio.wait_for(pool.ensure_started("chat"), 15)
            pid = [int(e.data["pid"]) for e in events(pool, EventKind.SPAWN)][-1]
            assert process_gone(pid)
            assert chat.state == "stopped" and chat.breaker.crashes_in_window() == 1
            assert len(events(pool, EventKind.START_TIMEOUT)) == 1

    run(body())


def test_a_worker_stopped_while_loading_is_killed_at_its_start_deadline(
        make_pool: PoolFactory, tiny_models: dict[str, Path]) -> None:
    """SIGSTOP during the load (a stalled disk looks the same): no ping runs while starting,
    so only the deadline can end it."""
    pool = make_pool(tiny_models["chat"], faults=HANG, start_timeout_s=1.5)

    async def body() -> None:
        async with running(pool):
            chat = pool.roles["chat"]
            waiter = asyncio.ensure_future(pool.ensure_started("chat"))
            pid = await until(lambda: chat.pid, 10.0, what="worker spawned")
            os.kill(pid, signal.SIGSTOP)
            with pytest.raises(WorkerCrashed, match="did not finish loading"):
                await asyncio.wait_for(waiter, 15)
            assert process_gone(pid) and chat.state == "stopped"

    run(body())


def test_a_worker_sigkilled_while_loading_is_a_crash_not_an_error(
        make_pool: PoolFactory, tiny_models: dict[str, Path]) -> None:
    """What the OOM killer does: the model is fine, the next call tries again by itself."""
    pool = make_pool(tiny_models["chat"], faults=HANG, start_timeout_s=60.0,
                     pool=PoolConfig(shutdown_grace_s=0.5))

    async def body() -> None:
        async with running(pool):
            chat = pool.roles["chat"]
            waiter = asyncio.ensure_future(pool.ensure_started("chat"))
            first = await until(lambda: chat.pid, 10.0, what="worker spawned")
            os.kill(first, signal.SIGKILL)
            with pytest.raises(WorkerCrashed, match="killed by SIGKILL"):
                await asyncio.wait_for(waiter, 10)
            assert chat.state == "stopped" and chat.last_error is not None
            assert chat.breaker.crashes_in_window() == 1
            again = asyncio.ensure_future(pool.ensure_started("chat"))  # no retry needed
            second = await until(lambda: chat.pid, 10.0, what="worker spawned again")
            assert second != first and chat.state == "starting"
            again.cancel()
            await asyncio.gather(again, return_exceptions=True)

    run(body())


def test_the_breaker_opens_when_loads_keep_dying(
        make_pool: PoolFactory, tiny_models: dict[str, Path]) -> None:
    pool = make_pool(tiny_models["chat"], faults=HANG, start_timeout_s=60.0,
                     pool=PoolConfig(restart_budget=1, cooldown_s=60, shutdown_grace_s=1))

    async def body() -> None:
        async with running(pool):
            chat = pool.roles["chat"]
            for _ in range(2):
                waiter = asyncio.ensure_future(pool.ensure_started("chat"))
                pid = await until(lambda: chat.pid, 10.0, what="worker spawned")
                os.kill(pid, signal.SIGKILL)
                with pytest.raises(WorkerCrashed):
                    await asyncio.wait_for(waiter, 10)
            assert chat.state == "cooling_down" and chat.breaker.crashes_in_window() == 2

    run(body())
