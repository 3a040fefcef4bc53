"""The generation loop itself (workers/generate.py) on real llama.cpp with tiny models: how a
reply ends (end-of-generation token, stop string, the bench's ignore_eos) and how it is counted."""

from __future__ import annotations

import struct
import time
from pathlib import Path
from typing import Any

import pytest

from hivetray.devtools.tinymodels import CHAT_TEMPLATE
from hivetray.sampling import DEFAULT_SAMPLING, Sampling
from hivetray.workers.context import RequestContext
from hivetray.workers.generate import DEFAULT_MAX_TOKENS, Engine, Request
from hivetray.workers.loading import load_llama
from hivetray.workers.spec import WorkerSpec

pytestmark = pytest.mark.real

GREEDY = Sampling(temperature=0.0, repeat_penalty=1.0)


def render(text: str) -> str:
    """The tiny model's ChatML for one user message, ready for the assistant's reply."""
    from jinja2 import Template

    rendered: str = Template(CHAT_TEMPLATE).render(
        messages=[{"role": "user", "content": text}], add_generation_prompt=True)
    return rendered


def load_engine(model: Path, folder: Path) -> Engine:
    spec = WorkerSpec("chat", str(model), None, 256, 1, str(folder / "worker-chat.log"))
    return Engine(load_llama(spec))


def run(engine: Engine, request: Request, stops: tuple[str, ...] = (),
        prompt: str = "hi") -> tuple[list[str], dict[str, Any], list[int]]:
    """Chunks, result, and the reply's tokens that went into the KV cache."""
    tokens = engine.tokenize(render(prompt), add_special=False)
    assert engine.load_prompt(tokens, lambda: False)
    chunks: list[str] = []
    result = engine.generate(request, stops, RequestContext(
        1, lambda msg: chunks.append(msg["data"]["text"]), lambda: False),
        started=time.perf_counter(), n_prompt=len(tokens), history=tokens)
    assert engine.cached is not None
    return chunks, result, engine.cached[len(tokens):]


@pytest.fixture(scope="module")
def engine(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return load_engine(tiny_models["chat"], tmp_path_factory.mktemp("generate"))


def with_end_token(src: Path, dst: Path, token: int) -> Path:
    """The model with ``token`` as its end-of-sequence/turn token (the tiny model never samples
    its own: they are pushed far down)."""
    data = bytearray(src.read_bytes())
    for key in (b"tokenizer.ggml.eos_token_id", b"tokenizer.ggml.eot_token_id"):
        at = data.index(key) + len(key)
        assert struct.unpack_from("<I", data, at)[0] == 4  # GGUF value type uint32
        struct.pack_into("<I", data, at + 4, token)
    dst.write_bytes(bytes(data))
    return dst


def test_an_end_of_generation_token_ends_the_reply_and_is_counted(
        engine: Engine, tiny_models: dict[str, Path], tmp_path: Path) -> None:
    _, _, tokens = run(engine, Request(GREEDY, 12))
    # a token the greedy reply samples at step `at` (>= 3) and not before: made the end token
    at = next(i for i in range(3, len(tokens)) if tokens[i] not in tokens[:i])
    ended = load_engine(with_end_token(tiny_models["chat"], tmp_path / "eog.gguf", tokens[at]),
                        tmp_path)
    shown, result, _ = run(ended, Request(GREEDY, 12))
    assert result["finish_reason"] == "stop"
    assert result["usage"]["completion_tokens"] == at + 1  # the end token was sampled too
    before_end = b"".join(engine.piece(t) for t in tokens[:at]).decode()
    assert "".join(shown) == before_end

    # text held back as the possible start of a stop string is still shown at the end token
    shown, result, _ = run(ended, Request(GREEDY, 12), stops=(before_end[-1] + "\x00never",))
    assert result["finish_reason"] == "stop" and "".join(shown) == before_end

    # the bench-only knob: the end token is never drawn, the reply runs to max_tokens
    _, result, _ = run(ended, Request(GREEDY, 12, ignore_eos=True))
    assert result["finish_reason"] == "length"
    assert result["usage"]["completion_tokens"] == 12


def test_a_stop_string_ends_the_reply_and_is_never_shown(engine: Engine) -> None:
    chunks, _, _ = run(engine, Request(GREEDY, 60))
    full = "".join(chunks)
    stop = full[20:24]
    cut = full.find(stop)
    shown, result, _ = run(engine, Request(GREEDY, 60), stops=(stop,))
    assert result["finish_reason"] == "stop"
    assert "".join(shown) == full[:cut]
    assert result["usage"]["completion_tokens"] < 60


def test_the_start_of_a_stop_string_that_never_completes_is_shown_at_the_end(
        engine: Engine) -> None:
    chunks, _, _ = run(engine, Request(GREEDY, 30))
    full = "".join(chunks)
    never = full[-2:] + "\x00never"  # the reply ends with the start of this stop string
    shown, result, _ = run(engine, Request(GREEDY, 30), stops=(never,))
    assert result["finish_reason"] == "length"
    assert "".join(shown) == full


def test_the_reply_is_streamed_first_at_once_then_in_batches(engine: Engine) -> None:
    chunks, result, _ = run(engine, Request(GREEDY, 100))
    assert result["usage"]["completion_tokens"] == 100
    assert len(chunks[0]) <= 8  # one token's text
    assert 2 <= len(chunks) <= 50  # batched: far fewer messages than tokens
    assert result["tokens_per_s"] > 0 and result["ttft_s"] >= 0


def test_the_request_defaults() -> None:
    request = Request.from_params({"messages": [], "temperature": 0.2, "seed": 3})
    assert request.max_tokens == DEFAULT_MAX_TOKENS and not request.ignore_eos
    assert request.sampling.temperature == 0.2 and request.sampling.seed == 3
    assert request.sampling.top_k == DEFAULT_SAMPLING.top_k
    assert Request.from_params({"ignore_eos": True, "max_tokens": 9}).ignore_eos
    assert not Request.from_params({"ignore_eos": "yes"}).ignore_eos


def test_an_empty_prompt_is_refused_not_sampled_from_stale_logits(engine: Engine) -> None:
    from hivetray.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match="rendered these messages as nothing"):
        engine.load_prompt([], lambda: False)
