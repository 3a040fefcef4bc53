"""The HTTP API end to end: a real ``hivetray daemon --api`` with the tiny models, driven by the
real ``openai`` client (chat, completions, embeddings, models, an image to vision) and by plain
``http.client`` (rerank, metrics, the key, the breaker's 503, a disconnect, raw SSE)."""

from __future__ import annotations

import asyncio
import base64
import http.client
import io
import json
import os
import signal
import socket
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import openai
import pytest
from PIL import Image

from hivetray.config import PoolConfig, default_role
from hivetray.paths import AppPaths
from tests.helpers.api import ApiDaemon, all_roles_config, start_api
from tests.helpers.daemon import StartDaemon, cli, role_row
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.real


@pytest.fixture
def api(start_daemon: StartDaemon, write_config: Any,
        tiny_models: dict[str, Path]) -> ApiDaemon:
    write_config(all_roles_config(tiny_models))
    return start_api(start_daemon)


def client(api: ApiDaemon, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=api.base_url, api_key=key or api.key, max_retries=0,
                         timeout=60)


def png_data_url() -> str:
    out = io.BytesIO()
    Image.new("RGB", (24, 24), (200, 30, 30)).save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def test_chat_with_the_openai_client_streamed_and_not(api: ApiDaemon) -> None:
    oai = client(api)
    reply = oai.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "hello"}], max_tokens=6)
    assert reply.object == "chat.completion" and reply.model == "chat"
    assert reply.choices[0].message.role == "assistant" and reply.choices[0].message.content
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage is not None and reply.usage.completion_tokens == 6
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + 6

    chunks = list(oai.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "hello"}], max_tokens=12,
        stream=True, stream_options={"include_usage": True}))
    *content, closing, usage = chunks
    assert content[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in content)
    assert closing.choices[0].finish_reason == "length"
    assert usage.choices == [] and usage.usage is not None
    assert usage.usage.completion_tokens == 12 and usage.usage.prompt_tokens > 0
    assert len({c.id for c in chunks}) == 1  # one id for the whole stream

    plain = list(oai.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "hello"}], max_tokens=4,
        stream=True))
    assert all(c.usage is None for c in plain)  # usage only when asked for
    assert role_row("chat")["requests"] == 3


