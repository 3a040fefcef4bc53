"""WorkerPool with real spawn-method workers running llama.cpp on tiny generated models.

Every test drives the pool on its own event loop (``asyncio.run``) and waits for conditions with
a deadline on that loop, so the pool's reader threads and ticker keep running while we wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import psutil
import pytest

from conftest import make_config
from helpers.waiting import is_stopped, kill_quietly, process_gone, until
from hivetray.config import PoolConfig
from hivetray.errors import CircuitOpen, ModelLoadError, RoleInError, WorkerCrashed
from hivetray.paths import AppPaths
from hivetray.pool import WorkerPool
from hivetray.pool.events import Event, EventKind

pytestmark = pytest.mark.real
T = TypeVar("T")
PoolFactory = Callable[..., WorkerPool]


def run(coro: Coroutine[Any, Any, T], timeout: float = 40.0) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def ask(max_tokens: int = 8, prompt: str = "hello") -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "temperature": 0.0}


def events(pool: WorkerPool, kind: EventKind) -> list[Event]:
    return [e for e in pool.events.recent() if e.kind == kind]


def spawned(pool: WorkerPool) -> list[int]:
    return [int(e.data["pid"]) for e in events(pool, EventKind.SPAWN)]


@pytest.fixture(scope="module")
def long_chat_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny chat model with a 4096 context: 3000 tokens take seconds, long enough to
    cancel or crash a generation in the middle."""
    from hivetray.devtools import tinymodels

    return tinymodels.write_chat_model(tmp_path_factory.mktemp("long") / "long.gguf",
                                       n_ctx=4096)


@pytest.fixture
def make_pool(home: AppPaths) -> Iterator[PoolFactory]:
    """Build pools in the test's home; afterwards SIGKILL any worker a failed test left."""
    pools: list[WorkerPool] = []

    def factory(model: Path, *, pool: PoolConfig | None = None,
                faults: frozenset[str] = frozenset(), tick_s: float = 0.05,
                **chat: object) -> WorkerPool:
        created = WorkerPool(make_config(model, pool=pool, **chat), home, tick_s=tick_s,
                             faults=faults)
        pools.append(created)
        return created

    yield factory
    for created in pools:
        for pid in spawned(created):
            kill_quietly(pid)


@contextlib.asynccontextmanager
async def running(pool: WorkerPool) -> AsyncIterator[WorkerPool]:
    await pool.start()
    try:
        yield pool
    finally:
        await asyncio.wait_for(pool.shutdown(), 20)


async def crash_idle_worker(pool: WorkerPool) -> int:
    """Spawn the chat worker with one call, SIGKILL it, wait until the pool noticed."""
    chat = pool.roles["chat"]
    await pool.call("chat", "chat", ask(2))
    pid = chat.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    await until(lambda: chat.pid is None and chat.state in ("stopped", "cooling_down"), 2.0,
                what="crash noticed")
    return pid


def test_lazy_spawn_then_the_same_worker_serves_every_call(
        make_pool: PoolFactory, tiny_models: dict[str, Path]) -> None:
    pool = make_pool(tiny_models["chat"])
    chat = pool.roles["chat"]

    async def body() -> None:
        async with running(pool):
            assert chat.state == "stopped" and chat.pid is None
            assert spawned(pool) == []
            first = await pool.call("chat", "chat", ask(6))
            pid = chat.pid
            assert pid is not None and first["usage"]["completion_tokens"] == 6
            proc = psutil.Process(pid)
            assert proc.ppid() == os.getpid()
            assert "multiprocessing.spawn" in " ".join(proc.cmdline())  # spawn start method
            second = await pool.call("chat", "chat", ask(4))
            assert second["usage"]["completion_tokens"] == 4
            assert chat.pid == pid
            assert spawned(pool) == [pid]
            assert chat.state == "ready" and chat.usage.requests == 2

    run(body())


