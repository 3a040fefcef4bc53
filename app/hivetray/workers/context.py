"""What a role handler sees of the request it serves, and what the runtime needs of a handler.

Its own module so the role modules (chat, vision, embed, rerank) and the runtime that loads them
both depend on it, and not on each other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


class RequestContext:
    """Emit chunks, check cancellation: one request's view of the worker."""

    def __init__(self, request_id: int, send: Callable[[dict[str, Any]], None],
                 cancelled: Callable[[], bool]) -> None:
        self.request_id = request_id
        self._send = send
        self.is_cancelled = cancelled

    def emit(self, chunk: dict[str, Any]) -> None:
        self._send({"type": "chunk", "id": self.request_id, "data": chunk})


class RoleHandler(Protocol):
    def handle(self, method: str, params: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        ...

    def info(self) -> dict[str, Any]:
        ...
