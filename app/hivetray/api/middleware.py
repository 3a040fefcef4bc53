"""What every request goes through: CORS (only when origins are listed), the key, and the
error table (every refusal an OpenAI-style error object, never an HTML page or a traceback).

CORS is a tiny middleware plus a response-prepare hook, not a dependency: a preflight from a
listed origin is answered here (before the key is asked for: browsers send no credentials in
a preflight), and the ``Access-Control-Allow-Origin`` header is added before any response's
headers are sent — streamed ones included, which a middleware alone could not do.
"""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from hivetray.api.http_errors import ErrorReply, Unauthorized, error_reply, status_reply
from hivetray.api.keys import ApiKey, bearer
from hivetray.errors import HivetrayError, PayloadTooLarge

log = logging.getLogger(__name__)

#: paths anyone may ask without a key (liveness probes)
PUBLIC_PATHS = frozenset({"/health"})
PREFLIGHT_MAX_AGE_S = 600


def json_error(reply: ErrorReply) -> web.Response:
    return web.json_response(reply.body, status=reply.status, headers=reply.headers)


def error_middleware(client_max_size: int) -> Middleware:
    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status == 413:  # aiohttp's own body limit (client_max_size)
                size = request.content_length or client_max_size + 1
                return json_error(error_reply(PayloadTooLarge(size, client_max_size)))
            if exc.status < 400:
                raise
            return json_error(status_reply(exc.status, f"{exc.reason}: {request.method} "
                                                       f"{request.path}"))
        except HivetrayError as exc:
            return json_error(error_reply(exc))
        except ConnectionResetError:
            raise  # the client left; there is nobody to answer
        except Exception as exc:  # a bug: logged with its traceback, one line to the client
            log.error("internal error in %s %s", request.method, request.path, exc_info=exc)
            return json_error(error_reply(exc))

    return errors


def auth_middleware(key: ApiKey) -> Middleware:
    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path not in PUBLIC_PATHS and not key.matches(
                bearer(request.headers.get("Authorization"))):
            raise Unauthorized()
        return await handler(request)

    return auth


class Cors:
    """CORS for the listed origins only (``"*"`` lists every origin)."""

    def __init__(self, origins: tuple[str, ...]) -> None:
        self.any = "*" in origins
        self.origins = frozenset(origins)

    def allowed(self, request: web.Request) -> str | None:
        """The value for ``Access-Control-Allow-Origin``, or None for no CORS headers."""
        origin = request.headers.get("Origin")
        if origin is None:
            return None
        if self.any:
            return "*"
        return origin if origin in self.origins else None

    @web.middleware
    async def preflight(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            allow = self.allowed(request)
            if allow is None:
                return web.Response(status=403, text="origin not allowed")
            asked = request.headers.get("Access-Control-Request-Headers",
                                        "Authorization, Content-Type")
            return web.Response(status=204, headers={
                "Access-Control-Allow-Origin": allow,
                "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                "Access-Control-Allow-Headers": asked,
                "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_S),
                "Vary": "Origin"})
        return await handler(request)

    async def on_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        allow = self.allowed(request)
        if allow is not None and "Access-Control-Allow-Origin" not in response.headers:
            response.headers["Access-Control-Allow-Origin"] = allow
            response.headers["Access-Control-Expose-Headers"] = "Retry-After"
            response.headers["Vary"] = "Origin"
