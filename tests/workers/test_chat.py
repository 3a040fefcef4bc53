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

    The worker checks before sampling each token (the prompt fits one batch, so no check runs
    while it is decoded): the j-th check precedes token j, and a cancel seen at the k-th check
    must leave exactly k - 1 tokens sampled. A check every n tokens would let about
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


def reply(handler: ChatHandler, messages: list[dict[str, Any]], **params: Any
          ) -> tuple[str, dict[str, Any]]:
    """The reply's text and the result of one request (never cancelled)."""
    chunks: list[str] = []
    result = handler.handle("chat", {"messages": messages, **params},
                            RequestContext(1, lambda msg: chunks.append(msg["data"]["text"]),
                                           lambda: False))
    return "".join(chunks), result


HI = [{"role": "user", "content": "hi"}]
#: sampling wide open (every token can be drawn), so seeds and samplers make a visible difference
WIDE = {"temperature": 1.5, "top_k": 0, "top_p": 1.0, "min_p": 0.0}


def test_a_greedy_reply_is_the_same_every_time(handler: ChatHandler) -> None:
    first, result = reply(handler, HI, max_tokens=40, temperature=0.0)
    handler.engine.forget()  # from a cold cache too
    assert reply(handler, HI, max_tokens=40, temperature=0.0)[0] == first
    assert reply(handler, HI, max_tokens=40, temperature=0.0)[0] == first
    assert result["usage"]["completion_tokens"] == 40 and len(first) >= 40


def test_a_seed_makes_a_sampled_reply_reproducible_and_another_seed_changes_it(
        handler: ChatHandler) -> None:
    one, _ = reply(handler, HI, max_tokens=40, seed=7, **WIDE)
    assert reply(handler, HI, max_tokens=40, seed=7, **WIDE)[0] == one
    assert reply(handler, HI, max_tokens=40, seed=8, **WIDE)[0] != one


def test_the_request_sampling_settings_reach_the_sampler(handler: ChatHandler) -> None:
    """top-k 1 leaves only the likeliest token: the greedy reply, whatever the temperature."""
    greedy, _ = reply(handler, HI, max_tokens=40, temperature=0.0, repeat_penalty=1.0)
    assert reply(handler, HI, max_tokens=40, seed=1, repeat_penalty=1.0,
                 **{**WIDE, "top_k": 1})[0] == greedy
    assert reply(handler, HI, max_tokens=40, seed=1, repeat_penalty=1.0, **WIDE)[0] != greedy


def test_the_repeat_penalty_changes_a_greedy_reply(handler: ChatHandler) -> None:
    plain, _ = reply(handler, HI, max_tokens=60, temperature=0.0, repeat_penalty=1.0)
    penalised, _ = reply(handler, HI, max_tokens=60, temperature=0.0, repeat_penalty=1.8,
                         repeat_last_n=64)
    assert penalised != plain
    # the penalty bites: a greedy tiny model repeats itself, less so when penalised
    assert len(set(penalised)) > len(set(plain))


def test_a_follow_up_turn_decodes_only_its_new_part(handler: ChatHandler) -> None:
    first_text, first = reply(handler, HI, max_tokens=20, temperature=0.0)
    follow_up = [*HI, {"role": "assistant", "content": first_text},
                 {"role": "user", "content": "and then?"}]
    text, result = reply(handler, follow_up, max_tokens=20, temperature=0.0)
    prompt = result["usage"]["prompt_tokens"]
    assert 0 < handler.engine.last_prompt_decoded <= prompt - first["usage"]["prompt_tokens"]
    handler.engine.forget()  # the same turn from scratch: the reused cache changed nothing
    assert reply(handler, follow_up, max_tokens=20, temperature=0.0)[0] == text
    assert handler.engine.last_prompt_decoded == prompt


def test_the_same_prompt_again_decodes_only_its_last_token(handler: ChatHandler) -> None:
    reply(handler, HI, max_tokens=5)
    _, result = reply(handler, HI, max_tokens=5)
    assert result["usage"]["prompt_tokens"] > 1 and handler.engine.last_prompt_decoded == 1


def test_a_cancel_while_a_long_prompt_is_decoded_stops_before_any_token(
        long_chat_model: Path, tmp_path: Path) -> None:
    """A 4096-token context decodes a long prompt in batches of 512 and checks for a cancel
    between them: none of the reply is sampled, and the part decoded stays cached."""
    handler = ChatHandler(WorkerSpec("chat", str(long_chat_model), None, 4096, 1,
                                     str(tmp_path / "worker-chat.log")))
    messages = [{"role": "user", "content": "word " * 300}]
    result = handler.handle("chat", {"messages": messages, "max_tokens": 50},
                            RequestContext(1, lambda msg: None, lambda: True))
    prompt = result["usage"]["prompt_tokens"]
    assert prompt > 2 * 512
    assert result["finish_reason"] == "cancelled"
    assert result["usage"]["completion_tokens"] == 0
    assert handler.engine.last_prompt_decoded == 512
    _, again = reply(handler, messages, max_tokens=3)
    assert again["usage"]["completion_tokens"] == 3
    assert handler.engine.last_prompt_decoded == prompt - 512


def test_a_reply_that_would_overrun_the_context_is_cut_to_fit(handler: ChatHandler) -> None:
    _, result = reply(handler, HI, max_tokens=1000, temperature=0.0)
    assert result["finish_reason"] == "length"
    assert result["usage"]["completion_tokens"] == 256 - result["usage"]["prompt_tokens"]


def test_a_model_without_a_template_gets_its_named_format() -> None:
    """The built-in Gemma base model has no template: llama-cpp-python's "gemma" format, with
    its turn marker as a stop string."""
    from hivetray.workers.chat import registered_formatter

    rendered = registered_formatter("gemma")(messages=HI)
    assert rendered.prompt == "<start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n"
    assert rendered.stop == "<end_of_turn>\n"


def test_a_template_that_refuses_the_messages_is_an_invalid_request(
        handler: ChatHandler, monkeypatch: pytest.MonkeyPatch) -> None:
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    from hivetray.errors import InvalidRequest

    strict = Jinja2ChatFormatter(template="{{ raise_exception('Conversation roles must "
                                          "alternate user/assistant') }}",
                                 eos_token="", bos_token="")
    monkeypatch.setattr(handler, "format", strict)
    with pytest.raises(InvalidRequest, match="template refused these messages "
                                             r"\(Conversation roles must alternate"):
        reply(handler, HI, max_tokens=3)


def test_a_requests_own_stop_strings_end_the_reply_unshown(handler: ChatHandler) -> None:
    full, _ = reply(handler, HI, max_tokens=40, temperature=0.0)
    stop = full[15:19]
    cut = full.find(stop)
    shown, result = reply(handler, HI, max_tokens=40, temperature=0.0, stop=[stop])
    assert result["finish_reason"] == "stop" and shown == full[:cut]
    assert reply(handler, HI, max_tokens=40, temperature=0.0, stop=stop)[0] == full[:cut]
