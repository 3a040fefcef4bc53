"""OpenAI requests → the instance's arguments, checked field by field; replies shaped back."""

from __future__ import annotations

import base64
import io
import struct
from typing import Any

import pytest
from PIL import Image

from hivetray.api.http_errors import BadField, ModelNotFound
from hivetray.api.models import model_list, pick_role
from hivetray.api.openai_chat import Replies, parse_chat, parse_completion
from hivetray.api.openai_vectors import (
    float32_base64,
    parse_embeddings,
    parse_rerank,
    rerank_reply,
)
from hivetray.errors import InvalidImage, InvalidRequest, PayloadTooLarge
from hivetray.pool.states import RoleState
from hivetray.pool.status import RoleStatus


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (4, 4)).save(out, format="PNG")
    return out.getvalue()


def data_url(data: bytes, kind: str = "image/png") -> str:
    return f"data:{kind};base64," + base64.b64encode(data).decode()


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def test_a_chat_request_becomes_the_instances_params() -> None:
    call = parse_chat({
        "model": "chat", "max_tokens": 50, "max_completion_tokens": 20, "temperature": 0,
        "top_p": 0.9, "seed": 7, "top_k": 10, "min_p": 0.1, "repeat_penalty": 1.2,
        "stop": "###", "stream": True, "stream_options": {"include_usage": True},
        "frequency_penalty": 0, "user": "someone",
        "messages": [{"role": "developer", "content": "be brief"},
                     user([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]),
                     {"role": "assistant", "content": None, "name": "bot"}]})
    assert call.params == {
        "messages": [{"role": "system", "content": "be brief"},
                     {"role": "user", "content": "a\nb"},
                     {"role": "assistant", "content": ""}],
        "max_tokens": 20,  # max_completion_tokens wins over the older name
        "temperature": 0, "top_p": 0.9, "seed": 7, "top_k": 10, "min_p": 0.1,
        "repeat_penalty": 1.2, "stop": ["###"]}
    assert call.stream and call.include_usage and call.model == "chat" and call.images == []


def test_include_usage_only_counts_when_streaming() -> None:
    call = parse_chat({"messages": [user("x")], "stream_options": {"include_usage": True}})
    assert not call.stream and not call.include_usage


def test_images_leave_the_messages_as_checked_bytes() -> None:
    image = png()
    call = parse_chat({"messages": [user([
        {"type": "text", "text": "what is it?"},
        {"type": "image_url", "image_url": {"url": data_url(image), "detail": "low"}}])]})
    assert call.params["messages"] == [{"role": "user", "content": "what is it?"}]
    assert [i.data for i in call.images] == [image]
    assert call.images[0].name.startswith("image 1")
    bare = parse_chat({"messages": [user([{"type": "image_url", "image_url": data_url(image)}])]})
    assert len(bare.images) == 1  # the url as a plain string, as some clients send it


@pytest.mark.parametrize(("url", "error", "says"), [
    ("https://example.com/cat.png", BadField, "only data: URLs"),
    ("data:image/png,rawbytes", BadField, "must be base64"),
    ("data:image/png;base64,%%%", BadField, "not valid base64"),
    (data_url(b"GIF? no, text"), InvalidImage, "not PNG, JPEG"),
    (data_url(b""), InvalidImage, "it is empty"),
])
def test_bad_images_are_refused_before_any_worker(url: str, error: type[Exception],
                                                  says: str) -> None:
    with pytest.raises(error, match=says):
        parse_chat({"messages": [user([{"type": "image_url", "image_url": {"url": url}}])]})


