"""The pool's background tasks, with one owner.

Why: a task nobody keeps can be garbage-collected mid-flight, and its exception surfaces only as
"Task exception was never retrieved" long after the fact; shutdown cannot wait for what nobody
tracks. Every background task of the pool (a role's start, the stop of a replaced worker, the
settling after a config change, the UI's intents) is spawned here: a failure becomes an event
the user can see, and shutdown waits for whatever is still running.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
OnFailure = Callable[[str, BaseException], None]


class TaskSet:
    def __init__(self, on_failure: OnFailure | None = None) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._on_failure = on_failure or _log_failure

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self._on_failure(task.get_name(), error)

    async def wait(self) -> None:
        """Wait until every task (including ones spawned meanwhile) has ended; never cancels
        them, so a cancelled caller leaves them running to completion."""
        while self._tasks:
            await asyncio.shield(asyncio.gather(*self._tasks, return_exceptions=True))


def _log_failure(name: str, error: BaseException) -> None:
    log.error("background task %s failed: %s", name, error, exc_info=error)


async def in_thread(fn: Callable[[], T]) -> T:
    """Run a blocking function (a file check) off the event loop."""
    return await asyncio.to_thread(fn)


def consume_exception(future: asyncio.Future[Any]) -> None:
    """A done-callback for a future nobody may await (a pinned role's start): its exception
    is reported elsewhere and must not be logged as 'never retrieved'."""
    if not future.cancelled():
        future.exception()


async def wait_shielded(task: asyncio.Future[T]) -> T:
    """Await ``task`` without cancelling it if the awaiting coroutine is cancelled.

    The one place the "a stop always runs to the end" rule is written: callers that give up
    (a closed connection, a cancelled UI task) leave the stop or start running.
    """
    return await asyncio.shield(task)
