"""The chat role: the model's own chat template, then generation on llama.cpp's C API.

A request is rendered once by the template llama-cpp-python would use for this model (its
Jinja2 formatter over the GGUF ``tokenizer.chat_template``, with the model's BOS/EOS texts; for a
model without a template, the named format ``models.builtin.chat_format_for`` picks, e.g.
"gemma", else llama-cpp-python's "llama-2" fallback), tokenized, and handed to the lean loop of
``workers/generate.py``: prompt decoded in batches after the part the KV cache already holds,
sampler chain in C, stop strings from the formatter, chunks batched (the first at once, then
every 16 tokens or 40 ms), cancel checked before every token. The model stays loaded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from hivetray.chatparams import check_chat_params
from hivetray.errors import InvalidRequest, ModelLoadError
from hivetray.workers.context import RequestContext
from hivetray.workers.generate import FLUSH_SECONDS, FLUSH_TOKENS, Engine, Request
from hivetray.workers.loading import GENERATION_FLASH_ATTN, load_llama
from hivetray.workers.spec import WorkerSpec

__all__ = ["FLUSH_SECONDS", "FLUSH_TOKENS", "ChatHandler", "chat_messages", "prompt_formatter",
           "render"]

#: llama-cpp-python's format for a model with no template and no named format
FALLBACK_FORMAT = "llama-2"

#: renders messages; returns llama-cpp-python's ChatFormatterResponse (prompt, stop, ...)
Formatter = Callable[..., Any]


class ChatHandler:
    def __init__(self, spec: WorkerSpec) -> None:
        from hivetray.models.builtin import chat_format_for

        self.spec = spec
        named = chat_format_for(spec.model)
        self.llm = load_llama(spec, flash_attn=GENERATION_FLASH_ATTN, **named)
        self.format = prompt_formatter(self.llm, named.get("chat_format"))
        self.engine = Engine(self.llm)

    def info(self) -> dict[str, Any]:
        return {"n_ctx": self.engine.n_ctx, "model": self.spec.model}

    def handle(self, method: str, params: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        messages = chat_messages("chat", method, params)
        request = Request.from_params(params)
        started = time.perf_counter()
        rendered = render(self.format, messages)
        tokens = self.engine.tokenize(rendered.prompt, add_special=not rendered.added_special)
        if not self.engine.load_prompt(tokens, ctx.is_cancelled):
            return cancelled_before_reply(len(tokens))
        stops = stop_strings(rendered.stop, params)
        return self.engine.generate(request, stops, ctx, started=started,
                                    n_prompt=len(tokens), history=tokens)


def chat_messages(role: str, method: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's messages, after checking it is a chat request (chat and vision roles)."""
    if method != "chat":
        raise InvalidRequest(f"the {role} worker has no method {method!r}")
    return check_chat_params(params)


def prompt_formatter(llm: Any, chat_format: str | None) -> Formatter:
    """The formatter llama-cpp-python's ``create_chat_completion`` would render with: a named
    format when one is given, else the GGUF template, else the llama-2 fallback."""
    from llama_cpp import llama_chat_format

    template = llm.metadata.get("tokenizer.chat_template")
    if chat_format is None and template:
        return llama_chat_format.Jinja2ChatFormatter(
            template=template, eos_token=token_text(llm, llm.token_eos()),
            bos_token=token_text(llm, llm.token_bos()))
    return registered_formatter(chat_format or FALLBACK_FORMAT)


def registered_formatter(name: str) -> Formatter:
    """The formatter behind one of llama-cpp-python's named chat formats.

    Its registry keeps only the completion handler it wraps around each formatter; the
    formatter is that closure's ``chat_formatter`` (pinned by tests/workers/
    test_llama_cpp_api.py), which renders without evaluating anything."""
    from llama_cpp import llama_chat_format

    handler: Any = llama_chat_format.get_chat_completion_handler(name)
    cells = dict(zip(handler.__code__.co_freevars, handler.__closure__ or (), strict=True))
    if "chat_formatter" not in cells:
        raise ModelLoadError(f"llama-cpp-python's chat format {name!r} is not a plain "
                             "template: choose a model that has its own chat template")
    formatter: Formatter = cells["chat_formatter"].cell_contents
    return formatter


def token_text(llm: Any, token: int) -> str:
    """A special token's text as templates write it ("<bos>"), or "" when there is none."""
    import llama_cpp

    if token < 0:
        return ""
    raw = llama_cpp.llama_vocab_get_text(llama_cpp.llama_model_get_vocab(llm.model), token)
    return raw.decode("utf-8", errors="replace") if raw else ""


def render(formatter: Formatter, messages: list[dict[str, Any]]) -> Any:
    """The formatter's response for ``messages``; a template that refuses them (many raise
    "roles must alternate user/assistant") is the request's fault, said in one line."""
    import jinja2

    try:
        return formatter(messages=messages)
    except (ValueError, jinja2.TemplateError) as exc:
        reason = str(exc).split("\n", 1)[0]
        raise InvalidRequest(f"the model's chat template refused these messages ({reason}): "
                             "check the order of user and assistant turns") from exc


def stop_strings(template_stop: str | list[str] | None,
                 params: dict[str, Any]) -> list[str]:
    """The template's stop strings and the request's own (``stop``: a string or a list)."""
    stops: list[str] = []
    for stop in (template_stop, params.get("stop")):
        if stop:
            stops.extend([stop] if isinstance(stop, str) else stop)
    return stops


def cancelled_before_reply(n_prompt: int) -> dict[str, Any]:
    """The result of a request cancelled while its prompt was being decoded."""
    return {"usage": {"prompt_tokens": n_prompt, "completion_tokens": 0},
            "finish_reason": "cancelled", "tokens_per_s": None, "ttft_s": None}
