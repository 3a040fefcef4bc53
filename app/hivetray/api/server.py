"""The aiohttp server on the app's running loop: start, stop, nothing else.

Why aiohttp: a maintained asyncio HTTP server that runs on an existing loop (``AppRunner`` +
``TCPSite``, no thread of its own and none per request), streams responses, and cancels a
handler whose client disconnected (``handler_cancellation=True``), which is how a dropped
HTTP client cancels its request in the worker. It runs on qasync's loop in the tray app as on
asyncio's in the daemon.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Middleware

from hivetray.api.keys import ApiKey
from hivetray.api.middleware import Cors, auth_middleware, error_middleware
from hivetray.api.routes import ApiInstance, Routes
from hivetray.ipc import REQUEST_LIMIT

#: the body limit: the instance socket's own (images travel base64-encoded inside it)
CLIENT_MAX_SIZE = REQUEST_LIMIT
#: how long a stop waits for requests in progress before cancelling them (quit must be quick;
#: a cancelled request is cancelled in its worker too)
SHUTDOWN_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class ServerSettings:
    host: str
    port: int
    cors_origins: tuple[str, ...] = ()
    require_key: bool = True


def build_app(instance: ApiInstance, key: ApiKey, settings: ServerSettings) -> web.Application:
    """The application: CORS outermost (so refusals carry its headers too), then the error
    table, then the key; the routes last."""
    middlewares: list[Middleware] = []
    cors = Cors(settings.cors_origins) if settings.cors_origins else None
    if cors is not None:
        middlewares.append(cors.preflight)
    middlewares.append(error_middleware(CLIENT_MAX_SIZE))
    if settings.require_key:
        middlewares.append(auth_middleware(key))
    app = web.Application(middlewares=middlewares, client_max_size=CLIENT_MAX_SIZE)
    if cors is not None:
        app.on_response_prepare.append(cors.on_prepare)
    Routes(instance).add_to(app)
    return app


def url_of(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class ApiServer:
    def __init__(self, instance: ApiInstance, key: ApiKey, settings: ServerSettings) -> None:
        self.settings = settings
        self._runner = web.AppRunner(
            build_app(instance, key, settings), handle_signals=False, access_log=None,
            handler_cancellation=True, shutdown_timeout=SHUTDOWN_TIMEOUT_S)

    async def start(self) -> str:
        """Listen; return the URL (with the real port when the setting was 0). An address
        that cannot be bound is an ``OSError``, with nothing left behind."""
        host = self.settings.host.strip("[]")  # "[::1]" as written in a URL
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, self.settings.port)
        try:
            await site.start()
        except BaseException:
            await self._runner.cleanup()
            raise
        port = self.settings.port
        for address in self._runner.addresses:
            if isinstance(address, tuple) and len(address) >= 2:
                port = int(address[1])
                break
        return url_of(host, port)

    async def stop(self) -> None:
        """Stop listening; requests still running after the grace are cancelled (and so are
        their worker requests)."""
        await self._runner.cleanup()
