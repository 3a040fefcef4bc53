"""The endpoints: thin handlers over the instance's methods (``chat``, ``embed``, ``rerank``,
``status``), the same ones the socket's commands call.

Each handler reads the body, lets ``openai_chat`` / ``openai_vectors`` check it and shape the
reply, and raises the pool's typed errors untouched: the error middleware maps them through the
one table (``http_errors``). A streamed reply sends its headers only once the first chunk is
there, so an error before it (breaker open, no model, context overflow) is still a real HTTP
status; the stream is closed (``aclosing``) however the handler ends — a client that
disconnects gets its handler cancelled by aiohttp, and the request is cancelled in the worker.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import AsyncGenerator, Mapping
from typing import Any, Protocol

from aiohttp import web

from hivetray.api import metrics
from hivetray.api.http_errors import BadField, error_reply
from hivetray.api.models import CHAT_ROLES, EMBED_ROLES, RERANK_ROLES, model_list, pick_role
from hivetray.api.openai_chat import ChatCall, Replies, finish_reason, parse_chat, parse_completion
from hivetray.api.openai_vectors import (
    embeddings_reply,
    parse_embeddings,
    parse_rerank,
    rerank_reply,
)
from hivetray.api.sse import EventStream
from hivetray.errors import HivetrayError, InternalError
from hivetray.images import ChatImage
from hivetray.ipc import MAX_REQUEST_DEPTH, deeper_than
from hivetray.pool.status import PoolStatus

log = logging.getLogger(__name__)


class ApiInstance(Protocol):
    """What the API needs of :class:`hivetray.instance.Instance`."""

    def status(self) -> PoolStatus: ...

    def chat(self, params: dict[str, Any], images: list[ChatImage] | None = None, *,
             role: str | None = None) -> AsyncGenerator[dict[str, Any], None]: ...

    async def embed(self, texts: list[str], *, normalize: bool = True) -> dict[str, Any]: ...

    async def rerank(self, query: str, documents: list[str],
                     top_n: int | None = None) -> dict[str, Any]: ...

    def crash_counts(self) -> Mapping[str, int]: ...


async def read_json(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object, or a 400 saying what is wrong with it (413 past the size
    limit comes from aiohttp and is mapped by the error middleware)."""
    raw = await request.read()
    try:
        body = json.loads(raw)
    except RecursionError:
        raise BadField("body", f"the body nests deeper than {MAX_REQUEST_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise BadField("body", f"the body is not valid JSON ({exc})") from None
    if not isinstance(body, dict):
        raise BadField("body", "the body must be a JSON object")
    if deeper_than(body, MAX_REQUEST_DEPTH):
        raise BadField("body", f"the body nests deeper than {MAX_REQUEST_DEPTH} levels")
    return body


def model_name(model: Any, role: str) -> str:
    """The ``model`` a reply names: what the client asked for, else the role."""
    return model if isinstance(model, str) and model else role


class Routes:
    """The handlers of one server, bound to its instance."""

    def __init__(self, instance: ApiInstance) -> None:
        self.instance = instance
        self.created = int(time.time())

    def add_to(self, app: web.Application) -> None:
        router = app.router
        router.add_get("/health", self.health)
        router.add_get("/v1/models", self.models)
        router.add_post("/v1/chat/completions", self.chat_completions)
        router.add_post("/v1/completions", self.completions)
        router.add_post("/v1/embeddings", self.embeddings)
        for path in ("/v1/rerank", "/rerank", "/v1/reranking"):
            router.add_post(path, self.rerank)
        router.add_get("/metrics", self.metrics)

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response(model_list(self.instance.status().roles, self.created))

    async def metrics(self, request: web.Request) -> web.Response:
        text = metrics.render(self.instance.status().roles, self.instance.crash_counts())
        return web.Response(body=text.encode("utf-8"),
                            headers={"Content-Type": metrics.CONTENT_TYPE})

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, parse_chat(await read_json(request)), False)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, parse_completion(await read_json(request)), True)

    async def embeddings(self, request: web.Request) -> web.Response:
        call = parse_embeddings(await read_json(request))
        role = pick_role(call.model, self.instance.status().roles, EMBED_ROLES)
        result = await self.instance.embed(call.texts)
        return web.json_response(embeddings_reply(call, model_name(call.model, role), result))

    async def rerank(self, request: web.Request) -> web.Response:
        call = parse_rerank(await read_json(request))
        role = pick_role(call.model, self.instance.status().roles, RERANK_ROLES)
        result = await self.instance.rerank(call.query, call.documents, call.top_n)
        return web.json_response(rerank_reply(call, model_name(call.model, role), result))

    async def _generate(self, request: web.Request, call: ChatCall,
                        text_completion: bool) -> web.StreamResponse:
        role = pick_role(call.model, self.instance.status().roles, CHAT_ROLES)
        name = model_name(call.model, role)
        if call.images and role != "vision":
            role = name = "vision"  # as on the socket: images are for the vision worker
        replies = Replies(name, text_completion=text_completion)
        stream = self.instance.chat(call.params, call.images, role=role)
        async with contextlib.aclosing(stream) as chunks:
            if not call.stream:
                texts: list[str] = []
                async for item in chunks:
                    if item.get("done"):
                        return web.json_response(replies.whole("".join(texts), item))
                    texts.append(item.get("text", ""))
                raise InternalError("the reply ended without a result")
            item = await anext(chunks)  # an error until here is a plain HTTP error
            events = EventStream(request)
            try:
                await events.start()
                if not text_completion:
                    await events.send(replies.chunk("", first=True))
                while not item.get("done"):
                    if item.get("text"):
                        await events.send(replies.chunk(item["text"]))
                    item = await anext(chunks)
                await events.send(replies.chunk(None, finish_reason(item)))
                if call.include_usage:
                    await events.send(replies.usage_chunk(item))
                return await events.finish()
            except HivetrayError as exc:  # after the headers: an error event ends the stream
                return await events.fail(error_reply(exc).body)
            except ConnectionResetError:  # the client left while we wrote: nobody to tell
                return events.response
            except Exception as exc:  # a bug, after the headers: logged, then an error event
                log.error("internal error in %s %s", request.method, request.path,
                          exc_info=exc)
                return await events.fail(error_reply(exc).body)
