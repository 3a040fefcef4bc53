"""SSE framing as OpenAI and llama-server send it: one ``data:`` line per event, a blank line
after each, ``data: [DONE]`` at the end."""

from __future__ import annotations

import json

from hivetray.api.sse import DONE, HEADERS, event


def test_an_event_is_one_data_line_and_a_blank_line() -> None:
    payload = {"choices": [{"delta": {"content": "two\n\nparagraphs\r\nand é ☃"}}]}
    framed = event(payload)
    assert framed.startswith(b"data: ") and framed.endswith(b"\n\n")
    body = framed[len(b"data: "):-2]
    assert b"\n" not in body and b"\r" not in body  # newlines in text cannot split an event
    assert json.loads(body) == payload
    assert "é ☃".encode() in body  # UTF-8, not \\u escapes: smaller, as llama-server sends


def test_the_stream_ends_with_done() -> None:
    assert DONE == b"data: [DONE]\n\n"


def test_the_stream_headers_keep_proxies_from_buffering() -> None:
    assert HEADERS["Content-Type"].startswith("text/event-stream")
    assert HEADERS["Cache-Control"] == "no-cache" and HEADERS["X-Accel-Buffering"] == "no"
