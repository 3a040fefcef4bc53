"""Stopping one worker process: ask, then insist, then force — and always reap.

The escalation (shutdown message → grace → SIGTERM → wait → SIGKILL) is its own small function
so the rule is written once and reads top to bottom. It only ever *waits* on the exit future
(shielded), never cancels it: the reader thread reports the exit after reaping the process, so
when this returns the worker is gone, whatever happened to whoever awaited the stop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hivetray.pool.transport import WorkerLink


@dataclass
class Timing:
    """How long a stop may take at each step of the escalation."""

    grace_s: float = 5.0
    term_s: float = 5.0


async def stop_worker(link: WorkerLink, exited: asyncio.Future[Any], timing: Timing,
                      on_escalate: Callable[[str], None]) -> None:
    """Return once the process behind ``link`` has exited and been reaped."""
    link.send_control({"op": "shutdown"})
    if await _wait(exited, timing.grace_s):
        return
    on_escalate("SIGTERM")
    link.terminate()
    if await _wait(exited, timing.term_s):
        return
    on_escalate("SIGKILL")
    link.kill()
    await _wait(exited, None)  # SIGKILL cannot be ignored: this ends


async def _wait(future: asyncio.Future[Any], timeout: float | None) -> bool:
    """Wait for ``future`` without ever cancelling it; True when it completed."""
    try:
        await asyncio.wait_for(asyncio.shield(future), timeout)
    except TimeoutError:
        return False
    return True
