"""The shape of a chat request's parameters, checked once for every way in.

Why its own module: the socket adapter (``hivetray.commands``) checks a client's request before
any worker is involved, and the chat and vision workers check again what reaches them (the
quick-chat window and a future HTTP adapter call the pool directly) — with the same rules and
the same one-line ``InvalidRequest``, never a TypeError from deep inside llama-cpp-python.
Pure Python, importable on both sides of the process boundary.
"""

from __future__ import annotations

from typing import Any

from hivetray.errors import InvalidRequest
from hivetray.sampling import check_sampling_params

ROLES = ("system", "user", "assistant")


def check_chat_params(params: Any) -> list[dict[str, Any]]:
    """Raise InvalidRequest unless ``params`` is a valid chat request; return its messages."""
    if not isinstance(params, dict):
        raise InvalidRequest("chat needs 'params': an object with 'messages'")
    messages = params.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("chat needs a non-empty 'messages' list")
    for n, message in enumerate(messages, 1):
        _check_message(n, message)
    max_tokens = params.get("max_tokens")
    if max_tokens is not None and (not isinstance(max_tokens, int)
                                   or isinstance(max_tokens, bool) or max_tokens < 1):
        raise InvalidRequest("'max_tokens' must be a whole number of at least 1")
    check_sampling_params(params)
    _check_stop(params.get("stop"))
    return messages


#: stop strings a request may give (OpenAI's limit)
MAX_STOP_STRINGS = 4


def _check_stop(stop: Any) -> None:
    """``stop``: a non-empty string, or a list of at most four of them (None = none)."""
    stops = [stop] if isinstance(stop, str) else stop
    if stop is None:
        return
    if not isinstance(stops, list) or not 0 < len(stops) <= MAX_STOP_STRINGS \
            or not all(isinstance(s, str) and s for s in stops):
        raise InvalidRequest(f"'stop' must be a non-empty string or a list of 1 to "
                             f"{MAX_STOP_STRINGS} non-empty strings")


def _check_message(n: int, message: Any) -> None:
    if not isinstance(message, dict):
        raise InvalidRequest(f"message {n} must be an object with 'role' and 'content'")
    if message.get("role") not in ROLES:
        raise InvalidRequest(f"message {n}: 'role' must be one of {', '.join(ROLES)}")
    content = message.get("content")
    if isinstance(content, str):
        return
    if not isinstance(content, list) or not all(_part_ok(part) for part in content):
        raise InvalidRequest(f"message {n}: 'content' must be text, or a list of "
                             "{'type': 'text', 'text': ...} parts")


def _part_ok(part: Any) -> bool:
    if not isinstance(part, dict):
        return False
    if part.get("type") == "text":
        return isinstance(part.get("text"), str)
    return part.get("type") == "image_url"  # the vision worker puts images in as parts
