"""Shared pieces of the real-worker pool tests: a pool factory fixture that cleans up after
itself, a long-context chat model, and small helpers for requests and events.

The root conftest registers these fixtures for every test module.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from hivetray.config import PoolConfig
from hivetray.paths import AppPaths
from hivetray.pool import WorkerPool
from hivetray.pool.events import Event, EventKind
from tests.conftest import make_config
from tests.helpers.waiting import kill_quietly, until

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


@pytest.fixture(scope="session")
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
