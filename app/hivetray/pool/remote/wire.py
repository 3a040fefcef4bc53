"""The OpenAI-compatible wire: request bodies for each role, reading the answers, and what a
failed answer means.

Why apart from the link: these are pure functions over dicts and bytes, each a fast unit test;
the link only moves them over HTTP and decides what a failure does to the role.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

from hivetray.errors import RemoteRequestError, RemoteSetupError
from hivetray.images import sniff_image_type

#: request keys passed through to /v1/chat/completions: OpenAI's, then llama-server's
#: extensions (vLLM and Ollama ignore the ones they do not know)
CHAT_KEYS = ("max_tokens", "temperature", "top_p", "seed", "stop",
             "top_k", "min_p", "repeat_penalty", "repeat_last_n", "ignore_eos")
#: the endpoint each role's requests go to
ENDPOINTS = {"chat": "/v1/chat/completions", "embed": "/v1/embeddings", "rerank": "/v1/rerank"}
#: what a role needs of the engine, for the message when the endpoint is missing
NEEDS = {"/v1/chat/completions": "chat completions",
         "/v1/embeddings": "embeddings (llama-server: start it with --embeddings)",
         "/v1/rerank": "reranking (llama-server: start it with --reranking)"}


class EngineDown(Exception):
    """The engine failed as a whole (unreachable, 5xx, dropped connection, timeout): the link
    reports it as its exit, which the supervisor counts against the restart budget."""

    def __init__(self, how: str) -> None:
        super().__init__(how)
        self.how = how


def chat_body(model: str | None, params: dict[str, Any]) -> dict[str, Any]:
    """``POST /v1/chat/completions`` for a chat or vision request, streamed with usage."""
    messages = [dict(m) for m in params.get("messages") or []]
    images = list(params.get("images") or [])
    if images:
        attach_images(messages, images)
    body: dict[str, Any] = {"messages": messages, "stream": True,
                            "stream_options": {"include_usage": True}}
    if model:
        body["model"] = model
    for key in CHAT_KEYS:
        if params.get(key) is not None:
            body[key] = params[key]
    return body


def attach_images(messages: list[dict[str, Any]], images: list[dict[str, Any]]) -> None:
    """Add the images to the last user message as data URLs (OpenAI's vision shape)."""
    last = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=None)
    if last is None:
        raise RemoteRequestError("an image needs a user message to go with it", "vision")
    content = messages[last].get("content")
    parts = list(content) if isinstance(content, list) else [
        {"type": "text", "text": content or ""}]
    for image in images:
        data = bytes(image.get("data") or b"")
        kind = sniff_image_type(data) or "png"
        url = f"data:image/{kind};base64,{base64.b64encode(data).decode('ascii')}"
        parts.append({"type": "image_url", "image_url": {"url": url}})
    messages[last] = {**messages[last], "content": parts}


@dataclass
class StreamState:
    """What a chat stream has said so far (usage, finish reason, llama-server's timings)."""

    finish_reason: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, Any] = field(default_factory=dict)
    chunks: int = 0
    done: bool = False


def read_event(line: bytes, state: StreamState, role: str) -> str | None:
    """One SSE line of a chat stream: the text it adds (or None); updates ``state``. A line
    that is not JSON, or an error event, is a :class:`RemoteRequestError`."""
    text = line.decode("utf-8", errors="replace").strip()
    if not text.startswith("data:"):
        return None  # blank separators, comments, "event:"/"id:" fields
    data = text[5:].strip()
    if data == "[DONE]":
        state.done = True
        return None
    try:
        event = json.loads(data)
    except ValueError:
        raise RemoteRequestError(f"the {role} engine sent a stream event that is not JSON "
                                 f"({data[:60]!r}…): is the url an OpenAI-compatible server?",
                                 role) from None
    if not isinstance(event, dict):
        raise RemoteRequestError(f"the {role} engine sent a malformed stream event", role)
    if event.get("error"):
        raise RemoteRequestError(f"the {role} engine stopped the reply: "
                                 f"{error_text(event)}", role)
    if isinstance(event.get("usage"), dict):
        state.usage = event["usage"]
    if isinstance(event.get("timings"), dict):
        state.timings = event["timings"]
    choices = event.get("choices") or []
    if not choices or not isinstance(choices[0], dict):
        return None
    choice = choices[0]
    if choice.get("finish_reason"):
        state.finish_reason = str(choice["finish_reason"])
    content = (choice.get("delta") or {}).get("content")
    if isinstance(content, str) and content:
        state.chunks += 1
        return content
    return None


