"""In-flight requests of one worker, keyed by request id.

Each request has a queue the supervisor feeds from the data channel. A request stays registered
until the worker says it is finished (result, error or cancelled), even if its caller has gone,
so ``in_flight`` always tells the truth about what the worker is doing.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any

#: a terminal item on a request queue
TERMINAL = frozenset({"result", "error", "cancelled"})
_ids = itertools.count(1)


def next_request_id() -> int:
    """Ids are unique per app process, so a late reply can never be taken for another's."""
    return next(_ids)


@dataclass
class PendingRequest:
    id: int
    method: str
    queue: asyncio.Queue[tuple[str, Any]] = field(default_factory=asyncio.Queue)
    cancel_sent: bool = False


class InFlight:
    def __init__(self) -> None:
        self._requests: dict[int, PendingRequest] = {}

    def __len__(self) -> int:
        return len(self._requests)

    def __contains__(self, request_id: int) -> bool:
        return request_id in self._requests

    def add(self, method: str) -> PendingRequest:
        req = PendingRequest(next_request_id(), method)
        self._requests[req.id] = req
        return req

    def deliver(self, request_id: int, kind: str, payload: Any) -> PendingRequest | None:
        """Queue an item for its request; terminal items unregister it. Unknown ids are ignored."""
        req = self._requests.get(request_id)
        if req is None:
            return None
        if kind in TERMINAL:
            del self._requests[request_id]
        req.queue.put_nowait((kind, payload))
        return req

    def discard(self, request_id: int) -> None:
        self._requests.pop(request_id, None)

    def fail_all(self, error: BaseException) -> int:
        """End every request with ``error`` (the worker is gone); return how many there were."""
        failed = list(self._requests.values())
        self._requests.clear()
        for req in failed:
            req.queue.put_nowait(("error", error))
        return len(failed)


@dataclass
class Usage:
    """What a role's workers have done since start-up, for ``status`` and the status window."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tokens_per_s: float | None = None
    load_s: float | None = None

    def record(self, kind: str, payload: Any) -> None:
        """Count one finished request; a result adds its token counts and speed."""
        self.requests += 1
        if kind != "result" or not isinstance(payload, dict):
            return
        usage = payload.get("usage") or {}
        self.prompt_tokens += int(usage.get("prompt_tokens") or 0)
        self.completion_tokens += int(usage.get("completion_tokens") or 0)
        if payload.get("tokens_per_s"):
            self.tokens_per_s = float(payload["tokens_per_s"])
