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
        name = str(item.get("name") or f"image {n + 1}")
        data = item.get("data")
        if data is None:
            try:
                data = base64.b64decode(item.get("data_b64") or "", validate=True)
            except ValueError:
                raise InvalidImage(name, "the image data is not valid base64") from None
        if len(data) > MAX_PAYLOAD_BYTES:
            raise PayloadTooLarge(len(data), MAX_PAYLOAD_BYTES)
        if sniff_image_type(data) is None:
            kind = "it is empty" if not data else "its content is not PNG, JPEG, WebP, GIF or BMP"
            raise InvalidImage(name, kind)
        images.append({"name": name, "data": bytes(data)})
    return images


class Instance:
    def __init__(self, paths: AppPaths, config: Config, *, pool: WorkerPool | None = None,
                 hooks: UiHooks | None = None) -> None:
        self.paths = paths
        self.config = config
        self.pool = pool or WorkerPool(with_builtin_chat(config, paths), paths)
        self.hooks = hooks or UiHooks()
        self.quit_requested = asyncio.Event()
        self._server: ipc.Server | None = None

    async def start(self, *, listen: bool = True) -> None:
        await self.pool.start()
        if listen:
            self._server = await ipc.serve(self.paths.socket_path, self.handle)
            log.info("listening on %s (pid %d)", self.paths.socket_path, os.getpid())

    async def close(self) -> None:
        """Stop listening, stop every worker; safe to call more than once."""
        await self.pool.shutdown()
        if self._server is not None:
            server, self._server = self._server, None
            await server.close()

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
        params = dict(request.get("params") or {})
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
        texts = request.get("texts")
        if not isinstance(texts, list) or not texts:
            raise InvalidRequest("embed needs 'texts': a non-empty list of strings")
        result = await self.pool.call("embed", "embed", {
            "texts": texts, "normalize": bool(request.get("normalize", True))})
        return {"embeddings": result["embeddings"], "truncated": result.get("truncated", [])}

    async def cmd_rerank(self, request: dict[str, Any], reply: ipc.Reply) -> Any:
        """``{"query", "documents", "top_n"?}`` → results sorted by score, best first."""
        query, documents = request.get("query"), request.get("documents")
        if not isinstance(documents, list) or not documents:
            raise InvalidRequest("rerank needs 'documents': a non-empty list of strings")
        result = await self.pool.call("rerank", "rerank",
                                      {"query": query, "documents": documents})
        results = sorted(
            ({"index": i, "document": doc, "score": score}
             for i, (doc, score) in enumerate(zip(documents, result["scores"], strict=True))),
            key=lambda row: -row["score"])
        top_n = request.get("top_n")
        if isinstance(top_n, int) and top_n > 0:
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
        limit = int(request.get("limit") or 200)
        return [e.to_dict() for e in self.pool.events.recent(limit, request.get("role"))]

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