def test_concurrent_first_calls_share_one_spawn(
        make_pool: PoolFactory, tiny_models: dict[str, Path]) -> None:
    pool = make_pool(tiny_models["chat"])

    async def body() -> None:
        async with running(pool):
            results = await asyncio.gather(*(pool.call("chat", "chat", ask(3 + i))
                                             for i in range(5)))
            assert [r["usage"]["completion_tokens"] for r in results] == [3, 4, 5, 6, 7]
            assert len(spawned(pool)) == 1
            assert pool.roles["chat"].usage.requests == 5

    run(body())


def test_stream_yields_chunks_then_done_with_usage(
        make_pool: PoolFactory, tiny_models: dict[str, Path]) -> None:
    pool = make_pool(tiny_models["chat"])

    async def body() -> None:
        async with running(pool):
            items = [item async for item in pool.stream("chat", "chat", ask(40))]
            *chunks, done = items
            assert len(chunks) >= 2  # the first token at once, then batches
            assert all(set(c) == {"text"} and c["text"] for c in chunks)
            assert done["done"] is True and done["finish_reason"] == "length"
            assert done["usage"]["completion_tokens"] == 40
            assert done["usage"]["prompt_tokens"] > 0
            usage = pool.roles["chat"].usage
            assert usage.completion_tokens == 40 and (usage.tokens_per_s or 0) > 0

    run(body())


def test_leaving_a_stream_cancels_it_and_the_worker_serves_on(
        make_pool: PoolFactory, long_chat_model: Path) -> None:
    pool = make_pool(long_chat_model, n_ctx=4096)
    chat = pool.roles["chat"]

    async def body() -> None:
        async with running(pool):
            got = 0
            async for _chunk in pool.stream("chat", "chat", ask(3000)):
                got += 1
                if got == 2:
                    break
            left = time.monotonic()
            assert len(chat.in_flight) == 1  # still in flight until the worker confirms
            pid = chat.pid
            await until(lambda: len(chat.in_flight) == 0, 2.0, what="cancel confirmed")
            assert time.monotonic() - left < 0.5  # 3000 tokens would take seconds
            await until(lambda: chat.state == "ready", 1.0)
            assert chat.usage.completion_tokens == 0  # the cancelled run is not counted
            after = await pool.call("chat", "chat", ask(5))
            assert after["usage"]["completion_tokens"] == 5
            assert chat.pid == pid and len(spawned(pool)) == 1

    run(body())


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_worker_dying_while_idle_is_noticed_within_a_second(
        make_pool: PoolFactory, tiny_models: dict[str, Path], sig: signal.Signals) -> None:
    pool = make_pool(tiny_models["chat"])
    chat = pool.roles["chat"]

    async def body() -> None:
        async with running(pool):
            await pool.call("chat", "chat", ask(2))
            assert chat.state == "ready" and chat.pid is not None
            os.kill(chat.pid, sig)
            await until(lambda: chat.state != "ready", 1.0, what="idle death noticed")
            assert chat.state == "stopped" and chat.pid is None
            assert chat.last_error is not None and sig.name in chat.last_error
            assert chat.breaker.crashes_in_window() == 1
            (crash,) = events(pool, EventKind.CRASH)
            assert crash.data["exitcode"] == -sig

    run(body())


def test_a_crash_during_a_request_fails_it_with_worker_crashed(
        make_pool: PoolFactory, long_chat_model: Path, home: AppPaths) -> None:
    pool = make_pool(long_chat_model, n_ctx=4096)
    chat = pool.roles["chat"]

    async def body() -> None:
        async with running(pool):
            pid = None
            with pytest.raises(WorkerCrashed) as caught:
                async for _chunk in pool.stream("chat", "chat", ask(3000)):
                    if pid is None:
                        pid = chat.pid
                        assert pid is not None
                        os.kill(pid, signal.SIGKILL)
            error = caught.value
            message = str(error)
            log_path = str(home.worker_log("chat"))
            assert "chat worker" in message and "SIGKILL" in message and log_path in message
            assert error.exitcode == -signal.SIGKILL and error.log_path == log_path
            assert f"hivetray chat worker pid {pid} starting" in error.log_tail
            assert error.log_tail in message
            assert len(chat.in_flight) == 0 and chat.state == "stopped"

    run(body())


