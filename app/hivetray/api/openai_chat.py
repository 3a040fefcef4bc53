"""OpenAI chat and text completion requests → the instance's chat ``params``, and replies back.

Requests are checked field by field here (a wrong field is a 400 naming it, as OpenAI's
``param``), then by the same ``check_chat_params`` gate the socket uses, so both adapters refuse
the same things with the same words. Images arrive as ``image_url`` parts with ``data:`` URLs
(Hivetray fetches nothing from the network) and leave as :class:`ChatImage` bytes, checked with
the socket's own limits (``commands.check_image``); the vision worker puts them into the last
user message, so an image anywhere in the conversation is seen with the latest question.

``POST /v1/completions`` has no plain-continuation path in the workers yet (the chat worker
only renders conversations through the model's chat template): its ``prompt`` is sent as one
user message, and the reply is shaped as a ``text_completion``.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from hivetray.api.http_errors import BadField
from hivetray.chatparams import check_chat_params
from hivetray.commands import check_image
from hivetray.errors import PayloadTooLarge
from hivetray.images import ChatImage
from hivetray.sampling import SAMPLING_KEYS, sampling_problem
from hivetray.workers.spec import MAX_PAYLOAD_BYTES

#: OpenAI's roles → the chat template's ("developer" is the newer name of "system")
MESSAGE_ROLES = {"system": "system", "developer": "system", "user": "user",
                 "assistant": "assistant"}
MAX_STOP_STRINGS = 16
FINISH_REASONS = ("stop", "length")


@dataclass(frozen=True)
class ChatCall:
    """A checked request: what to send to ``Instance.chat`` and how to answer."""

    params: dict[str, Any]
    images: list[ChatImage] = field(default_factory=list)
    stream: bool = False
    include_usage: bool = False
    model: Any = None


def parse_chat(body: dict[str, Any]) -> ChatCall:
    """``POST /v1/chat/completions``'s body."""
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise BadField("messages", "'messages' must be a non-empty list of "
                                   "{'role', 'content'} objects")
    images: list[ChatImage] = []
    messages = [_message(n, message, images) for n, message in enumerate(raw, 1)]
    if body.get("tools"):
        raise BadField("tools", "tool calls are not supported by Hivetray's chat workers: "
                                "leave 'tools' out")
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") not in (None, "text"):
        raise BadField("response_format", "only text replies are supported: leave "
                                          "'response_format' out or use {'type': 'text'}")
    return _call(body, {"messages": messages}, images)