def embeddings(body: Any, count: int, role: str) -> list[list[float]]:
    """The vectors of ``POST /v1/embeddings``, in input order."""
    try:
        rows = sorted(body["data"], key=lambda row: int(row.get("index", 0)))
        vectors = [[float(x) for x in row["embedding"]] for row in rows]
    except (KeyError, TypeError, ValueError):
        raise RemoteRequestError(f"the {role} engine's embeddings answer is malformed", role,
                                 None) from None
    if len(vectors) != count or any(v and isinstance(v[0], list) for v in vectors):
        raise RemoteRequestError(f"the {role} engine returned {len(vectors)} vectors for "
                                 f"{count} texts: does it pool embeddings (llama-server: "
                                 "--pooling mean)?", role)
    return vectors


def rerank_scores(body: Any, count: int, role: str) -> list[float]:
    """The scores of ``POST /v1/rerank`` (llama-server's, Jina's, vLLM's shape), by index."""
    scores: list[float | None] = [None] * count
    try:
        for row in body["results"]:
            score = row.get("relevance_score", row.get("score"))
            scores[int(row["index"])] = float(score)
    except (KeyError, TypeError, ValueError, IndexError):
        raise RemoteRequestError(f"the {role} engine's rerank answer is malformed", role,
                                 None) from None
    if any(s is None for s in scores):
        raise RemoteRequestError(f"the {role} engine scored only some documents", role)
    return [s for s in scores if s is not None]


def usage_of(body: Any) -> dict[str, int]:
    usage = body.get("usage") if isinstance(body, dict) else None
    usage = usage if isinstance(usage, dict) else {}
    return {"prompt_tokens": int(usage.get("prompt_tokens") or 0),
            "completion_tokens": int(usage.get("completion_tokens") or 0)}


def error_text(body: Any) -> str:
    """The server's own reason, from OpenAI's ``{"error": {"message"}}``, Ollama's
    ``{"error": "..."}``, FastAPI's ``{"detail"}``, or plain text; one line, bounded."""
    if isinstance(body, dict):
        err = body.get("error", body.get("detail"))
        if isinstance(err, dict):
            err = err.get("message") or err.get("type")
        text = str(err) if err else json.dumps(body)
    else:
        text = str(body)
    line = text.strip().split("\n", 1)[0]
    return line[:200] or "no reason given"


def status_error(status: int, body: Any, *, role: str, url: str, path: str,
                 key_env: str | None, setup: bool = False) -> Exception:
    """What an HTTP error status means: 5xx → :class:`EngineDown` (counted); 401/403, an
    unknown endpoint, or any other 4xx → a typed error saying what to do. While connecting
    (``setup``) those are :class:`RemoteSetupError` (the role goes to ``error``)."""
    reason = error_text(body)
    if status >= 500 and status != 501:  # 501: llama-server's "not supported" (no --reranking)
        return EngineDown(f"answered HTTP {status} ({reason})")
    if status in (401, 403):
        fix = (f"set the right key in ${key_env}" if key_env else
               "set api_key_env for this role to the variable that holds the key")
        message = f"the {role} engine at {url} refused the key (HTTP {status}): {fix}"
    elif status in (404, 501):
        message = (f"the {role} engine at {url} has no {path} (HTTP {status}): it does not serve "
                   f"{NEEDS.get(path, path)}; point the role at an engine that does")
    else:
        message = f"the {role} engine refused the request (HTTP {status}): {reason}"
    if setup:
        return RemoteSetupError(message)
    return RemoteRequestError(message, role, status)
