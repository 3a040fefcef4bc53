"""WorkerPool with real workers: shutdown escalation, quit, and the restart budget /
circuit breaker driven by real crashes (SIGKILLed workers).

Each test is a coroutine on its own event loop (pytest-asyncio), with a deadline: a stop that
never ends fails the test at 40 s instead of hanging the suite."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from hivetray.config import PoolConfig
from hivetray.errors import CircuitOpen, WorkerCrashed
from hivetray.pool.events import EventKind
from tests.helpers.realpool import PoolFactory, ask, crash_idle_worker, events, running, spawned
from tests.helpers.waiting import is_stopped, until

pytestmark = [pytest.mark.real, pytest.mark.asyncio, pytest.mark.timeout(40)]


@pytest.mark.parametrize(("faults", "signals"), [
    (frozenset({"ignore_shutdown"}), ["SIGTERM"]),
    (frozenset({"ignore_shutdown", "ignore_sigterm"}), ["SIGTERM", "SIGKILL"]),
])
async def test_shutdown_escalates_when_the_worker_does_not_exit(
        make_pool: PoolFactory, tiny_models: dict[str, Path], faults: frozenset[str],
        signals: list[str]) -> None:
    pool = make_pool(tiny_models["chat"], pool=PoolConfig(shutdown_grace_s=0.3), faults=faults)
    chat = pool.roles["chat"]
    chat.timing.term_s = 0.3
    await pool.start()
    await pool.call("chat", "chat", ask(2))
    pid = chat.pid
    assert pid is not None
    started = time.monotonic()
    await asyncio.wait_for(pool.shutdown(), 10)
    elapsed = time.monotonic() - started
    assert [e.data["signal"] for e in events(pool, EventKind.ESCALATE)] == signals
    assert 0.3 <= elapsed < 0.3 * len(signals) + 2.0
    assert chat.state == "stopped" and chat.pid is None
    assert not psutil.pid_exists(pid)  # our child, and reaped
    assert events(pool, EventKind.CRASH) == []


async def test_quit_with_idle_workers_leaves_no_process(
        make_pool: PoolFactory, tiny_models: dict[str, Path]) -> None:
    pool = make_pool(tiny_models["chat"])
    await pool.start()
    await pool.call("chat", "chat", ask(2))
    pid = pool.roles["chat"].pid
    assert pid is not None
    started = time.monotonic()
    await asyncio.wait_for(pool.shutdown(), 10)
    assert time.monotonic() - started < 1.0
    assert not psutil.pid_exists(pid)
    assert events(pool, EventKind.ESCALATE) == []
    assert pool.shutdown() is pool.shutdown()  # idempotent


async def test_quit_with_a_stopped_worker_continues_it_so_that_sigterm_ends_it(
        make_pool: PoolFactory, tiny_models: dict[str, Path]) -> None:
    """A stopped process (SIGSTOP, a debugger) acts on SIGTERM only once continued, so the
    stop sends SIGCONT after SIGTERM. The SIGTERM wait is 30 s here: only that SIGCONT can
    end the worker quickly, and without SIGKILL."""
    pool = make_pool(tiny_models["chat"], pool=PoolConfig(shutdown_grace_s=0.3))
    chat = pool.roles["chat"]
    chat.timing.term_s = 30.0
    await pool.start()
    await pool.call("chat", "chat", ask(2))
    pid, run = chat.pid, chat.run
    assert pid is not None and run is not None
    os.kill(pid, signal.SIGSTOP)
    await until(lambda: is_stopped(pid), 2.0, what="worker stopped")
    started = time.monotonic()
    try:
        await asyncio.wait_for(pool.shutdown(), 10)
    except TimeoutError:
        pytest.fail("the stopped worker outlived its SIGTERM by 10 s: it was not continued")
    # the grace, then SIGTERM ends it at once: far from the 30 s SIGKILL would need
    assert time.monotonic() - started < 0.3 + 2.0
    assert [e.data["signal"] for e in events(pool, EventKind.ESCALATE)] == ["SIGTERM"]
    assert run.exited.result() == -signal.SIGTERM
    assert not psutil.pid_exists(pid)
    assert chat.state == "stopped" and events(pool, EventKind.CRASH) == []


async def test_fourth_crash_opens_the_breaker_and_retry_resets_it(
        make_pool: PoolFactory, tiny_models: dict[str, Path]) -> None:
    pool = make_pool(tiny_models["chat"])
    chat = pool.roles["chat"]
    async with running(pool):
        for n in range(1, 4):
            await crash_idle_worker(pool)
            assert chat.state == "stopped" and chat.breaker.crashes_in_window() == n
        await crash_idle_worker(pool)
        assert chat.state == "cooling_down"
        assert len(events(pool, EventKind.BREAKER_OPEN)) == 1
        with pytest.raises(CircuitOpen) as caught:  # fails fast: no wait for the 60 s cooldown
            await asyncio.wait_for(pool.call("chat", "chat", ask()), 1.0)
        assert "crashed 4 times" in str(caught.value)
        assert "retrying in" in str(caught.value)
        assert len(spawned(pool)) == 4
        row = pool.role_snapshot(chat)
        assert row.state == "cooling_down" and row.crashes_in_window == 4
        assert row.retry_in_s is not None and 50 < row.retry_in_s <= 60
        pool.retry("chat")
        assert chat.state == "stopped" and chat.breaker.crashes_in_window() == 0
        result = await pool.call("chat", "chat", ask(3))
        assert result["usage"]["completion_tokens"] == 3 and chat.state == "ready"


async def test_after_the_cooldown_one_half_open_attempt_closes_the_breaker(
        make_pool: PoolFactory, tiny_models: dict[str, Path]) -> None:
    pool = make_pool(tiny_models["chat"], pool=PoolConfig(cooldown_s=1.0))
    chat = pool.roles["chat"]
    async with running(pool):
        for _ in range(4):
            await crash_idle_worker(pool)
        assert chat.state == "cooling_down"
        await until(lambda: chat.state == "stopped", 3.0, what="cooldown over")
        assert len(spawned(pool)) == 4  # the cooldown's end spawns nothing by itself
        result = await pool.call("chat", "chat", ask(3))
        assert result["usage"]["completion_tokens"] == 3
        assert len(events(pool, EventKind.BREAKER_CLOSED)) == 1
        assert chat.breaker.crashes_in_window() == 0 and chat.state == "ready"


async def test_a_crash_in_the_half_open_attempt_reopens_the_breaker(
        make_pool: PoolFactory, long_chat_model: Path) -> None:
    pool = make_pool(long_chat_model, n_ctx=4096, pool=PoolConfig(cooldown_s=1.0))
    chat = pool.roles["chat"]
    async with running(pool):
        for _ in range(4):
            await crash_idle_worker(pool)
        await until(lambda: chat.state == "stopped", 3.0, what="cooldown over")
        trial: int | None = None
        with pytest.raises(WorkerCrashed):  # the trial dies before it proves healthy
            async for _chunk in pool.stream("chat", "chat", ask(3000)):
                if trial is None:
                    trial = chat.pid
                    assert trial is not None
                    os.kill(trial, signal.SIGKILL)
        assert chat.state == "cooling_down"
        assert len(events(pool, EventKind.BREAKER_OPEN)) == 2
        assert events(pool, EventKind.BREAKER_CLOSED) == []
        with pytest.raises(CircuitOpen):
            await pool.call("chat", "chat", ask())
