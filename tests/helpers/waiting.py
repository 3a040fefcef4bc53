"""Polling helpers for real-process tests: wait for a condition with a deadline, never a
fixed sleep, and tell whether a process is really gone."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable
from typing import TypeVar

import psutil

T = TypeVar("T")


def wait_until(cond: Callable[[], T], timeout: float, *, interval: float = 0.02,
               what: str = "condition") -> T:
    """Poll ``cond`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not met within {timeout:g} s (last value {value!r})")
        time.sleep(interval)


async def until(cond: Callable[[], T], timeout: float, *, interval: float = 0.01,
                what: str = "condition") -> T:
    """``wait_until`` for async tests: polls on the event loop so the pool keeps running."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = cond()
        if value:
            return value
        if loop.time() >= deadline:
            raise AssertionError(f"{what} not met within {timeout:g} s (last value {value!r})")
        await asyncio.sleep(interval)


def process_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs: it does not exist, or it is a zombie nobody reaped
    (an orphan re-parented to an init that does not reap)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def is_stopped(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_STOPPED
    except psutil.NoSuchProcess:
        return False


def kill_quietly(pid: int | None) -> None:
    """Cleanup net: SIGKILL ``pid`` if it still runs (works on stopped processes too)."""
    if pid is None or process_gone(pid):
        return
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)
