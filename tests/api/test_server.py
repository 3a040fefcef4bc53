"""The server in process, over a fake instance: the key, CORS (off unless origins are listed),
streaming framing, and a client that leaves closing the instance's stream — before the first
chunk (aiohttp cancels the handler) and in the middle (the write fails)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from PIL import Image

from hivetray.api.keys import ApiKey
from hivetray.api.server import ApiServer, ServerSettings
from hivetray.errors import WorkerCrashed
from tests.api.fakes import FakeInstance
from tests.helpers.waiting import until

ORIGIN = "http://localhost:3000"
CHAT = {"messages": [{"role": "user", "content": "hi"}], "stream": True}


class Running:
    def __init__(self, url: str, key: str, instance: FakeInstance) -> None:
        self.url = url
        self.key = key
        self.instance = instance

    def auth(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}", **extra}


@pytest_asyncio.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Any]:
    servers: list[ApiServer] = []

    async def start(**settings: Any) -> Running:
        instance = FakeInstance()
        key = ApiKey(tmp_path / "api-key")
        server = ApiServer(instance, key, ServerSettings("127.0.0.1", 0, **settings))
        servers.append(server)
        return Running(await server.start(), key.ensure(), instance)

    yield start
    for server in servers:
        await server.stop()


@pytest.mark.asyncio
async def test_the_key_is_asked_for_everywhere_but_health(serve: Any) -> None:
    api = await serve()
    async with aiohttp.ClientSession() as http:
        async with http.get(api.url + "/health") as response:
            assert response.status == 200
        async with http.get(api.url + "/v1/models") as response:
            assert response.status == 401
            assert (await response.json())["error"]["type"] == "authentication_error"
        async with http.get(api.url + "/v1/models", headers=api.auth()) as response:
            assert response.status == 200
    open_api = await serve(require_key=False)
    async with aiohttp.ClientSession() as http, http.get(open_api.url + "/v1/models") as response:
        assert response.status == 200


@pytest.mark.asyncio
async def test_a_stream_is_framed_and_ends_with_done(serve: Any) -> None:
    api = await serve()
    api.instance.finish.set()
    async with aiohttp.ClientSession() as http, http.post(
            api.url + "/v1/chat/completions", headers=api.auth(),
            json={**CHAT, "stream_options": {"include_usage": True}}) as response:
        assert response.status == 200
        body = (await response.read()).decode()
    events = body.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    payloads = [json.loads(e[len("data: "):]) for e in events[:-2]]
    assert [p["choices"][0]["delta"].get("content") for p in payloads[:-1]] == [
        "", "Hel", "lo", None]
    assert payloads[-2]["choices"][0]["finish_reason"] == "stop"
    assert payloads[-1]["usage"] == {"prompt_tokens": 3, "completion_tokens": 2,
                                     "total_tokens": 5}


@pytest.mark.asyncio
async def test_leaving_mid_stream_closes_the_instances_stream(serve: Any) -> None:
    api = await serve()
    async with aiohttp.ClientSession() as http:
        response = await http.post(api.url + "/v1/chat/completions", headers=api.auth(),
                                   json=CHAT)
        assert (await response.content.readline()).startswith(b"data: ")
        await until(lambda: api.instance.chunks_sent == 1, 5.0)
        response.close()  # the connection is dropped, not returned to the pool
    await asyncio.wait_for(api.instance.closed.wait(), 5.0)
    assert not api.instance.finish.is_set()  # closed while it waited: the request was cut


@pytest.mark.asyncio
async def test_leaving_before_the_first_chunk_closes_the_instances_stream(serve: Any) -> None:
    api = await serve()
    api.instance.first.clear()  # a long prompt: nothing to send yet
    async with aiohttp.ClientSession() as http:
        request = asyncio.ensure_future(http.post(
            api.url + "/v1/chat/completions", headers=api.auth(), json=CHAT))
        await until(lambda: api.instance.calls, 5.0)
        request.cancel()  # the client gives up and its connection closes
        await asyncio.gather(request, return_exceptions=True)
    await asyncio.wait_for(api.instance.closed.wait(), 5.0)  # aiohttp cancelled the handler
    assert api.instance.chunks_sent == 0


@pytest.mark.asyncio
async def test_cors_is_off_unless_origins_are_listed(serve: Any) -> None:
    api = await serve()
    async with aiohttp.ClientSession() as http:
        async with http.options(api.url + "/v1/models", headers={
                "Origin": ORIGIN, "Access-Control-Request-Method": "GET"}) as response:
            assert response.status == 401  # no preflight answer: an ordinary refusal
            assert "Access-Control-Allow-Origin" not in response.headers
        async with http.get(api.url + "/v1/models",
                            headers=api.auth(Origin=ORIGIN)) as response:
            assert response.status == 200
            assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.asyncio
async def test_a_listed_origin_gets_preflight_and_headers(serve: Any) -> None:
    api = await serve(cors_origins=(ORIGIN,))
    preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization, content-type"}
    async with aiohttp.ClientSession() as http:
        # a preflight carries no key, and is answered before the key is asked for
        async with http.options(api.url + "/v1/chat/completions",
                                headers=preflight) as response:
            assert response.status == 204
            assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
            assert "POST" in response.headers["Access-Control-Allow-Methods"]
            assert response.headers["Access-Control-Allow-Headers"] == (
                "authorization, content-type")
        async with http.options(api.url + "/v1/models", headers={
                **preflight, "Origin": "http://evil.example"}) as response:
            assert response.status == 403
            assert "Access-Control-Allow-Origin" not in response.headers
        # refusals carry the header too, so the page can read why
        async with http.get(api.url + "/v1/models", headers={"Origin": ORIGIN}) as response:
            assert response.status == 401
            assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
        api.instance.finish.set()
        async with http.post(api.url + "/v1/chat/completions", json=CHAT,
                             headers=api.auth(Origin=ORIGIN)) as response:
            assert response.status == 200  # a streamed reply: set before its headers left
            assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
            await response.read()
        async with http.get(api.url + "/v1/models",
                            headers=api.auth(Origin="http://evil.example")) as response:
            assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.asyncio
async def test_any_origin_when_star_is_listed(serve: Any) -> None:
    api = await serve(cors_origins=("*",))
    async with aiohttp.ClientSession() as http, http.get(
            api.url + "/health", headers={"Origin": "http://anything.example"}) as response:
        assert response.headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.asyncio
async def test_images_ask_for_the_vision_role(serve: Any) -> None:
    out = io.BytesIO()
    Image.new("RGB", (4, 4)).save(out, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()
    api = await serve()
    api.instance.finish.set()
    async with aiohttp.ClientSession() as http, http.post(
            api.url + "/v1/chat/completions", headers=api.auth(), json={"messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}
            ]}) as response:
        assert response.status == 200
        assert (await response.json())["model"] == "vision"
    _params, images, role = api.instance.calls[0]
    assert role == "vision" and images is not None and images[0].data == out.getvalue()


@pytest.mark.asyncio
async def test_errors_after_the_first_chunk_end_the_stream_with_an_error_event(
        serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    api = await serve()
    failures: list[BaseException] = [WorkerCrashed("chat", -9, "/logs/worker-chat.log", "tail"),
                                     KeyError("a bug")]

    async def failing(params: dict[str, Any], images: Any = None, *,
                      role: str | None = None) -> AsyncIterator[dict[str, Any]]:
        yield {"text": "Hel"}
        raise failures.pop(0)

    api.instance.chat = failing  # type: ignore[method-assign]
    for code in ("worker_crashed", "internal_error"):
        async with aiohttp.ClientSession() as http, http.post(
                api.url + "/v1/chat/completions", headers=api.auth(), json=CHAT) as response:
            assert response.status == 200  # the headers had left with the first chunk
            events = (await response.read()).decode().split("\n\n")
        last = json.loads(events[-2][len("data: "):])
        assert last["error"]["code"] == code and "[DONE]" not in events[-2]
    assert "a bug" not in last["error"]["message"]
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == [
        "internal error in POST /v1/chat/completions"]
    caplog.clear()  # the expected error
