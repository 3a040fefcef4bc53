"""The HTTP API's switch: starts, stops and restarts the server as the config says.

Why apart from ``hivetray.api``: this is what the instance holds whether the API is on or off,
so it must stay light; it imports ``hivetray.api.server`` (and with it aiohttp) only when the
API is enabled, and an idle tray with the API off never loads either.

The server runs on the instance's own loop (qasync's in the tray app, asyncio's in the daemon):
no thread of its own, none per request. It starts after the pool and stops before it (see
``Instance.start`` / ``close``), and ``apply()`` follows config reloads (Settings' Save,
``hivetray reload``). A refusal (a non-loopback host without ``allow_remote``) or a bind
failure (the port is taken) is one line in the log and an ``api`` event; the app runs on.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING

from hivetray.config import ApiConfig
from hivetray.errors import first_line
from hivetray.lean_imports import without_openssl
from hivetray.paths import AppPaths
from hivetray.pool.events import Event, EventKind, EventLog

if TYPE_CHECKING:
    from hivetray.api.routes import ApiInstance
    from hivetray.api.server import ApiServer

log = logging.getLogger(__name__)


class ApiState(StrEnum):
    OFF = "off"
    LISTENING = "listening"
    #: enabled, but refused by policy or unable to listen (``error`` says why)
    FAILED = "failed"


@dataclass(frozen=True)
class ApiOverride:
    """``hivetray daemon --api [--port N]``: the API for this run, whatever the config says."""

    enabled: bool = False
    port: int | None = None

    def applied(self, config: ApiConfig) -> ApiConfig:
        if not self.enabled:
            return config
        return replace(config, enabled=True,
                       port=self.port if self.port is not None else config.port)


def refusal(config: ApiConfig) -> str | None:
    """Why ``config`` must not be served (None when it may): other machines reach the workers
    only when the user said so explicitly, and never without a key."""
    if config.loopback:
        return None
    if not config.allow_remote:
        return (f"the HTTP API was not started: host {config.host!r} is reachable from other "
                "machines; use 127.0.0.1, or set [api] allow_remote = true (a key is then "
                "required)")
    if not config.require_key:
        return (f"the HTTP API was not started: host {config.host!r} is reachable from other "
                "machines, which needs a key: set [api] require_key = true")
    return None


class ApiSwitch:
    """Holds the running server (if any) and what the tray and the daemon say about it."""

    def __init__(self, instance: ApiInstance, paths: AppPaths, events: EventLog,
                 override: ApiOverride | None = None) -> None:
        self.instance = instance
        self.paths = paths
        self.events = events
        self.override = override or ApiOverride()
        self.state = ApiState.OFF
        #: ``http://host:port`` while listening
        self.url: str | None = None
        #: the one-line reason while FAILED
        self.error: str | None = None
        self._server: ApiServer | None = None
        self._serving: ApiConfig | None = None
        self._lock = asyncio.Lock()  # one apply at a time: two quick saves must not race
        #: stopped for good (quit): a reload still queued must not start it again
        self._closed = False

    def line(self) -> str:
        """One line for the tray menu."""
        if self.state is ApiState.LISTENING:
            return f"HTTP API: {self.url}"
        if self.state is ApiState.FAILED:
            return "HTTP API: not running (see the log)"
        return "HTTP API: off"

    async def apply(self, config: ApiConfig) -> None:
        """Make the server match ``config`` (plus the run's override): start, stop, restart
        or leave it."""
        wanted = self.override.applied(config)
        async with self._lock:
            if self._closed or (self._server is not None and wanted == self._serving):
                return
            await self._stop()
            if not wanted.enabled:
                self._set(ApiState.OFF)
                return
            problem = refusal(wanted)
            if problem is not None:
                self._fail(problem)
                return
            await self._start(wanted)

    async def _start(self, config: ApiConfig) -> None:
        with without_openssl():  # the tray has kept OpenSSL out so far: the API needs none
            from hivetray.api.keys import ApiKey
            from hivetray.api.server import ApiServer, ServerSettings

        key = ApiKey(self.paths.api_key_file)
        try:
            if config.require_key:
                key.ensure()  # generated on first enable
        except OSError as exc:
            self._fail(f"the HTTP API was not started: its key could not be written to "
                       f"{self.paths.api_key_file} ({exc.strerror or exc}); check that folder")
            return
        server = ApiServer(self.instance, key, ServerSettings(
            config.host, config.port, config.cors_origins, config.require_key))
        try:
            self.url = await server.start()
        except OSError as exc:
            self._fail(f"the HTTP API could not listen on {config.host}:{config.port} "
                       f"({exc.strerror or first_line(exc)}): choose another port ([api] port "
                       "in config.toml, or Settings → API); Hivetray runs on without it")
            return
        self._server, self._serving = server, config
        self._set(ApiState.LISTENING)
        self.events.emit(Event(EventKind.API, None, f"HTTP API listening on {self.url}",
                               {"url": self.url}))

    async def stop(self) -> None:
        """Stop serving for good (quit, close); in-flight requests are cancelled in their
        workers, and a config reload still queued does not start it again."""
        async with self._lock:
            self._closed = True
            await self._stop()
            self._set(ApiState.OFF)

    async def _stop(self) -> None:
        server, self._server, self._serving = self._server, None, None
        if server is not None:
            await server.stop()
            self.events.emit(Event(EventKind.API, None, "HTTP API stopped"))

    def _set(self, state: ApiState) -> None:
        self.state = state
        if state is not ApiState.LISTENING:
            self.url = None
        if state is not ApiState.FAILED:
            self.error = None

    def _fail(self, message: str) -> None:
        self._set(ApiState.FAILED)
        self.error = message
        log.error("%s", message)  # the daemon's stderr and the app log: one line
        self.events.emit(Event(EventKind.API, None, message, level="error"))
