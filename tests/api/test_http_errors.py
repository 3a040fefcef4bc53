"""The one table: each error the pool can raise → HTTP status, OpenAI type/code, retry headers,
and a one-line message that never carries a crash's log tail or a bug's details."""

from __future__ import annotations

import pytest

from hivetray.api.http_errors import (
    TABLE,
    BadField,
    ModelNotFound,
    Unauthorized,
    error_reply,
    status_reply,
)
from hivetray.errors import (
    CircuitOpen,
    ContextOverflow,
    HivetrayError,
    InsufficientMemory,
    InvalidImage,
    InvalidModelFile,
    InvalidRequest,
    PayloadTooLarge,
    PoolClosed,
    RemoteError,
    RequestCancelled,
    RoleInError,
    RoleUnconfigured,
    WorkerBusy,
    WorkerCrashed,
)


@pytest.mark.parametrize(("error", "status", "code", "retry"), [
    (InvalidRequest("'messages' must be a list"), 400, "invalid_request", False),
    (BadField("top_p", "'top_p' must be ..."), 400, "invalid_value", False),
    (InvalidImage("image 1", "it is empty"), 400, "invalid_image", False),
    (ContextOverflow(9000, 4096), 400, "context_length_exceeded", False),
    (Unauthorized(), 401, "invalid_api_key", False),
    (ModelNotFound("gpt-4", "'chat'"), 404, "model_not_found", False),
    (RoleUnconfigured("rerank"), 404, "model_not_configured", False),
    (PayloadTooLarge(40 * 2**20, 32 * 2**20), 413, "payload_too_large", False),
    (WorkerBusy("chat", 64), 429, "worker_busy", True),
    (WorkerCrashed("chat", -9, "/logs/worker-chat.log", "tail"), 502, "worker_crashed", True),
    (CircuitOpen("chat", 4, 60, 41.2), 503, "worker_cooling_down", True),
    (RoleInError("vision", "bad projector"), 503, "model_unavailable", False),
    (InvalidModelFile("/m.gguf is not a usable model file: truncated", "/m.gguf"), 503,
     "model_load_failed", False),
    (InsufficientMemory("chat needs ~1.4 GiB, 0.9 GiB free", "chat", 1, 0), 503,
     "insufficient_memory", False),
    (RequestCancelled("stopped"), 503, "request_cancelled", True),
    (PoolClosed("quitting"), 503, "shutting_down", False),
    (RemoteError("KeyError", "x"), 500, "internal_error", True),
])
def test_each_error_has_its_status_code_and_retry_advice(
        error: HivetrayError, status: int, code: str, retry: bool) -> None:
    reply = error_reply(error)
    assert reply.status == status
    detail = reply.body["error"]
    assert detail["code"] == code and detail["message"] == str(error).split("\n")[0]
    assert set(detail) >= {"message", "type", "code", "param"}
    assert (reply.headers.get("x-should-retry") == "false") is not retry


def test_the_breaker_says_when_to_retry_rounded_up() -> None:
    reply = error_reply(CircuitOpen("chat", 4, 60, 41.2))
    assert reply.headers["Retry-After"] == "42"
    assert reply.body["error"]["retry_in_s"] == 42
    almost = error_reply(CircuitOpen("chat", 4, 60, 0.2))
    assert almost.headers["Retry-After"] == "1"  # never 0: that would invite a hammering


def test_context_overflow_carries_the_numbers() -> None:
    detail = error_reply(ContextOverflow(9000, 4096)).body["error"]
    assert (detail["n_prompt_tokens"], detail["n_ctx"]) == (9000, 4096)
    assert detail["type"] == "invalid_request_error"
    assert "prompt is 9000 tokens, context is 4096" in detail["message"]


def test_a_bad_field_is_named_as_openai_names_it() -> None:
    assert error_reply(BadField("stop", "'stop' must be ...")).body["error"]["param"] == "stop"
    assert error_reply(InvalidRequest("x")).body["error"]["param"] is None


def test_a_crash_reply_is_one_line_without_the_log_tail() -> None:
    crash = WorkerCrashed("chat", -6, "/logs/worker-chat.log", "GGML_ASSERT failed\nmore")
    message = error_reply(crash).body["error"]["message"]
    assert "\n" not in message and "GGML_ASSERT" not in message
    assert "killed by SIGABRT" in message and "/logs/worker-chat.log" in message


def test_a_bug_is_500_without_its_details() -> None:
    reply = error_reply(KeyError("secret internals"))
    assert reply.status == 500 and reply.body["error"]["code"] == "internal_error"
    assert "secret" not in reply.body["error"]["message"]
    assert "app log" in reply.body["error"]["message"]


def test_unauthorized_asks_for_a_bearer_key() -> None:
    reply = error_reply(Unauthorized())
    assert reply.headers["WWW-Authenticate"].startswith("Bearer")
    assert "hivetray api key" in reply.body["error"]["message"]


def test_the_table_is_ordered_by_the_mro_not_by_luck() -> None:
    # subclasses listed beside their bases: the most specific class wins
    assert error_reply(BadField("n", "x")).body["error"]["code"] == "invalid_value"
    assert issubclass(BadField, InvalidRequest) and BadField in TABLE


def test_refusals_of_the_http_layer_are_error_objects_too() -> None:
    reply = status_reply(404, "Not Found: GET /v2/x")
    assert reply.status == 404 and reply.body["error"]["code"] == "not_found"
    assert status_reply(405, "x").body["error"]["code"] == "method_not_allowed"
    assert status_reply(502, "x").body["error"]["type"] == "server_error"
