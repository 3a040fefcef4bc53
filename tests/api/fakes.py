"""A stand-in for the instance behind the API, for in-process server tests: it records what
the handlers asked, streams what the test says, and tells when its stream was closed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping
from typing import Any

from hivetray.images import ChatImage
from hivetray.pool.states import RoleState
from hivetray.pool.status import PoolStatus, RoleStatus


class FakeInstance:
    def __init__(self) -> None:
        self.roles = (RoleStatus("chat", RoleState.READY, model="/m/chat.gguf"),
                      RoleStatus("vision", RoleState.UNCONFIGURED),
                      RoleStatus("embed", RoleState.READY, model="/m/embed.gguf"),
                      RoleStatus("rerank", RoleState.UNCONFIGURED))
        self.calls: list[tuple[dict[str, Any], list[ChatImage] | None, str | None]] = []
        #: the chat stream sends its first chunk once this is set, the rest when ``finish``
        self.first = asyncio.Event()
        self.finish = asyncio.Event()
        self.first.set()
        self.closed = asyncio.Event()
        self.chunks_sent = 0

    def status(self) -> PoolStatus:
        return PoolStatus(1, self.roles)

    async def chat(self, params: dict[str, Any], images: list[ChatImage] | None = None, *,
                   role: str | None = None) -> AsyncGenerator[dict[str, Any], None]:
        self.calls.append((params, images, role))
        try:
            await self.first.wait()
            yield {"text": "Hel"}
            self.chunks_sent += 1
            await self.finish.wait()
            yield {"text": "lo"}
            yield {"done": True, "usage": {"prompt_tokens": 3, "completion_tokens": 2},
                   "finish_reason": "stop"}
        finally:
            self.closed.set()

    async def embed(self, texts: list[str], *, normalize: bool = True) -> dict[str, Any]:
        return {"embeddings": [[1.0, 0.0] for _ in texts], "truncated": [],
                "usage": {"prompt_tokens": len(texts)}}

    async def rerank(self, query: str, documents: list[str],
                     top_n: int | None = None) -> dict[str, Any]:
        rows = [{"index": i, "document": d, "score": float(-i)} for i, d in enumerate(documents)]
        return {"results": rows[:top_n] if top_n else rows, "truncated": []}

    def crash_counts(self) -> Mapping[str, int]:
        return {"chat": 1}
