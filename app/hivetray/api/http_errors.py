"""Every error an HTTP client can meet, as an OpenAI-style error object and a status: one table.

The pool's errors are types (``hivetray.errors``); here each type gets its HTTP status, the
OpenAI ``type``/``code`` pair clients switch on, and the headers that tell a client whether
to retry: ``Retry-After`` (the breaker's seconds left, rounded up) and ``x-should-retry:
false`` where a retry cannot help (a model that failed to load, a role with no model) — the
official OpenAI clients honour both, so they neither hammer a cooling-down worker nor wait
out their back-off for nothing. The message is the error's first line: it says what is wrong
and what to do, and a crash's log tail stays in the log.

Pure Python (no aiohttp): the server turns an :class:`ErrorReply` into a response.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from hivetray.errors import (
    CircuitOpen,
    ContextOverflow,
    HivetrayError,
    InsufficientMemory,
    InvalidImage,
    InvalidRequest,
    ModelLoadError,
    PayloadTooLarge,
    PoolClosed,
    RequestCancelled,
    RoleInError,
    RoleUnconfigured,
    WorkerBusy,
    WorkerCrashed,
    first_line,
)


class Unauthorized(HivetrayError):
    """No key, or not the key (``Authorization: Bearer <key>``)."""

    def __init__(self) -> None:
        super().__init__("missing or wrong API key: send 'Authorization: Bearer <key>' with the "
                         "key from `hivetray api key` (or Settings → API → Copy)")


class ModelNotFound(HivetrayError):
    """The request's ``model`` names no role (nor a role's model file) this endpoint serves."""

    wire_fields = ("model",)

    def __init__(self, model: str, served: str) -> None:
        super().__init__(f"the model {model!r} is not served here: use {served} "
                         "(GET /v1/models lists them)")
        self.model = model


class BadField(InvalidRequest):
    """A request field is missing or wrong; ``param`` names it (OpenAI's ``param``)."""

    wire_fields = ("param",)

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class Mapping:
    status: int
    type: str
    code: str
    #: False adds ``x-should-retry: false``: retrying cannot help until the user acts
    retry: bool = True


#: THE table: the first class in an error's MRO that is listed here decides
TABLE: dict[type[BaseException], Mapping] = {
    Unauthorized: Mapping(401, "authentication_error", "invalid_api_key", retry=False),
    BadField: Mapping(400, "invalid_request_error", "invalid_value", retry=False),
    ContextOverflow: Mapping(400, "invalid_request_error", "context_length_exceeded",
                             retry=False),
    InvalidImage: Mapping(400, "invalid_request_error", "invalid_image", retry=False),
    InvalidRequest: Mapping(400, "invalid_request_error", "invalid_request", retry=False),
    ModelNotFound: Mapping(404, "invalid_request_error", "model_not_found", retry=False),
    RoleUnconfigured: Mapping(404, "invalid_request_error", "model_not_configured",
                              retry=False),
    PayloadTooLarge: Mapping(413, "invalid_request_error", "payload_too_large", retry=False),
    WorkerBusy: Mapping(429, "rate_limit_error", "worker_busy"),
    WorkerCrashed: Mapping(502, "server_error", "worker_crashed"),
    CircuitOpen: Mapping(503, "server_error", "worker_cooling_down"),
    RoleInError: Mapping(503, "server_error", "model_unavailable", retry=False),
    ModelLoadError: Mapping(503, "server_error", "model_load_failed", retry=False),
    InsufficientMemory: Mapping(503, "server_error", "insufficient_memory", retry=False),
    RequestCancelled: Mapping(503, "server_error", "request_cancelled"),
    PoolClosed: Mapping(503, "server_error", "shutting_down", retry=False),
    HivetrayError: Mapping(500, "server_error", "internal_error"),
}
#: anything else is a bug in Hivetray: 500, and the details go to the app log only
UNEXPECTED = Mapping(500, "server_error", "internal_error")
#: WorkerBusy's Retry-After: the queue moves in about a request's time
BUSY_RETRY_AFTER_S = 1


@dataclass(frozen=True)
class ErrorReply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def mapping_for(error: BaseException) -> Mapping:
    for cls in type(error).__mro__:
        if cls in TABLE:
            return TABLE[cls]
    return UNEXPECTED


def error_reply(error: BaseException) -> ErrorReply:
    """The response for ``error``: status, ``{"error": {...}}`` body, retry headers."""
    mapping = mapping_for(error)
    if isinstance(error, HivetrayError):
        message = first_line(error)
    else:
        message = "internal error in Hivetray; the details are in the app log (`hivetray logs`)"
    detail: dict[str, Any] = {"message": message, "type": mapping.type, "code": mapping.code,
                              "param": getattr(error, "param", None)}
    headers: dict[str, str] = {}
    if isinstance(error, ContextOverflow):  # the numbers, as llama-server gives them
        detail["n_prompt_tokens"] = error.prompt_tokens
        detail["n_ctx"] = error.n_ctx
    if isinstance(error, CircuitOpen):
        seconds = max(1, math.ceil(error.retry_in_s or 0))
        detail["retry_in_s"] = seconds
        headers["Retry-After"] = str(seconds)
    if isinstance(error, WorkerBusy):
        headers["Retry-After"] = str(BUSY_RETRY_AFTER_S)
    if isinstance(error, Unauthorized):
        headers["WWW-Authenticate"] = 'Bearer realm="hivetray"'

    if not mapping.retry:
        headers["x-should-retry"] = "false"
    return ErrorReply(mapping.status, {"error": detail}, headers)


#: what aiohttp's own refusals (no such route, wrong method) become
_BY_STATUS: dict[int, tuple[str, str]] = {
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
}


def status_reply(status: int, message: str) -> ErrorReply:
    """An OpenAI-style error for a refusal made by the HTTP layer itself."""
    kind, code = _BY_STATUS.get(status, ("invalid_request_error" if status < 500
                                         else "server_error", f"http_{status}"))
    return ErrorReply(status, {"error": {"message": message, "type": kind, "code": code,
                                         "param": None}})