def parse_completion(body: dict[str, Any]) -> ChatCall:
    """``POST /v1/completions``'s body; the prompt goes to the chat worker as one user
    message (see the module's docstring)."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str) or not prompt:
        raise BadField("prompt", "'prompt' must be a non-empty string (one prompt per request; "
                                 "token arrays are not supported)")
    if body.get("echo"):
        raise BadField("echo", "'echo' is not supported: leave it out")
    if body.get("suffix"):
        raise BadField("suffix", "'suffix' (fill-in-the-middle) is not supported: leave it out")
    best_of = body.get("best_of")
    if best_of not in (None, 1):
        raise BadField("best_of", "only best_of = 1 is supported")
    return _call(body, {"messages": [{"role": "user", "content": prompt}]}, [])


def _call(body: dict[str, Any], params: dict[str, Any], images: list[ChatImage]) -> ChatCall:
    """The fields both endpoints share: length, sampling, stop, n, logprobs, streaming."""
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise BadField(name, f"'{name}' must be a whole number of at least 1")
        params.setdefault("max_tokens", value)  # max_completion_tokens wins: it comes first
    for key in SAMPLING_KEYS:
        value = body.get(key)
        if value is not None:
            if (problem := sampling_problem(key, value)) is not None:
                raise BadField(key, problem)
            params[key] = value
    stop = _stop(body.get("stop"))
    if stop:
        params["stop"] = stop
    if body.get("n") not in (None, 1):
        raise BadField("n", "only n = 1 is supported: ask again for another reply")
    if body.get("logprobs"):
        raise BadField("logprobs", "'logprobs' is not supported: leave it out")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise BadField("stream", "'stream' must be true or false")
    options = body.get("stream_options")
    options = {} if options is None else options
    if not isinstance(options, dict):
        raise BadField("stream_options", "'stream_options' must be an object such as "
                                         "{'include_usage': true}")
    include_usage = options.get("include_usage", False)
    if not isinstance(include_usage, bool):
        raise BadField("stream_options", "'stream_options.include_usage' must be true or false")
    check_chat_params(params)  # the socket's own gate: same rules, same words
    return ChatCall(params, images, stream, stream and include_usage, body.get("model"))


def _stop(value: Any) -> list[str]:
    if value is None:
        return []
    stops = [value] if isinstance(value, str) else value
    if (not isinstance(stops, list) or len(stops) > MAX_STOP_STRINGS
            or not all(isinstance(s, str) and s for s in stops)):
        raise BadField("stop", f"'stop' must be a string or a list of up to {MAX_STOP_STRINGS} "
                               "non-empty strings")
    return list(stops)


def _message(n: int, message: Any, images: list[ChatImage]) -> dict[str, Any]:
    """One OpenAI message as the chat template takes it; its images are collected aside."""
    if not isinstance(message, dict):
        raise BadField("messages", f"message {n} must be an object with 'role' and 'content'")
    named = message.get("role")
    role = MESSAGE_ROLES.get(named) if isinstance(named, str) else None
    if role is None:
        raise BadField("messages", f"message {n}: role {named!r} is not "
                                   "supported (system, developer, user and assistant are)")
    content = message.get("content")
    if content is None and role == "assistant":
        content = ""
    if isinstance(content, str):
        return {"role": role, "content": content}
    if not isinstance(content, list):
        raise BadField("messages", f"message {n}: 'content' must be text or a list of parts")
    texts: list[str] = []
    for k, part in enumerate(content, 1):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "image_url" and role == "user":
            images.append(_image(part.get("image_url"), f"image {len(images) + 1} "
                                                        f"(message {n}, part {k})"))
        else:
            raise BadField("messages", f"message {n}, part {k}: only 'text' parts (and "
                                       "'image_url' parts in user messages) are supported")
    return {"role": role, "content": "\n".join(texts)}


def _image(image_url: Any, name: str) -> ChatImage:
    """A ``data:`` URL → the image's bytes, checked with the socket's limits."""
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    if not isinstance(url, str) or not url.startswith("data:"):
        raise BadField("messages", f"{name}: only data: URLs are supported "
                                   "(data:image/png;base64,...); Hivetray fetches nothing")
    header, comma, encoded = url.partition(",")
    if not comma or not header.endswith(";base64"):
        raise BadField("messages", f"{name}: the data: URL must be base64 "
                                   "(data:image/png;base64,...)")
    estimate = len(encoded) * 3 // 4
    if estimate > MAX_PAYLOAD_BYTES:  # before decoding it
        raise PayloadTooLarge(estimate, MAX_PAYLOAD_BYTES)
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise BadField("messages", f"{name}: the data: URL is not valid base64") from None
    return check_image(name, data)


# -- replies ------------------------------------------------------------------------------------
def finish_reason(result: dict[str, Any]) -> str:
    reason = result.get("finish_reason")
    return reason if reason in FINISH_REASONS else "stop"


def usage(result: dict[str, Any]) -> dict[str, int]:
    counts = result.get("usage") or {}
    prompt = int(counts.get("prompt_tokens") or 0)
    completion = int(counts.get("completion_tokens") or 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


class Replies:
    """The reply objects of one request: one id and timestamp for all its chunks."""

    def __init__(self, model: str, *, text_completion: bool = False) -> None:
        self.model = model
        self.text_completion = text_completion
        self.id = ("cmpl-" if text_completion else "chatcmpl-") + secrets.token_hex(12)
        self.created = int(time.time())

    def _head(self, kind: str) -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    def chunk(self, text: str | None, reason: str | None = None, *,
              first: bool = False) -> dict[str, Any]:
        """A streamed piece (``text`` None: the closing chunk carrying ``reason``)."""
        if self.text_completion:
            choice: dict[str, Any] = {"index": 0, "text": text or "", "logprobs": None,
                                      "finish_reason": reason}
            return {**self._head("text_completion"), "choices": [choice]}
        delta: dict[str, Any] = {"role": "assistant"} if first else {}
        if text is not None:
            delta["content"] = text
        return {**self._head("chat.completion.chunk"),
                "choices": [{"index": 0, "delta": delta, "logprobs": None,
                             "finish_reason": reason}]}

    def usage_chunk(self, result: dict[str, Any]) -> dict[str, Any]:
        """``stream_options.include_usage``: the last chunk, no choices, the usage."""
        kind = "text_completion" if self.text_completion else "chat.completion.chunk"
        return {**self._head(kind), "choices": [], "usage": usage(result)}

    def whole(self, text: str, result: dict[str, Any]) -> dict[str, Any]:
        """The non-streamed reply."""
        reason = finish_reason(result)
        if self.text_completion:
            choice: dict[str, Any] = {"index": 0, "text": text, "logprobs": None,
                                      "finish_reason": reason}
            return {**self._head("text_completion"), "choices": [choice],
                    "usage": usage(result)}
        message = {"role": "assistant", "content": text}
        return {**self._head("chat.completion"),
                "choices": [{"index": 0, "message": message, "logprobs": None,
                             "finish_reason": reason}],
                "usage": usage(result)}