def test_native_abort_at_load_is_an_error_not_a_crash_loop(
        make_pool: PoolFactory, tiny_models: dict[str, Path], home: AppPaths) -> None:
    pool = make_pool(tiny_models["crash"])
    chat = pool.roles["chat"]

    async def body() -> None:
        async with running(pool):
            with pytest.raises(WorkerCrashed) as caught:
                await pool.call("chat", "chat", ask())
            assert "SIGABRT" in str(caught.value)
            assert chat.state == "error"
            assert chat.last_error is not None
            assert "SIGABRT" in chat.last_error and "while loading" in chat.last_error
            assert str(home.worker_log("chat")) in chat.last_error
            with pytest.raises(RoleInError, match="SIGABRT"):
                await pool.call("chat", "chat", ask())
            for _ in range(6):  # let the ticker run: nothing may respawn the worker
                await asyncio.sleep(pool.tick_s)
            assert chat.state == "error" and len(spawned(pool)) == 1

    run(body())


def test_native_abort_report_shows_llama_cpp_assertion(
        make_pool: PoolFactory, tiny_models: dict[str, Path]) -> None:
    """The crash report's log tail must show why llama.cpp aborted (its GGML_ASSERT line),
    not only a debugger backtrace that pushed it out of the last 4 KiB."""
    pool = make_pool(tiny_models["crash"])

    async def body() -> None:
        async with running(pool):
            with pytest.raises(WorkerCrashed) as caught:
                await pool.call("chat", "chat", ask())
            assert "GGML_ASSERT" in caught.value.log_tail

    run(body())


def test_a_random_bytes_model_is_an_error_with_llama_cpp_reason(
        make_pool: PoolFactory, tiny_models: dict[str, Path]) -> None:
    pool = make_pool(tiny_models["random"])
    chat = pool.roles["chat"]

    async def body() -> None:
        async with running(pool):
            with pytest.raises(ModelLoadError) as caught:
                await pool.call("chat", "chat", ask())
            message = str(caught.value)
            assert str(tiny_models["random"]) in message
            assert "invalid magic" in message  # llama.cpp's own reason, not just "failed"
            assert chat.state == "error" and chat.last_error == message
            await until(lambda: chat.pid is None, 2.0, what="worker exited after load error")
            assert events(pool, EventKind.CRASH) == []
            assert chat.breaker.crashes_in_window() == 0 and len(spawned(pool)) == 1

    run(body())


def test_a_hung_worker_fails_its_health_ping_and_is_killed(
        make_pool: PoolFactory, tiny_models: dict[str, Path]) -> None:
    pool = make_pool(tiny_models["chat"],
                     pool=PoolConfig(health_interval_s=0.2, ping_timeout_s=0.5))
    chat = pool.roles["chat"]

    async def body() -> None:
        async with running(pool):
            await pool.call("chat", "chat", ask(2))
            pid = chat.pid
            assert pid is not None
            await until(lambda: chat.breaker.crashes_in_window() == 0
                        and chat._ping_seq >= 1 and chat._ping_sent_at is None, 2.0,
                        what="a first ping answered")
            os.kill(pid, signal.SIGSTOP)
            await until(lambda: events(pool, EventKind.PING_TIMEOUT), 3.0, what="ping timeout")
            await until(lambda: chat.state == "stopped", 2.0, what="hung worker killed")
            assert process_gone(pid)
            assert chat.breaker.crashes_in_window() == 1
            assert chat.last_error is not None and "health ping" in chat.last_error
            assert len(events(pool, EventKind.CRASH)) == 1

    run(body())


@pytest.mark.parametrize(("faults", "signals"), [
    (frozenset({"ignore_shutdown"}), ["SIGTERM"]),
    (frozenset({"ignore_shutdown", "ignore_sigterm"}), ["SIGTERM", "SIGKILL"]),
])
def test_shutdown_escalates_when_the_worker_does_not_exit(
        make_pool: PoolFactory, tiny_models: dict[str, Path], faults: frozenset[str],
        signals: list[str]) -> None:
    pool = make_pool(tiny_models["chat"], pool=PoolConfig(shutdown_grace_s=0.3), faults=faults)
    chat = pool.roles["chat"]
    chat.timing.term_s = 0.3

    async def body() -> None:
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

    run(body())


