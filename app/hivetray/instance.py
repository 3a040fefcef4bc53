"""The running instance: the pool, the config and the command handlers behind the socket.

The same :class:`Instance` serves three ways: the tray app and ``hivetray daemon`` put it behind
the socket; a CLI command with no instance running calls ``handle`` in-process on a private pool.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hivetray import ROLES, ipc
from hivetray.config import Config, load_config
from hivetray.errors import InvalidImage, InvalidRequest, PayloadTooLarge
from hivetray.homelock import HomeLock
from hivetray.images import sniff_image_type
from hivetray.models.builtin import with_builtin_chat
from hivetray.paths import AppPaths
from hivetray.pool import WorkerPool
from hivetray.workers.spec import MAX_PAYLOAD_BYTES

log = logging.getLogger(__name__)


@dataclass
class UiHooks:
    """What the desktop UI adds to the instance; the daemon has none."""

    toggle_chat: Callable[[], None] | None = None
    show_status: Callable[[], None] | None = None


def chat_params(prompt: str, max_tokens: int | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"messages": [{"role": "user", "content": prompt}]}
    if max_tokens:
        params["max_tokens"] = max_tokens
    return params


def wire_image(name: str, data: bytes) -> dict[str, Any]:
    """An image as it travels in a JSON request (``images`` list of ``cmd_chat``)."""
    return {"name": name, "data_b64": base64.b64encode(data).decode("ascii")}


def decode_images(raw: Any) -> list[dict[str, Any]]:
    """Wire images → ``{"name", "data": bytes}``; refuse oversized and non-image data at once,
    naming the file, before any worker is involved (the worker decodes them fully)."""
    if not raw:
        return []
    if not isinstance(raw, list):
        raise InvalidRequest("'images' must be a list")
    images: list[dict[str, Any]] = []
    for n, item in enumerate(raw):
        if not isinstance(item, dict):
            raise InvalidRequest("each image must be an object with 'name' and 'data_b64'")
        name = str(item.get("name") or f"image {n + 1}")
        data = item.get("data")  # bytes, from the app itself (quick chat)
        if not isinstance(data, bytes | bytearray):
            encoded = item.get("data_b64") or ""  # from the socket: base64 text
            if not isinstance(encoded, str):
                raise InvalidImage(name, "'data_b64' must be base64 text")
            try:
                data = base64.b64decode(encoded, validate=True)
            except ValueError:
                raise InvalidImage(name, "the image data is not valid base64") from None
        data = bytes(data)
        if len(data) > MAX_PAYLOAD_BYTES:
            raise PayloadTooLarge(len(data), MAX_PAYLOAD_BYTES)
        if sniff_image_type(data) is None:
            kind = "it is empty" if not data else "its content is not PNG, JPEG, WebP, GIF or BMP"
            raise InvalidImage(name, kind)
        images.append({"name": name, "data": data})
    return images


def _strings(value: Any, problem: str) -> list[str]:
    """A non-empty list of strings from a request, or InvalidRequest saying what is wanted."""
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise InvalidRequest(problem)
    return value


class Instance:
    """The home's owner (``private=False``: holds the home's lock, sweeps, listens), or a
    private pool for one command (``private=True``: no lock, no sweep, no socket)."""

    def __init__(self, paths: AppPaths, config: Config, *, pool: WorkerPool | None = None,
                 hooks: UiHooks | None = None, private: bool = False,
                 lock: HomeLock | None = None) -> None:
        self.paths = paths
        self.config = config
        self.private = private
        self.lock = lock or HomeLock(paths)
        self.pool = pool or WorkerPool(with_builtin_chat(config, paths), paths, private=private)
        self.hooks = hooks or UiHooks()
        self.quit_requested = asyncio.Event()
        self._server: ipc.Server | None = None

    async def start(self) -> None:
        """Owner: take the home's lock first (AlreadyRunning if another instance has it), then
        sweep and start the pool, then listen. Private: only start the pool."""
        if not self.private:
            self.lock.acquire(self.paths.socket_path)
        await self.pool.start()
        if not self.private:
            self._server = await ipc.serve(self.paths.socket_path, self.handle)
            log.info("listening on %s (pid %d)", self.paths.socket_path, os.getpid())

    async def close(self) -> None:
        """Stop listening, stop every worker, release the home; safe to call more than once."""
        await self.pool.shutdown()
        if self._server is not None:
            server, self._server = self._server, None
            await server.close()
        self.lock.release()

    async def handle(self, request: dict[str, Any], reply: ipc.Reply) -> Any:
        cmd = request.get("cmd")
        handler = getattr(self, f"cmd_{str(cmd).replace('-', '_')}", None)
        if handler is None:
            raise InvalidRequest(f"unknown command {cmd!r}")
        return await handler(request, reply)

    # -- commands -------------------------------------------------------------------------------
    async def cmd_ping(self, request: dict[str, Any], reply: ipc.Reply) -> Any:
        return {"pid": os.getpid()}

    async def cmd_status(self, request: dict[str, Any], reply: ipc.Reply) -> Any:
        return self.pool.snapshot()

    async def cmd_chat(self, request: dict[str, Any], reply: ipc.Reply) -> Any:
        """Stream a reply; a request with ``images`` goes to the vision worker."""
        raw_params = request.get("params") or {}
        if not isinstance(raw_params, dict):
            raise InvalidRequest("chat needs 'params': an object with 'messages'")
        params = dict(raw_params)
        images = decode_images(request.get("images") or params.pop("images", None))
        role = "chat"
        if images:
            role, params["images"] = "vision", images
        async for chunk in self.pool.stream(role, "chat", params):
            if chunk.get("done"):
                return {k: v for k, v in chunk.items() if k != "done"}
            await reply(chunk)
        return None

    async def cmd_embed(self, request: dict[str, Any], reply: ipc.Reply) -> Any:
        """``{"texts": [...]}`` → ``{"embeddings": [[...], ...], "truncated": [...]}``."""
        texts = _strings(request.get("texts"), "embed needs 'texts': a non-empty list of "
                                               "strings")
        result = await self.pool.call("embed", "embed", {
            "texts": texts, "normalize": bool(request.get("normalize", True))})
        return {"embeddings": result["embeddings"], "truncated": result.get("truncated", [])}

    async def cmd_rerank(self, request: dict[str, Any], reply: ipc.Reply) -> Any:
        """``{"query", "documents", "top_n"?}`` → results sorted by score, best first."""
        query = request.get("query")
        if not isinstance(query, str):
            raise InvalidRequest("rerank needs 'query': a string")
        documents = _strings(request.get("documents"), "rerank needs 'documents': a non-empty "
                                                       "list of strings")
        result = await self.pool.call("rerank", "rerank",
                                      {"query": query, "documents": documents})
        results = sorted(
            ({"index": i, "document": doc, "score": score}
             for i, (doc, score) in enumerate(zip(documents, result["scores"], strict=True))),
            key=lambda row: -row["score"])
        top_n = request.get("top_n")
        if top_n is not None and (not isinstance(top_n, int) or isinstance(top_n, bool)):
            raise InvalidRequest("'top_n' must be a whole number")
        if top_n is not None and top_n > 0:
            results = results[:top_n]
        return {"results": results, "truncated": result.get("truncated", [])}

    def _role_arg(self, request: dict[str, Any]) -> str:
        role = request.get("role")
        if role not in ROLES:
            raise InvalidRequest(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
        return str(role)

    async def cmd_retry(self, request: dict[str, Any], reply: ipc.Reply) -> Any:
        role = self._role_arg(request)
        self.pool.retry(role)
        return self.pool.role_snapshot(self.pool.role(role))

    async def cmd_restart(self, request: dict[str, Any], reply: ipc.Reply) -> Any:
        role = self._role_arg(request)
        await self.pool.restart(role)
        return self.pool.role_snapshot(self.pool.role(role))

    async def cmd_stop(self, request: dict[str, Any], reply: ipc.Reply) -> Any:
        role = self._role_arg(request)
        await self.pool.stop_role(role)
        return self.pool.role_snapshot(self.pool.role(role))

    async def cmd_events(self, request: dict[str, Any], reply: ipc.Reply) -> Any:
        limit, role = request.get("limit") or 200, request.get("role")
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            raise InvalidRequest("'limit' must be a whole number")
        if role is not None and role not in ROLES:
            raise InvalidRequest(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
        return [e.to_dict() for e in self.pool.events.recent(limit, role)]

    async def cmd_reload(self, request: dict[str, Any], reply: ipc.Reply) -> Any:
        """Re-read config.toml (after ``hivetray models set`` or a hand edit) and apply it."""
        result = load_config(self.paths.config_file)
        self.config = result.config
        self.pool.apply_config(with_builtin_chat(result.config, self.paths))
        return {"warnings": result.warnings}

    async def cmd_quit(self, request: dict[str, Any], reply: ipc.Reply) -> Any:
        """Stop every worker, then answer; the process exits right after."""
        await self.pool.shutdown()
        self.quit_requested.set()
        return {"stopped": True}

    async def cmd_toggle_chat(self, request: dict[str, Any], reply: ipc.Reply) -> Any:
        if self.hooks.toggle_chat is None:
            raise InvalidRequest("this instance has no quick-chat window (it runs as "
                                 "`hivetray daemon`); start the tray app with `hivetray`")
        self.hooks.toggle_chat()
        return {"toggled": True}

    async def cmd_show(self, request: dict[str, Any], reply: ipc.Reply) -> Any:
        if self.hooks.show_status is None:
            return {"shown": False, "reason": "headless instance (hivetray daemon)"}
        self.hooks.show_status()
        return {"shown": True}
