"""The chat role on real llama.cpp (a tiny generated model, in this process)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from hivetray.errors import ContextOverflow, ModelLoadError
from hivetray.workers.chat import FLUSH_TOKENS, ChatHandler
from hivetray.workers.context import RequestContext
from hivetray.workers.spec import WorkerSpec

pytestmark = pytest.mark.real


def spec(model: Path, tmp_path: Path) -> WorkerSpec:
    return WorkerSpec("chat", str(model), None, 256, 1, str(tmp_path / "worker-chat.log"))


@pytest.fixture(scope="module")
def handler(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
            ) -> ChatHandler:
    return ChatHandler(spec(tiny_models["chat"], tmp_path_factory.mktemp("chat")))


def collect(handler: ChatHandler, max_tokens: int,
            cancel_after: int | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    chunks: list[dict[str, Any]] = []
    cancelled = threading.Event()

    def send(msg: dict[str, Any]) -> None:
        chunks.append(msg["data"])
        if cancel_after is not None and len(chunks) >= cancel_after:
            cancelled.set()

    ctx = RequestContext(1, send, cancelled.is_set)
    result = handler.handle("chat", {"messages": [{"role": "user", "content": "hi"}],
                                     "max_tokens": max_tokens}, ctx)
    return chunks, result


def test_first_chunk_at_once_then_batched(handler: ChatHandler) -> None:
    chunks, result = collect(handler, 50)
    assert result["usage"]["completion_tokens"] == 50
    assert result["usage"]["prompt_tokens"] > 0
    assert result["finish_reason"] == "length"
    assert len(chunks[0]["text"]) >= 1
    assert 2 <= len(chunks) <= 50  # batched: far fewer messages than tokens
    assert all(c["text"] for c in chunks)


def test_batches_hold_at_most_flush_tokens_pieces(handler: ChatHandler) -> None:
    chunks, _ = collect(handler, 120)
    # each streamed piece is at most a few bytes; a batch never exceeds FLUSH_TOKENS pieces
    assert max(len(c["text"]) for c in chunks) <= FLUSH_TOKENS * 8


def test_cancel_stops_generation_early_and_the_model_stays_usable(handler: ChatHandler) -> None:
    _chunks, result = collect(handler, 200, cancel_after=2)
    assert result["finish_reason"] == "cancelled"
    assert result["usage"]["completion_tokens"] < 200
    _, again = collect(handler, 5)
    assert again["usage"]["completion_tokens"] == 5


class CancelledFromCall:
    """An ``is_cancelled`` that answers True from its k-th call on: a cancel that lands just
    before the handler's k-th check."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.calls = 0

    def __call__(self) -> bool:
        self.calls += 1
        return self.calls >= self.k


@pytest.mark.parametrize("k", [2, 5, 40])
def test_cancel_is_checked_after_every_token(handler: ChatHandler, k: int) -> None:
    """Stop within 100 ms needs a check per token, not per batch: count the tokens exactly.

    The tiny model streams one chunk per token (it never samples control tokens or partial
    UTF-8), and llama-cpp-python's chat stream opens with a role-only chunk that comes with the
    first token. So the j-th check (j >= 2) follows token j - 1, and a cancel seen at the k-th
    check must leave exactly k - 1 tokens generated. A check every n tokens would let about
    n * (k - 1) through; one that runs on after the cancel, more than k - 1.
    """
    cancel = CancelledFromCall(k)
    result = handler.handle("chat", {"messages": [{"role": "user", "content": "hi"}],
                                     "max_tokens": 200, "temperature": 0.0},
                            RequestContext(1, lambda msg: None, cancel))
    assert result["finish_reason"] == "cancelled"
    assert result["usage"]["completion_tokens"] == k - 1


def test_context_overflow_is_a_typed_error_with_counts(handler: ChatHandler) -> None:
    ctx = RequestContext(1, lambda msg: None, lambda: False)
    with pytest.raises(ContextOverflow) as info:
        handler.handle("chat", {"messages": [{"role": "user", "content": "word " * 400}]}, ctx)
    assert info.value.n_ctx == 256 and info.value.prompt_tokens > 256
    assert "context is 256" in str(info.value)


def test_bad_model_file_is_a_load_error_with_llama_cpp_reason(
        tiny_models: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError) as info:
        ChatHandler(spec(tiny_models["random"], tmp_path))
    assert str(tiny_models["random"]) in str(info.value)
    assert "could not load" in str(info.value)