def test_quit_with_idle_workers_leaves_no_process(
        make_pool: PoolFactory, tiny_models: dict[str, Path]) -> None:
    pool = make_pool(tiny_models["chat"])

    async def body() -> None:
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

    run(body())


def test_quit_with_a_stopped_worker_completes(
        make_pool: PoolFactory, tiny_models: dict[str, Path]) -> None:
    pool = make_pool(tiny_models["chat"], pool=PoolConfig(shutdown_grace_s=0.3))
    pool.roles["chat"].timing.term_s = 0.3

    async def body() -> None:
        await pool.start()
        await pool.call("chat", "chat", ask(2))
        pid = pool.roles["chat"].pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        assert is_stopped(pid)
        await asyncio.wait_for(pool.shutdown(), 0.3 + 0.3 + 3)
        assert [e.data["signal"] for e in events(pool, EventKind.ESCALATE)] == [
            "SIGTERM", "SIGKILL"]
        assert not psutil.pid_exists(pid)

    run(body())


def test_fourth_crash_opens_the_breaker_and_retry_resets_it(
        make_pool: PoolFactory, tiny_models: dict[str, Path]) -> None:
    pool = make_pool(tiny_models["chat"])
    chat = pool.roles["chat"]

    async def body() -> None:
        async with running(pool):
            for n in range(1, 4):
                await crash_idle_worker(pool)
                assert chat.state == "stopped" and chat.breaker.crashes_in_window() == n
            await crash_idle_worker(pool)
            assert chat.state == "cooling_down"
            assert len(events(pool, EventKind.BREAKER_OPEN)) == 1
            started = time.monotonic()
            with pytest.raises(CircuitOpen) as caught:
                await pool.call("chat", "chat", ask())
            assert time.monotonic() - started < 0.1  # fails fast, no spawn
            assert "crashed 4 times" in str(caught.value)
            assert "retrying in" in str(caught.value)
            assert len(spawned(pool)) == 4
            row = pool.role_snapshot(chat)
            assert row["state"] == "cooling_down" and row["crashes_in_window"] == 4
            assert 50 < row["retry_in_s"] <= 60
            pool.retry("chat")
            assert chat.state == "stopped" and chat.breaker.crashes_in_window() == 0
            result = await pool.call("chat", "chat", ask(3))
            assert result["usage"]["completion_tokens"] == 3 and chat.state == "ready"

    run(body())


def test_after_the_cooldown_one_half_open_attempt_closes_the_breaker(
        make_pool: PoolFactory, tiny_models: dict[str, Path]) -> None:
    pool = make_pool(tiny_models["chat"], pool=PoolConfig(cooldown_s=1.0))
    chat = pool.roles["chat"]

    async def body() -> None:
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

    run(body())


def test_a_crash_in_the_half_open_attempt_reopens_the_breaker(
        make_pool: PoolFactory, long_chat_model: Path) -> None:
    pool = make_pool(long_chat_model, n_ctx=4096, pool=PoolConfig(cooldown_s=1.0))
    chat = pool.roles["chat"]

    async def body() -> None:
        async with running(pool):
            for _ in range(4):
                await crash_idle_worker(pool)
            await until(lambda: chat.state == "stopped", 3.0, what="cooldown over")
            with pytest.raises(WorkerCrashed):  # the trial dies before it proves healthy
                async for _chunk in pool.stream("chat", "chat", ask(3000)):
                    assert chat.pid is not None
                    os.kill(chat.pid, signal.SIGKILL)
            assert chat.state == "cooling_down"
            assert len(events(pool, EventKind.BREAKER_OPEN)) == 2
            assert events(pool, EventKind.BREAKER_CLOSED) == []
            with pytest.raises(CircuitOpen):
                await pool.call("chat", "chat", ask())

    run(body())
