"""An in-process OpenAI-compatible engine (aiohttp's test server) whose answers each test
scripts: for the remote link's logic tests (timeouts, 5xx, malformed SSE, 4xx mapping)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def sse(*events: Any) -> list[bytes]:
    return [b"data: " + (e if isinstance(e, bytes) else json.dumps(e).encode()) + b"\n\n"
            for e in events]


def delta(text: str) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}


FINISH = {"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}
USAGE = {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3}}


@dataclass
class FakeEngine:
    models: list[str] = field(default_factory=lambda: ["m1", "m2"])
    key: str | None = None
    stream: list[bytes] = field(default_factory=lambda: sse(
        delta("a"), delta("b"), delta("c"), FINISH, USAGE, b"[DONE]"))
    overrides: dict[str, Handler] = field(default_factory=dict)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    #: set when a streamed reply could not be written: the client closed the connection
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)
    #: a stream waits on this before its last events (a test cancels in between)
    hold: asyncio.Event | None = None
    server: TestServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/")

    async def __aenter__(self) -> FakeEngine:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._route)
        self.server = TestServer(app)
        await self.server.start_server()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        await self.server.close()

    async def _route(self, request: web.Request) -> web.StreamResponse:
        if request.path in self.overrides:
            return await self.overrides[request.path](request)
        if self.key and request.headers.get("Authorization") != f"Bearer {self.key}":
            return web.json_response({"error": {"message": "Invalid API Key"}}, status=401)
        if request.path == "/v1/models":
            return web.json_response({"object": "list",
                                      "data": [{"id": m, "object": "model"} for m in self.models]})
        if request.path == "/health":
            return web.json_response({"status": "ok"})
        if request.path == "/v1/chat/completions":
            self.bodies.append(await request.json())
            return await self._stream(request)
        return web.json_response({"error": {"message": "File Not Found"}}, status=404)

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            for n, event in enumerate(self.stream):
                if self.hold is not None and n == 1:
                    await self.hold.wait()
                await response.write(event)
        except (ConnectionError, asyncio.CancelledError):  # a write failed, or aiohttp
            self.disconnected.set()                         # cancelled us on the disconnect
            raise
        return response


def answer(status: int, body: Any) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        if isinstance(body, str):
            return web.Response(status=status, text=body)
        return web.json_response(body, status=status)
    return handler


def never() -> Handler:
    """A handler that never answers (until the test ends)."""
    async def handler(request: web.Request) -> web.StreamResponse:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")
    return handler