def test_an_oversized_image_is_413_before_it_is_decoded(monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    from hivetray.api import openai_chat

    monkeypatch.setattr(openai_chat, "MAX_PAYLOAD_BYTES", 1000)
    with pytest.raises(PayloadTooLarge):
        parse_chat({"messages": [user([{"type": "image_url",
                                        "image_url": {"url": data_url(b"x" * 2000)}}])]})


@pytest.mark.parametrize(("body", "param"), [
    ({}, "messages"),
    ({"messages": []}, "messages"),
    ({"messages": ["hi"]}, "messages"),
    ({"messages": [user(3)]}, "messages"),
    ({"messages": [{"role": "tool", "content": "42"}]}, "messages"),
    ({"messages": [{"role": ["user"], "content": "x"}]}, "messages"),
    ({"messages": [user([{"type": "input_audio"}])]}, "messages"),
    ({"messages": [{"role": "assistant", "content": [
        {"type": "image_url", "image_url": {"url": "data:,"}}]}]}, "messages"),
    ({"messages": [user("x")], "max_tokens": 0}, "max_tokens"),
    ({"messages": [user("x")], "max_completion_tokens": "9"}, "max_completion_tokens"),
    ({"messages": [user("x")], "temperature": 9}, "temperature"),
    ({"messages": [user("x")], "top_p": 0}, "top_p"),
    ({"messages": [user("x")], "seed": -1}, "seed"),
    ({"messages": [user("x")], "stop": ["a", ""]}, "stop"),
    ({"messages": [user("x")], "stop": [1]}, "stop"),
    ({"messages": [user("x")], "stop": ["s"] * 17}, "stop"),
    ({"messages": [user("x")], "n": 2}, "n"),
    ({"messages": [user("x")], "logprobs": True}, "logprobs"),
    ({"messages": [user("x")], "stream": "yes"}, "stream"),
    ({"messages": [user("x")], "stream_options": []}, "stream_options"),
    ({"messages": [user("x")], "tools": [{"type": "function"}]}, "tools"),
    ({"messages": [user("x")], "response_format": {"type": "json_object"}},
     "response_format"),
])
def test_a_bad_field_is_a_400_naming_it(body: dict[str, Any], param: str) -> None:
    with pytest.raises(BadField) as refused:
        parse_chat(body)
    assert refused.value.param == param
    assert "\n" not in str(refused.value)


def test_a_text_completion_prompt_is_one_user_message() -> None:
    call = parse_completion({"prompt": ["Once upon a time"], "max_tokens": 5, "stop": ["\n"]})
    assert call.params == {"messages": [user("Once upon a time")], "max_tokens": 5,
                           "stop": ["\n"]}
    for body, param in (({"prompt": [1, 2, 3]}, "prompt"), ({"prompt": ["a", "b"]}, "prompt"),
                        ({"prompt": "x", "echo": True}, "echo"),
                        ({"prompt": "x", "suffix": "end"}, "suffix"),
                        ({"prompt": "x", "best_of": 3}, "best_of")):
        with pytest.raises(BadField) as refused:
            parse_completion(body)
        assert refused.value.param == param


def test_reply_shapes_for_chat_and_text_completions() -> None:
    result = {"usage": {"prompt_tokens": 7, "completion_tokens": 3},
              "finish_reason": "length"}
    chat = Replies("chat")
    whole = chat.whole("abc", result)
    assert whole["object"] == "chat.completion" and whole["id"].startswith("chatcmpl-")
    assert whole["choices"][0]["message"] == {"role": "assistant", "content": "abc"}
    assert whole["usage"] == {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    assert chat.chunk("", first=True)["choices"][0]["delta"] == {"role": "assistant",
                                                                 "content": ""}
    closing = chat.chunk(None, "stop")["choices"][0]
    assert closing["delta"] == {} and closing["finish_reason"] == "stop"
    assert chat.usage_chunk(result)["choices"] == []
    text = Replies("chat", text_completion=True)
    assert text.whole("abc", {**result, "finish_reason": "cancelled"})["choices"][0] == {
        "index": 0, "text": "abc", "logprobs": None, "finish_reason": "stop"}
    assert text.chunk("d")["object"] == "text_completion"


def test_embeddings_requests() -> None:
    assert parse_embeddings({"input": "one"}).texts == ["one"]
    call = parse_embeddings({"input": ["a", "b"], "encoding_format": "base64"})
    assert call.texts == ["a", "b"] and call.base64
    for body, param in (({"input": []}, "input"), ({"input": [[1, 2]]}, "input"),
                        ({"input": ["a", ""]}, "input"), ({}, "input"),
                        ({"input": "a", "encoding_format": "int8"}, "encoding_format"),
                        ({"input": "a", "dimensions": 32}, "dimensions")):
        with pytest.raises(BadField) as refused:
            parse_embeddings(body)
        assert refused.value.param == param


def test_base64_embeddings_are_little_endian_float32() -> None:
    vector = [0.5, -1.25, 3.0e-3]
    raw = base64.b64decode(float32_base64(vector))
    assert raw == struct.pack("<3f", *vector)


def test_rerank_requests_and_replies() -> None:
    call = parse_rerank({"query": "q", "texts": ["a", {"text": "b"}], "top_n": 1})
    assert call.documents == ["a", "b"] and call.top_n == 1 and call.return_documents
    reply = rerank_reply(call, "rerank", {
        "results": [{"index": 1, "document": "b", "score": 0.9}],
        "usage": {"prompt_tokens": 12}})
    assert reply["results"] == [{"index": 1, "relevance_score": 0.9,
                                 "document": {"text": "b"}}]
    assert reply["usage"] == {"prompt_tokens": 12, "total_tokens": 12}
    for body, param in (({"documents": ["a"]}, "query"), ({"query": "q"}, "documents"),
                        ({"query": "q", "documents": [1]}, "documents"),
                        ({"query": "q", "documents": ["a"], "top_n": 0}, "top_n"),
                        ({"query": "q", "documents": ["a"], "return_documents": 1},
                         "return_documents")):
        with pytest.raises(BadField) as refused:
            parse_rerank(body)
        assert refused.value.param == param


ROLES = (RoleStatus("chat", RoleState.READY, model="/m/SmolLM2-135M.Q4_1.gguf"),
         RoleStatus("vision", RoleState.STOPPED, model="/m/vis.gguf"),
         RoleStatus("embed", RoleState.UNCONFIGURED),
         RoleStatus("rerank", RoleState.COOLING_DOWN, model="/m/rr.gguf", retry_in_s=12.0))


@pytest.mark.parametrize(("model", "role"), [
    (None, "chat"), ("", "chat"), ("chat", "chat"), ("vision", "vision"),
    ("SmolLM2-135M.Q4_1.gguf", "chat"), ("SmolLM2-135M.Q4_1", "chat"), ("vis", "vision"),
])
def test_the_model_picks_the_role(model: Any, role: str) -> None:
    assert pick_role(model, ROLES, ("chat", "vision")) == role


def test_a_model_for_another_endpoint_or_none_at_all() -> None:
    with pytest.raises(InvalidRequest, match="/v1/rerank"):
        pick_role("rr", ROLES, ("chat", "vision"))
    with pytest.raises(ModelNotFound, match="'embed'"):
        pick_role("gpt-4o", ROLES, ("embed",))
    with pytest.raises(BadField):
        pick_role(3, ROLES, ("embed",))


def test_the_model_list_has_each_configured_role_and_its_state() -> None:
    listed = model_list(ROLES, created=123)
    assert listed["object"] == "list"
    rows = {row["id"]: row for row in listed["data"]}
    assert set(rows) == {"chat", "vision", "rerank"}
    assert rows["rerank"]["state"] == "cooling_down" and rows["rerank"]["retry_in_s"] == 12.0
    assert rows["chat"]["file"] == "SmolLM2-135M.Q4_1.gguf" and rows["chat"]["created"] == 123
    assert rows["vision"]["endpoint"] == "/v1/chat/completions"


def test_a_role_name_wins_over_a_model_file_of_the_same_name() -> None:
    roles = (RoleStatus("chat", RoleState.READY, model="/m/vision.gguf"),
             RoleStatus("vision", RoleState.READY, model="/m/llava.gguf"))
    assert pick_role("vision", roles, ("chat", "vision")) == "vision"
    assert pick_role("vision.gguf", roles, ("chat", "vision")) == "chat"
