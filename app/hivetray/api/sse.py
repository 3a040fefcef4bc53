"""Server-sent events as OpenAI and llama-server frame them.

Each event is one ``data: <json>\\n\\n`` (compact JSON: newlines inside strings are escaped, so
an event is always a single ``data:`` line); a finished stream ends with ``data: [DONE]\\n\\n``;
an error after the headers were sent is one ``data: {"error": {...}}\\n\\n`` and no ``[DONE]``
(llama-server's ``format_oai_sse`` / ``format_error`` in tools/server, which the OpenAI
clients raise as an API error).
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from aiohttp import web

DONE = b"data: [DONE]\n\n"
HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    # a reverse proxy (nginx) must not hold chunks back
    "X-Accel-Buffering": "no",
}


def event(payload: dict[str, Any]) -> bytes:
    """One SSE event carrying ``payload`` as JSON."""
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return b"data: " + text.encode("utf-8") + b"\n\n"


class EventStream:
    """A ``text/event-stream`` response written event by event.

    Started only once the first chunk is there (see ``routes``): until then an error is still
    a plain HTTP error with its own status, which clients handle far better than an error
    event inside a 200 stream.
    """

    def __init__(self, request: web.Request, extra_headers: dict[str, str] | None = None
                 ) -> None:
        self.request = request
        self.response = web.StreamResponse(status=200, headers={**HEADERS,
                                                                **(extra_headers or {})})

    async def start(self) -> None:
        await self.response.prepare(self.request)

    async def send(self, payload: dict[str, Any]) -> None:
        await self.response.write(event(payload))

    async def finish(self) -> web.StreamResponse:
        await self.response.write(DONE)
        await self.response.write_eof()
        return self.response

    async def fail(self, error_body: dict[str, Any]) -> web.StreamResponse:
        """End the stream with an error event (``error_body`` is ``{"error": {...}}``); a
        client that already left is not an error of ours."""
        with contextlib.suppress(ConnectionResetError):
            await self.response.write(event(error_body))
            await self.response.write_eof()
        return self.response
