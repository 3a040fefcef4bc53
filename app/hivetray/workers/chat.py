"""The chat role: streaming chat completion on llama-cpp-python, with batching and cancel.

Chunks are batched (the first at once, then every 16 tokens or 40 ms) so a fast model does not
flood the pipe with one message per token, while text still appears immediately. Cancellation is
checked after every streamed piece and the generator is closed, so Stop takes effect within
a token or two and the model stays loaded.
"""

from __future__ import annotations

import re
import time
from typing import Any

from hivetray.chatparams import check_chat_params
from hivetray.errors import ContextOverflow, InvalidRequest
from hivetray.workers.context import RequestContext
from hivetray.workers.loading import load_llama
from hivetray.workers.spec import WorkerSpec

FLUSH_TOKENS = 16
FLUSH_SECONDS = 0.040
_OVERFLOW = re.compile(r"Requested tokens \((\d+)\) exceed context window of (\d+)")


class ChatHandler:
    def __init__(self, spec: WorkerSpec) -> None:
        from hivetray.models.builtin import chat_format_for

        self.spec = spec
        self.llm = load_llama(spec, **chat_format_for(spec.model))

    def info(self) -> dict[str, Any]:
        return {"n_ctx": self.llm.n_ctx(), "model": self.spec.model}

    def handle(self, method: str, params: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        return stream_chat(self.llm, chat_messages("chat", method, params), params, ctx)


def chat_messages(role: str, method: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's messages, after checking it is a chat request (chat and vision roles)."""
    if method != "chat":
        raise InvalidRequest(f"the {role} worker has no method {method!r}")
    return check_chat_params(params)


def stream_chat(llm: Any, messages: list[dict[str, Any]], params: dict[str, Any],
                ctx: RequestContext) -> dict[str, Any]:
    """Run one streamed chat completion; shared by the chat and vision roles."""
    counts = {"prompt": 0, "completion": 0}
    sample = llm.sample

    def counting_sample(*args: Any, **kwargs: Any) -> Any:
        # Llama.generate calls self.sample once per token; at the first call everything
        # evaluated so far is the prompt. (A logits_processor would count too, but it builds a
        # numpy view of the whole vocabulary per token: a measurable cost on fast models.)
        if counts["completion"] == 0:
            counts["prompt"] = int(llm.n_tokens)
        counts["completion"] += 1
        return sample(*args, **kwargs)

    llm.sample = counting_sample

    started = time.perf_counter()
    first_token_at: float | None = None
    pending: list[str] = []
    pending_tokens = 0
    last_flush = started
    finish_reason = "stop"
    try:
        stream = llm.create_chat_completion(
            messages=messages,
            max_tokens=int(params.get("max_tokens") or 512),
            temperature=float(params.get("temperature", 0.7)),
            stream=True,
        )
        for chunk in stream:
            if ctx.is_cancelled():
                stream.close()
                break
            choice = chunk["choices"][0]
            text = choice.get("delta", {}).get("content") or ""
            if choice.get("finish_reason"):
                finish_reason = choice["finish_reason"]
            if not text:
                continue
            pending.append(text)
            pending_tokens += 1
            now = time.perf_counter()
            if first_token_at is None:
                first_token_at = now
            if (pending_tokens == 1 and last_flush == started) or pending_tokens >= FLUSH_TOKENS \
                    or now - last_flush >= FLUSH_SECONDS:
                ctx.emit({"text": "".join(pending)})
                pending.clear()
                pending_tokens = 0
                last_flush = now
    except ValueError as exc:
        match = _OVERFLOW.search(str(exc))
        if match:
            raise ContextOverflow(int(match.group(1)), int(match.group(2))) from exc
        raise
    finally:
        del llm.sample  # back to the class's method
    if pending:
        ctx.emit({"text": "".join(pending)})
    elapsed = time.perf_counter() - (first_token_at or started)
    completion = counts["completion"]
    if ctx.is_cancelled():
        finish_reason = "cancelled"
    return {
        "usage": {"prompt_tokens": counts["prompt"], "completion_tokens": completion},
        "finish_reason": finish_reason,
        "tokens_per_s": completion / elapsed if elapsed > 0 and completion else None,
        "ttft_s": (first_token_at - started) if first_token_at else None,
    }
