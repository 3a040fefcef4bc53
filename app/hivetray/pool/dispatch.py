"""One request through a role's worker: bounded admission, streaming, and cancel on leave.

Kept apart from the state machine: this is the caller's side of a request. The supervisor
provides what it needs through :class:`Dispatcher` and stays the one place that changes state.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any, Protocol

from hivetray.errors import RequestCancelled, WorkerBusy
from hivetray.pool.requests import InFlight, PendingRequest
from hivetray.pool.worker_run import WorkerRun

#: requests waiting for (or being served by) one worker; past this, callers get WorkerBusy
MAX_QUEUED_REQUESTS = 64


class Dispatcher(Protocol):
    name: str
    in_flight: InFlight
    run: WorkerRun | None

    async def ensure_ready(self) -> None: ...

    def mark_busy(self, method: str) -> None: ...


async def stream_request(role: Dispatcher, method: str, params: dict[str, Any]
                         ) -> AsyncGenerator[dict[str, Any], None]:
    """Yield the worker's chunks, then a final ``{"done": True, **result}``.

    Leaving early (break, cancellation, closed connection) cancels the request in the worker;
    the request stays in flight until the worker confirms, so ``in_flight`` tells the truth and
    the idle reaper never stops a busy worker.
    """
    await role.ensure_ready()
    run = role.run
    assert run is not None
    if len(role.in_flight) >= MAX_QUEUED_REQUESTS:
        raise WorkerBusy(role.name, len(role.in_flight))
    req = role.in_flight.add(method)
    try:  # a payload too large, or too many bytes queued for the pipe, is refused here
        run.link.send({"type": "request", "id": req.id, "method": method, "params": params})
    except BaseException:
        role.in_flight.discard(req.id)
        raise
    role.mark_busy(method)
    finished = False
    try:
        while True:
            kind, payload = await req.queue.get()
            if kind == "chunk":
                yield payload
                continue
            finished = True
            if kind == "error":
                raise payload
            if kind == "cancelled":
                raise RequestCancelled("the request was cancelled")
            yield {"done": True, **(payload or {})}
            return
    finally:
        if not finished:
            cancel(role, req)


def cancel(role: Dispatcher, req: PendingRequest) -> None:
    """Ask the worker to stop ``req`` (once); it answers ``cancelled`` when it has."""
    if req.id in role.in_flight and not req.cancel_sent and role.run is not None:
        req.cancel_sent = True
        role.run.link.abort(req.id)
