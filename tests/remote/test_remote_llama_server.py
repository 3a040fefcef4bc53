"""Remote roles against a real llama-server (built from the llama.cpp the workers run) serving
the tiny generated models: every role, the supervision (kill → counted → breaker → restart →
half-open success; SIGSTOP → health timeout), cancel, and the errors that say what to do."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from hivetray.config import Config, PoolConfig, RoleConfig, default_config
from hivetray.errors import CircuitOpen, RemoteEngineFailed, RemoteRequestError, RoleInError
from hivetray.paths import AppPaths
from hivetray.pool import WorkerPool
from hivetray.pool.states import RoleState
from tests.helpers.llama_server import LlamaServer
from tests.helpers.realpool import ask, run
from tests.helpers.waiting import until

QUICK = PoolConfig(restart_budget=2, restart_window_s=60, cooldown_s=1.0,
                   health_interval_s=0.2, ping_timeout_s=1.0, shutdown_grace_s=1.0)


def remote_config(pool: PoolConfig = QUICK, **roles: RoleConfig) -> Config:
    base = default_config()
    return replace(base, roles={**base.roles, **roles}, pool=pool)


def remote(url: str, **settings: Any) -> RoleConfig:
    return RoleConfig(engine="remote", url=url, timeout_s=5.0, **settings)


@contextlib.asynccontextmanager
async def pool_of(home: AppPaths, config: Config) -> AsyncIterator[WorkerPool]:
    pool = WorkerPool(config, home, tick_s=0.05)
    await pool.start()
    try:
        yield pool
    finally:
        await asyncio.wait_for(pool.shutdown(), 20)


def png() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (24, 24), (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


def test_chat_streams_through_a_remote_role_with_usage_and_status(
        home: AppPaths, start_llama_server: Callable[..., LlamaServer],
        tiny_models: dict[str, Path]) -> None:
    server = start_llama_server(tiny_models["chat"])

    async def scenario() -> None:
        async with pool_of(home, remote_config(chat=remote(server.url))) as pool:
            chunks = [c async for c in pool.stream("chat", "chat", ask(12))]
            done = chunks[-1]
            assert done["done"] and done["usage"]["completion_tokens"] == 12
            assert done["usage"]["prompt_tokens"] > 0
            assert "".join(c.get("text", "") for c in chunks[:-1])
            assert done["tokens_per_s"] and done["ttft_s"] is not None
            row = pool.snapshot().status_json()["roles"][0]
            assert row["role"] == "chat" and row["state"] == "ready"
            assert row["engine"] == "remote" and row["url"] == server.url
            assert row["pid"] is None and row["rss_bytes"] is None
            assert row["rtt_ms"] is not None and row["requests"] == 1
            assert row["tokens_per_s"] == done["tokens_per_s"]

    run(scenario())


def test_embed_rerank_and_vision_roles_on_llama_server(
        home: AppPaths, start_llama_server: Callable[..., LlamaServer],
        tiny_models: dict[str, Path]) -> None:
    embed = start_llama_server(tiny_models["embed"], "--embeddings")
    rerank = start_llama_server(tiny_models["rerank"], "--reranking")
    vision = start_llama_server(tiny_models["chat"], "--mmproj", str(tiny_models["mmproj"]))
    config = remote_config(embed=remote(embed.url), rerank=remote(rerank.url),
                           vision=remote(vision.url))

    async def scenario() -> None:
        async with pool_of(home, config) as pool:
            vectors = await pool.call("embed", "embed", {"texts": ["one", "two words"]})
            assert len(vectors["embeddings"]) == 2
            assert all(len(v) == 64 for v in vectors["embeddings"])
            assert vectors["usage"]["prompt_tokens"] > 0
            scored = await pool.call("rerank", "rerank", {"query": "q",
                                                          "documents": ["a", "bb", "ccc"]})
            assert len(scored["scores"]) == 3
            assert all(isinstance(s, float) for s in scored["scores"])
            seen = await pool.call("vision", "chat", {
                **ask(6, "what is this?"), "images": [{"name": "red.png", "data": png()}]})
            assert seen["usage"]["completion_tokens"] == 6
            # the image really reached the projector: more prompt tokens than the text alone
            plain = await pool.call("vision", "chat", ask(6, "what is this?"))
            assert seen["usage"]["prompt_tokens"] > plain["usage"]["prompt_tokens"]

    run(scenario())


def test_a_killed_engine_is_counted_opens_the_breaker_and_a_restart_closes_it(
        home: AppPaths, start_llama_server: Callable[..., LlamaServer],
        tiny_models: dict[str, Path]) -> None:
    server = start_llama_server(tiny_models["chat"])

    async def scenario() -> None:
        async with pool_of(home, remote_config(chat=remote(server.url))) as pool:
            chat = pool.roles["chat"]
            await pool.call("chat", "chat", ask(2))
            server.kill()
            # the health check finds it gone: counted like a crash
            await until(lambda: chat.breaker.crashes_in_window() == 1, 5.0, what="counted")
            assert chat.state is RoleState.STOPPED
            assert "unreachable" in (chat.last_error or "")
            with pytest.raises(RemoteEngineFailed, match="unreachable"):
                await pool.call("chat", "chat", ask(2))
            with pytest.raises(RemoteEngineFailed):
                await pool.call("chat", "chat", ask(2))
            assert chat.state is RoleState.COOLING_DOWN
            with pytest.raises(CircuitOpen, match="retrying in"):
                await pool.call("chat", "chat", ask(2))
            row = pool.snapshot().status_json()["roles"][0]
            assert row["state"] == "cooling_down" and row["retry_in_s"] > 0
            server.start()
            await until(lambda: chat.breaker.retry_in_s() in (None, 0, 0.0), 5.0,
                        what="cooldown over")
            result = await pool.call("chat", "chat", ask(3))  # the half-open attempt
            assert result["usage"]["completion_tokens"] == 3
            assert chat.state is RoleState.READY
            assert chat.breaker.crashes_in_window() == 0

    run(scenario(), timeout=60)


def test_a_frozen_engine_fails_its_health_check_and_is_counted(
        home: AppPaths, start_llama_server: Callable[..., LlamaServer],
        tiny_models: dict[str, Path]) -> None:
    server = start_llama_server(tiny_models["chat"])

    async def scenario() -> None:
        async with pool_of(home, remote_config(chat=remote(server.url))) as pool:
            chat = pool.roles["chat"]
            await pool.call("chat", "chat", ask(2))
            server.signal(signal.SIGSTOP)
            try:
                await until(lambda: chat.breaker.crashes_in_window() == 1, 10.0,
                            what="the ping timed out")
                assert chat.state is RoleState.STOPPED
                assert "health" in (chat.last_error or "")
            finally:
                server.signal(signal.SIGCONT)
            assert (await pool.call("chat", "chat", ask(2)))["usage"]["completion_tokens"] == 2

    run(scenario(), timeout=60)


def test_cancel_closes_the_stream_and_llama_server_stops_generating(
        home: AppPaths, start_llama_server: Callable[..., LlamaServer],
        long_chat_model: Path) -> None:
    server = start_llama_server(long_chat_model, "-c", "4096")

    def processing() -> bool:
        status, body = server.get("/slots")
        assert status == 200, "llama-server's /slots endpoint is needed"
        return any(slot.get("is_processing") for slot in json.loads(body))

    async def scenario() -> None:
        async with pool_of(home, remote_config(chat=remote(server.url))) as pool:
            chat = pool.roles["chat"]
            stream = pool.stream("chat", "chat", ask(3500))
            async for chunk in stream:
                assert "text" in chunk
                break
            assert processing()
            await stream.aclose()
            await until(lambda: not chat.in_flight, 2.0, what="the request ended")
            await until(lambda: not processing(), 2.0, what="llama-server stopped")
            started = time.monotonic()
            quick = await pool.call("chat", "chat", ask(2))  # served at once, not queued
            assert quick["usage"]["completion_tokens"] == 2
            assert time.monotonic() - started < 1.0
            assert chat.state is RoleState.READY and chat.breaker.crashes_in_window() == 0

    run(scenario(), timeout=60)


def test_unknown_model_and_unsupported_endpoint_say_what_to_do(
        home: AppPaths, start_llama_server: Callable[..., LlamaServer],
        tiny_models: dict[str, Path]) -> None:
    server = start_llama_server(tiny_models["chat"])
    config = remote_config(chat=remote(server.url, model="no-such-model"),
                           rerank=remote(server.url))

    async def scenario() -> None:
        async with pool_of(home, config) as pool:
            with pytest.raises(Exception, match="has no model 'no-such-model'; it has: ") as info:
                await pool.call("chat", "chat", ask(2))
            assert "chat.gguf" in str(info.value)
            assert pool.roles["chat"].state is RoleState.ERROR
            with pytest.raises(RoleInError):  # no crash loop: it waits for the user
                await pool.call("chat", "chat", ask(2))
            with pytest.raises(RemoteRequestError, match="does not serve reranking"):
                await pool.call("rerank", "rerank", {"query": "q", "documents": ["a"]})
            rerank = pool.roles["rerank"]
            assert rerank.state is RoleState.READY and rerank.breaker.crashes_in_window() == 0

    run(scenario())


def test_many_requests_on_pooled_connections_are_no_failures(
        home: AppPaths, start_llama_server: Callable[..., LlamaServer],
        tiny_models: dict[str, Path]) -> None:
    """llama-server closes a keep-alive connection after a few requests; a request that finds
    its pooled connection closed is sent again on a new one, not counted as a failure."""
    server = start_llama_server(tiny_models["chat"])

    async def scenario() -> None:
        async with pool_of(home, remote_config(chat=remote(server.url))) as pool:
            for _ in range(20):
                result = await pool.call("chat", "chat", ask(200))
                assert result["usage"]["completion_tokens"] == 200
            chat = pool.roles["chat"]
            assert chat.breaker.crashes_in_window() == 0 and chat.usage.requests == 20

    run(scenario())