def test_the_raw_stream_is_framed_as_llama_server_frames_it(api: ApiDaemon) -> None:
    status, headers, body = api.request("POST", "/v1/chat/completions", {
        "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "stream": True})
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    text = body.decode()
    assert text.endswith("data: [DONE]\n\n")
    events = text.split("\n\n")[:-1]
    assert all(e.startswith("data: ") and "\n" not in e for e in events)
    payloads = [json.loads(e[len("data: "):]) for e in events[:-1]]
    assert all(p["object"] == "chat.completion.chunk" for p in payloads)


def test_text_completions_and_the_model_picked_by_file_name(api: ApiDaemon) -> None:
    oai = client(api)
    done = oai.completions.create(model="chat.gguf", prompt="Once upon", max_tokens=5)
    assert done.object == "text_completion" and done.choices[0].text
    assert done.usage is not None and done.usage.completion_tokens == 5
    pieces = list(oai.completions.create(model="chat", prompt="Once", max_tokens=5,
                                         stream=True))
    assert "".join(p.choices[0].text for p in pieces if p.choices)
    assert pieces[-1].choices[0].finish_reason == "length"
    with pytest.raises(openai.NotFoundError, match="not served here"):
        oai.completions.create(model="gpt-3.5-turbo-instruct", prompt="x", max_tokens=2)


def test_embeddings_as_floats_and_as_base64(api: ApiDaemon) -> None:
    oai = client(api)
    one = oai.embeddings.create(model="embed", input="a short text", encoding_format="float")
    assert len(one.data) == 1 and len(one.data[0].embedding) == 64
    assert one.usage.prompt_tokens > 0
    texts = ["first text", "second text", "a third, longer text"]
    floats = oai.embeddings.create(model="embed", input=texts, encoding_format="float")
    assert [d.index for d in floats.data] == [0, 1, 2]
    # the client's default asks for base64 and decodes it as little-endian float32
    decoded = oai.embeddings.create(model="embed", input=texts)
    for as_float, as_b64 in zip(floats.data, decoded.data, strict=True):
        assert np.allclose(as_float.embedding, as_b64.embedding, atol=1e-6)
    status, _, raw = api.json("POST", "/v1/embeddings",
                              {"input": texts, "encoding_format": "base64"})
    assert status == 200 and isinstance(raw["data"][0]["embedding"], str)
    vector = np.frombuffer(base64.b64decode(raw["data"][0]["embedding"]), dtype="<f4")
    assert np.allclose(vector, floats.data[0].embedding, atol=1e-6)
    assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-3  # normalised, as the CLI's


def test_models_lists_each_configured_role_with_its_state(
        start_daemon: StartDaemon, write_config: Any, tiny_models: dict[str, Path]) -> None:
    config = all_roles_config(tiny_models)
    write_config(replace(config, roles={**config.roles, "rerank": default_role("rerank")}))
    api = start_api(start_daemon)
    listed = {m.id: m for m in client(api).models.list()}
    assert set(listed) == {"chat", "vision", "embed"}
    assert all(m.owned_by == "hivetray" for m in listed.values())
    assert listed["chat"].model_extra is not None
    assert listed["chat"].model_extra["state"] == "stopped"
    client(api).embeddings.create(model="embed", input="x")
    again = {m.id: m for m in client(api).models.list()}
    assert again["embed"].model_extra is not None
    assert again["embed"].model_extra["state"] == "ready"
    # an unconfigured role says what to do
    status, headers, body = api.json("POST", "/v1/rerank", {"query": "q", "documents": ["d"]})
    assert status == 404 and body["error"]["code"] == "model_not_configured"
    assert "hivetray models set rerank" in body["error"]["message"]
    assert headers["x-should-retry"] == "false"


def test_an_image_message_goes_to_the_vision_worker(api: ApiDaemon) -> None:
    reply = client(api).chat.completions.create(model="chat", max_tokens=4, messages=[
        {"role": "user", "content": [{"type": "text", "text": "what is this?"},
                                     {"type": "image_url", "image_url": {"url": png_data_url()}}]}])
    assert reply.model == "vision" and reply.choices[0].message.content
    assert role_row("vision")["requests"] == 1 and role_row("chat")["requests"] == 0
    with pytest.raises(openai.BadRequestError, match="not an image Hivetray can read"):
        client(api).chat.completions.create(model="vision", max_tokens=4, messages=[
            {"role": "user", "content": [{"type": "image_url", "image_url": {
                "url": "data:image/png;base64," + base64.b64encode(b"not a png").decode()}}]}])


def test_rerank_in_llama_servers_shape_on_every_alias(api: ApiDaemon) -> None:
    documents = ["the cat sat", "stock prices", "a cat on a mat", "weather today"]
    answers = []
    for path in ("/v1/rerank", "/rerank", "/v1/reranking"):
        status, _, body = api.json("POST", path, {"model": "rerank", "query": "cats",
                                                  "documents": documents, "top_n": 3})
        assert status == 200, body
        answers.append(body)
    body = answers[0]
    assert body["object"] == "list" and body["model"] == "rerank"
    results = body["results"]
    assert len(results) == 3 and all(set(r) == {"index", "relevance_score", "document"}
                                     for r in results)
    scores = [r["relevance_score"] for r in results]
    assert scores == sorted(scores, reverse=True)  # best first
    assert all(r["document"] == {"text": documents[r["index"]]} for r in results)
    assert [r["index"] for r in answers[1]["results"]] == [r["index"] for r in results]
    assert body["usage"]["prompt_tokens"] > 0
    _, _, bare = api.json("POST", "/rerank", {"query": "cats", "documents": documents,
                                              "return_documents": False})
    assert len(bare["results"]) == 4 and "document" not in bare["results"][0]


def test_metrics_in_prometheus_text(api: ApiDaemon) -> None:
    client(api).chat.completions.create(model="chat", max_tokens=3,
                                        messages=[{"role": "user", "content": "hi"}])
    status, headers, body = api.request("GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    text = body.decode()
    assert 'hivetray_role_state{role="chat",state="ready"} 1' in text
    assert 'hivetray_role_state{role="embed",state="stopped"} 1' in text
    assert "# TYPE hivetray_role_requests_total counter" in text
    assert api.metric("hivetray_role_requests_total", "chat") == 1
    assert api.metric("hivetray_role_completion_tokens_total", "chat") == 3
    assert api.metric("hivetray_role_crashes_total", "chat") == 0
    rss = api.metric("hivetray_role_rss_bytes", "chat")
    assert rss is not None and rss > 0
    assert api.metric("hivetray_role_load_seconds", "chat") is not None
    assert api.metric("hivetray_role_rss_bytes", "embed") is None  # no worker: no figure


def test_the_key_is_required_except_for_health(api: ApiDaemon, home: AppPaths) -> None:
    with pytest.raises(openai.AuthenticationError):
        client(api, key="not-the-key").models.list()
    for path in ("/v1/models", "/metrics"):
        status, headers, body = api.json("GET", path, key=None)
        assert status == 401 and body["error"]["code"] == "invalid_api_key"
        assert headers["www-authenticate"].startswith("Bearer")
    status, _, body = api.json("GET", "/health", key=None)
    assert status == 200 and body == {"status": "ok"}
    assert os.stat(home.api_key_file).st_mode & 0o777 == 0o600

    # `hivetray api key --new`: the old key stops working at once, the new one works
    renewed = cli("api", "key", "--new")
    assert renewed.returncode == 0, renewed.stderr
    new_key = renewed.stdout.strip()
    assert new_key != api.key and cli("api", "key").stdout.strip() == new_key
    assert api.request("GET", "/v1/models")[0] == 401
    assert api.request("GET", "/v1/models", key=new_key)[0] == 200


def test_an_open_breaker_is_503_with_retry_after(
        start_daemon: StartDaemon, write_config: Any, tiny_models: dict[str, Path]) -> None:
    write_config(all_roles_config(tiny_models, pool=PoolConfig(cooldown_s=60)))
    api = start_api(start_daemon)
    oai = client(api)
    for n in range(1, 5):
        oai.chat.completions.create(model="chat", max_tokens=2,
                                    messages=[{"role": "user", "content": "hi"}])
        os.kill(role_row("chat")["pid"], signal.SIGKILL)
        wait_until(lambda: role_row("chat")["pid"] is None, 5.0, what=f"crash {n} noticed")
    assert role_row("chat")["state"] == "cooling_down"
    with pytest.raises(openai.InternalServerError) as refused:
        oai.chat.completions.create(model="chat", max_tokens=2,
                                    messages=[{"role": "user", "content": "hi"}])
    response = refused.value.response
    assert response.status_code == 503
    assert 1 <= int(response.headers["retry-after"]) <= 60
    error = response.json()["error"]
    assert error["code"] == "worker_cooling_down" and "crashed 4 times" in error["message"]
    assert api.metric("hivetray_role_crashes_total", "chat") == 4
    # streamed requests are refused the same way, before any event is sent
    status, headers, _ = api.request("POST", "/v1/chat/completions", {
        "messages": [{"role": "user", "content": "hi"}], "stream": True})
    assert status == 503 and "retry-after" in headers


def test_a_client_that_disconnects_mid_stream_cancels_in_the_worker(
        start_daemon: StartDaemon, write_config: Any, tiny_models: dict[str, Path],
        long_chat_model: Path) -> None:
    write_config(all_roles_config(tiny_models, chat=long_chat_model))
    api = start_api(start_daemon)
    client(api).chat.completions.create(model="chat", max_tokens=2,
                                        messages=[{"role": "user", "content": "warm up"}])
    pid = role_row("chat")["pid"]
    parts = urlsplit(api.url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    conn.request("POST", "/v1/chat/completions", body=json.dumps({
        "messages": [{"role": "user", "content": "go on"}], "max_tokens": 3500,
        "stream": True}), headers={"Authorization": f"Bearer {api.key}",
                                   "Content-Type": "application/json"})
    response = conn.getresponse()
    assert response.status == 200
    assert response.readline().startswith(b"data: ")
    assert role_row("chat")["in_flight"] == 1
    conn.sock.shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]
    conn.close()
    row = wait_until(lambda: (r := role_row("chat"))["in_flight"] == 0 and r, 10.0,
                     what="the request cancelled in the worker")
    assert row["pid"] == pid and row["state"] == "ready"  # the worker stays loaded
    # cancelled, not finished: the request counted, but no 3500 completion tokens
    assert api.metric("hivetray_role_requests_total", "chat") == 2
    assert api.metric("hivetray_role_completion_tokens_total", "chat") == 2
    after = client(api).chat.completions.create(
        model="chat", max_tokens=3, messages=[{"role": "user", "content": "next"}])
    assert after.usage is not None and after.usage.completion_tokens == 3
    assert role_row("chat")["pid"] == pid
    assert api.daemon.stderr() == ""  # a client leaving is not an error of ours


def test_twenty_concurrent_streaming_clients_all_complete(api: ApiDaemon) -> None:
    async def one(oai: openai.AsyncOpenAI, n: int) -> tuple[str, int]:
        stream = await oai.chat.completions.create(
            model="chat", max_tokens=8, stream=True, stream_options={"include_usage": True},
            messages=[{"role": "user", "content": f"client {n}"}])
        text, tokens = "", 0
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
            if chunk.usage is not None:
                tokens = chunk.usage.completion_tokens
        return text, tokens

    async def all_of_them() -> list[tuple[str, int]]:
        async with openai.AsyncOpenAI(base_url=api.base_url, api_key=api.key, max_retries=0,
                                      timeout=120) as oai:
            return await asyncio.gather(*(one(oai, n) for n in range(20)))

    results = asyncio.run(all_of_them())
    assert len(results) == 20 and all(text and tokens == 8 for text, tokens in results)
    row = role_row("chat")
    assert row["requests"] == 20 and row["in_flight"] == 0
    assert api.daemon.stderr() == ""


def test_errors_are_openai_error_objects(api: ApiDaemon) -> None:
    oai = client(api)
    with pytest.raises(openai.BadRequestError) as overflow:
        oai.chat.completions.create(model="chat", max_tokens=4,
                                    messages=[{"role": "user", "content": "word " * 600}])
    error = overflow.value.response.json()["error"]
    assert error["code"] == "context_length_exceeded" and error["n_ctx"] == 256
    assert error["n_prompt_tokens"] > 256 and "context is 256" in error["message"]
    status, _, body = api.json("POST", "/v1/chat/completions", raw=b'{"messages": [')
    assert status == 400 and body["error"]["param"] == "body"
    assert "not valid JSON" in body["error"]["message"]
    status, _, body = api.json("POST", "/v1/chat/completions", {
        "messages": [{"role": "user", "content": "x"}], "temperature": 9})
    assert status == 400 and body["error"]["param"] == "temperature"
    status, _, body = api.json("POST", "/v1/embeddings", {"input": "x", "model": "chat"})
    assert status == 400 and "/v1/chat/completions" in body["error"]["message"]
    status, _, body = api.json("GET", "/v1/nothing")
    assert status == 404 and body["error"]["code"] == "not_found"
    big = b'{"input": "' + b"a" * (64 * 2**20 + 10) + b'"}'
    status, _, body = api.json("POST", "/v1/embeddings", raw=big)
    assert status == 413 and body["error"]["code"] == "payload_too_large"
    assert api.daemon.stderr() == ""  # refusals are answers, not errors in the log


def test_stop_strings_end_the_reply(api: ApiDaemon) -> None:
    oai = client(api)
    ask: dict[str, Any] = {"model": "chat", "max_tokens": 24, "temperature": 0,
                           "messages": [{"role": "user", "content": "hello"}]}
    full = oai.chat.completions.create(**ask).choices[0].message.content or ""
    assert len(full) > 8
    stop = full[6:8]
    cut = oai.chat.completions.create(**ask, stop=[stop]).choices[0]
    assert cut.finish_reason == "stop"
    assert cut.message.content == full[:full.index(stop)]


def test_no_request_text_reaches_any_file_under_the_home(api: ApiDaemon, home: AppPaths
                                                         ) -> None:
    """Prompts, images' neighbours, texts, queries and documents sent over HTTP — including in
    refused requests — appear in no log, event or other file Hivetray writes."""
    secrets = {"chat": "zebra-quartz-7341", "vision": "walrus-onyx-9027",
               "embed": "heron-basalt-5520", "query": "otter-jade-1184",
               "doc": "lynx-pumice-3071", "refused": "ibis-slate-6402"}
    oai = client(api)
    oai.chat.completions.create(model="chat", max_tokens=3, stream=True, messages=[
        {"role": "user", "content": f"tell me about {secrets['chat']}"}]).close()
    oai.chat.completions.create(model="vision", max_tokens=3, messages=[{
        "role": "user", "content": [{"type": "text", "text": secrets["vision"]},
                                    {"type": "image_url", "image_url": {"url": png_data_url()}}]}])
    oai.embeddings.create(model="embed", input=[secrets["embed"]])
    api.json("POST", "/v1/rerank", {"query": secrets["query"], "documents": [secrets["doc"]]})
    api.json("POST", "/v1/chat/completions", {"temperature": 99, "messages": [
        {"role": "user", "content": secrets["refused"]}]})
    api.json("POST", "/v1/chat/completions", raw=f'{{"messages": "{secrets["refused"]}'.encode())
    events = cli("events", "--limit", "500").stdout
    for secret in secrets.values():
        assert secret not in events
        for path in Path(os.environ["HIVETRAY_HOME"]).rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), f"{secret} found in {path}"
