"""The running instance: the pool, the config, and the app's API over them.

:class:`Instance` serves three ways: the tray app and ``hivetray daemon`` own the home and put
it behind the socket (``hivetray.commands`` is that wire adapter); a CLI command with no
instance reachable, and the self-test, run it as a private pool for their own duration. Its
methods take and return types (``PoolStatus``, ``RoleStatus``, ``Event``), so callers never
reach around it into the pool, and a second adapter (the local HTTP API) can sit beside the
socket's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import Counter
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from hivetray import ipc
from hivetray.api_control import ApiOverride, ApiSwitch
from hivetray.commands import Commands
from hivetray.config import Config, load_config
from hivetray.errors import InvalidRequest
from hivetray.homelock import HomeLock
from hivetray.images import ChatImage
from hivetray.models import builtin
from hivetray.paths import AppPaths
from hivetray.pool import WorkerPool
from hivetray.pool.events import Event, EventKind
from hivetray.pool.status import PoolStatus, RoleStatus

log = logging.getLogger(__name__)


@dataclass
class UiHooks:
    """What the desktop UI adds to the instance; the daemon has none."""

    toggle_chat: Callable[[], None] | None = None
    show_status: Callable[[], None] | None = None


class Instance:
    """The home's owner (``private=False``: holds the home's lock, sweeps, listens), or a
    private pool for one command (``private=True``: no lock, no sweep, no socket)."""

    def __init__(self, paths: AppPaths, config: Config, *, pool: WorkerPool | None = None,
                 hooks: UiHooks | None = None, private: bool = False,
                 lock: HomeLock | None = None, api: ApiOverride | None = None) -> None:
        self.paths = paths
        self.config = config
        self.private = private
        self.lock = lock or HomeLock(paths)
        #: the built-in demo model when the pool's chat role runs it (it is not in ``config``)
        self.builtin_chat_model: str | None = None
        self.pool = pool or WorkerPool(self._pool_config(config), paths, private=private)
        self.hooks = hooks or UiHooks()
        self.quit_requested = asyncio.Event()
        self._server: ipc.Server | None = None
        #: the HTTP API (``[api]``, or ``daemon --api``); never served by a private pool
        self.api = ApiSwitch(self, paths, self.pool.events, api)
        #: crashes per role since this instance started (/metrics; the status only knows
        #: those inside the restart window)
        self._crashes: Counter[str] = Counter()
        self.pool.events.subscribe(self._count_crash)

    @property
    def pid(self) -> int:
        return os.getpid()

    async def start(self) -> None:
        """Owner: take the home's lock first (AlreadyRunning if another instance has it), then
        sweep and start the pool, then listen. Private: only start the pool."""
        if not self.private:
            self.lock.acquire(self.paths.socket_path)
        await self.pool.start()
        if not self.private:
            self._server = await ipc.serve(self.paths.socket_path, Commands(self).handle)
            log.info("listening on %s (pid %d)", self.paths.socket_path, os.getpid())
            await self.api.apply(self.config.api)  # after the pool: it serves the pool

    async def close(self) -> None:
        """Stop the HTTP API, stop every worker, stop listening, release the home; safe to
        call more than once."""
        await self.api.stop()  # before the pool: no new HTTP request meets a closing pool
        await self.pool.shutdown()
        if self._server is not None:
            server, self._server = self._server, None
            await server.close()
        self.lock.release()

    # -- requests -------------------------------------------------------------------------------
    async def chat(self, params: dict[str, Any], images: list[ChatImage] | None = None, *,
                   role: str | None = None) -> AsyncGenerator[dict[str, Any], None]:
        """Stream a chat reply (chunks, then ``{"done": True, ...}``); with images, the vision
        worker answers (``role="vision"`` asks it without images: the HTTP API's ``model``).

        The pool's stream is closed here however this generator ends (``aclosing``), so a
        caller that stops reading cancels the request in the worker at once, not whenever
        the abandoned generator is collected.
        """
        if role not in (None, "chat", "vision"):
            raise InvalidRequest(f"the {role} role does not chat")
        role = role or ("vision" if images else "chat")
        if images:
            if role != "vision":
                raise InvalidRequest("images need the vision role")
            params = {**params, "images": [{"name": i.name, "data": i.data} for i in images]}
        async with contextlib.aclosing(self.pool.stream(role, "chat", params)) as chunks:
            async for chunk in chunks:
                yield chunk

    async def embed(self, texts: list[str], *, normalize: bool = True) -> dict[str, Any]:
        """``{"embeddings": [[...], ...], "truncated": [...], "usage": {...}}``, one vector
        per text."""
        result = await self.pool.call("embed", "embed", {"texts": texts, "normalize": normalize})
        return {"embeddings": result["embeddings"], "truncated": result.get("truncated", []),
                "usage": result.get("usage") or {}}

    async def rerank(self, query: str, documents: list[str],
                     top_n: int | None = None) -> dict[str, Any]:
        """``{"results": [{"index", "document", "score"}, ...], "truncated": [...]}``, best
        first (the first ``top_n`` when given)."""
        result = await self.pool.call("rerank", "rerank",
                                      {"query": query, "documents": documents})
        results = sorted(
            ({"index": i, "document": doc, "score": score}
             for i, (doc, score) in enumerate(zip(documents, result["scores"], strict=True))),
            key=lambda row: -row["score"])
        if top_n:
            results = results[:top_n]
        return {"results": results, "truncated": result.get("truncated", []),
                "usage": result.get("usage") or {}}

    def crash_counts(self) -> Mapping[str, int]:
        """Crashes per role since this instance started."""
        return dict(self._crashes)

    def _count_crash(self, event: Event) -> None:
        if event.kind is EventKind.CRASH and event.role is not None:
            self._crashes[event.role] += 1

    # -- status and intents --------------------------------------------------------------------
    def status(self) -> PoolStatus:
        snapshot = self.pool.snapshot()
        return replace(snapshot, roles=tuple(self._labelled(r) for r in snapshot.roles))

    def role_status(self, role: str) -> RoleStatus:
        return self._labelled(self.pool.role_snapshot(self.pool.role(role)))

    def _pool_config(self, config: Config) -> Config:
        """``config`` as the pool runs it: the built-in demo model fills an unset chat role.

        Remembered here, so status can name it without a file-system lookup per snapshot, and
        kept out of ``self.config`` (what Settings edits and saves): it is never written.
        """
        pool_config = builtin.with_builtin_chat(config)
        chat_model = pool_config.role("chat").model
        self.builtin_chat_model = chat_model if chat_model != config.role("chat").model else None
        return pool_config

    def _labelled(self, status: RoleStatus) -> RoleStatus:
        """The chat role's status says when it runs the built-in demo model (the pool does
        not know about built-ins; the app does)."""
        if (status.role == "chat" and self.builtin_chat_model is not None
                and status.model == self.builtin_chat_model):
            return replace(status, model_label=builtin.LABEL)
        return status

    def retry(self, role: str) -> RoleStatus:
        self.pool.retry(role)
        return self.role_status(role)

    async def restart(self, role: str) -> RoleStatus:
        await self.pool.restart(role)
        return self.role_status(role)

    async def stop(self, role: str) -> RoleStatus:
        await self.pool.stop_role(role)
        return self.role_status(role)

    def events(self, limit: int | None = None, role: str | None = None) -> list[Event]:
        return self.pool.events.recent(limit, role)

    def reload_config(self) -> list[str]:
        """Re-read config.toml and apply it (a role whose model changed is respawned; the
        HTTP API is started, stopped or restarted as ``[api]`` now says); return the file's
        warnings."""
        result = load_config(self.paths.config_file)
        self.config = result.config
        self.pool.apply_config(self._pool_config(result.config))
        if self._server is not None:  # an owner that is serving (never a private pool)
            self.pool.tasks.spawn(self.api.apply(result.config.api), "apply the API settings")
        return result.warnings

    async def quit(self) -> None:
        """Stop the HTTP API and every worker; the process exits right after
        (``quit_requested``)."""
        await self.api.stop()
        await self.pool.shutdown()
        self.quit_requested.set()

    def request_quit(self) -> None:
        """Quit from a signal handler or a menu: no new request, no restart, then the
        graceful stop runs on the loop."""
        self.pool.close_to_requests()
        self.quit_requested.set()

    def kill_all_now(self) -> None:
        """A second Ctrl-C: SIGKILL every worker at once (the process exits right after)."""
        self.pool.kill_all_now()

    def toggle_chat(self) -> None:
        if self.hooks.toggle_chat is None:
            raise InvalidRequest("this instance has no quick-chat window (it runs as "
                                 "`hivetray daemon`); start the tray app with `hivetray`")
        self.hooks.toggle_chat()

    def show_status(self) -> bool:
        """Show the status window; False for a headless instance."""
        if self.hooks.show_status is None:
            return False
        self.hooks.show_status()
        return True
