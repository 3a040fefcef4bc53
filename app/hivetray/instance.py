"""The running instance: the pool, the config and the command handlers behind the socket.

The same :class:`Instance` serves three ways: the tray app and ``hivetray daemon`` put it behind
the socket; a CLI command with no instance running calls ``handle`` in-process on a private pool.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hivetray import ROLES, ipc
from hivetray.config import Config, load_config
from hivetray.errors import InvalidRequest
from hivetray.paths import AppPaths
from hivetray.pool import WorkerPool

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


class Instance:
    def __init__(self, paths: AppPaths, config: Config, *, pool: WorkerPool | None = None,
                 hooks: UiHooks | None = None) -> None:
        self.paths = paths
        self.config = config
        self.pool = pool or WorkerPool(config, paths)
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
        params = request.get("params") or {}
        async for chunk in self.pool.stream("chat", "chat", params):
            if chunk.get("done"):
                return {k: v for k, v in chunk.items() if k != "done"}
            await reply(chunk)
        return None

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
        self.pool.apply_config(result.config)
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
