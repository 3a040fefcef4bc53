"""The remote link's logic against a scripted in-process engine, on an injected clock: what
each answer becomes (ready, load error, chunks, result, request error, the link's exit)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hivetray.config import RoleConfig
from hivetray.errors import error_from_wire
from hivetray.pool.remote.link import RemoteLink
from tests.pool.fakes import FakeClock
from tests.remote.fakeengine import FINISH, USAGE, FakeEngine, answer, delta, never, sse


class TickingClock(FakeClock):
    """Every reading is 10 ms after the previous one: durations become exact numbers."""

    def now(self) -> float:
        self.t += 0.01
        return self.t


class Sink:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.controls: list[dict[str, Any]] = []
        self.exited: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self.arrived = asyncio.Event()

    def on_message(self, msg: dict[str, Any]) -> None:
        self.messages.append(msg)
        self.arrived.set()

    def on_control(self, msg: dict[str, Any]) -> None:
        self.controls.append(msg)
        self.arrived.set()

    def on_exit(self, exitcode: int | None) -> None:
        self.exited.set_result(exitcode)
        self.arrived.set()

    def on_started(self, pid: int) -> None:
        raise AssertionError("a remote link has no process")

    def on_spawn_failed(self, reason: str) -> None:
        raise AssertionError("a remote link spawns nothing")

    async def next(self, kind: str, timeout: float = 5.0) -> dict[str, Any]:
        async def wait() -> dict[str, Any]:
            while True:
                for msg in self.messages:
                    if msg["type"] == kind:
                        self.messages.remove(msg)
                        return msg
                self.arrived.clear()
                await self.arrived.wait()
        return await asyncio.wait_for(wait(), timeout)


async def started(engine: FakeEngine, clock: FakeClock | None = None,
                  **settings: Any) -> tuple[RemoteLink, Sink]:
    link = RemoteLink("chat", RoleConfig(engine="remote", url=engine.url,
                                         **{"timeout_s": 5.0, **settings}),
                      clock or FakeClock())
    sink = Sink()
    link.start(sink)
    return link, sink


async def ready(engine: FakeEngine, **settings: Any) -> tuple[RemoteLink, Sink]:
    link, sink = await started(engine, **settings)
    await sink.next("ready")
    return link, sink


def chat(rid: int = 1, **params: Any) -> dict[str, Any]:
    return {"type": "request", "id": rid, "method": "chat",
            "params": {"messages": [{"role": "user", "content": "hi"}], **params}}


@pytest.mark.asyncio
async def test_start_checks_the_model_and_takes_the_first_one_when_none_is_set() -> None:
    async with FakeEngine() as engine:
        link, sink = await started(engine)
        msg = await sink.next("ready")
        assert msg["model"] == "m1" and link.model == "m1" and link.pid is None
        link, sink = await started(engine, model="m2")
        assert (await sink.next("ready"))["model"] == "m2"


@pytest.mark.asyncio
async def test_an_unknown_model_is_a_load_error_listing_the_servers_models() -> None:
    async with FakeEngine() as engine:
        _, sink = await started(engine, model="nope")
        error = error_from_wire((await sink.next("load_error"))["error"])
        assert type(error).__name__ == "RemoteSetupError"
        assert "has no model 'nope'; it has: m1, m2" in str(error)


@pytest.mark.asyncio
async def test_a_wrong_or_missing_key_is_a_load_error_naming_the_variable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    async with FakeEngine(key="right") as engine:
        monkeypatch.setenv("REMOTE_KEY", "wrong")
        _, sink = await started(engine, api_key_env="REMOTE_KEY")
        error = error_from_wire((await sink.next("load_error"))["error"])
        assert "refused the key (HTTP 401): set the right key in $REMOTE_KEY" in str(error)
        monkeypatch.delenv("REMOTE_KEY")
        _, sink = await started(engine, api_key_env="REMOTE_KEY")
        error = error_from_wire((await sink.next("load_error"))["error"])
        assert "REMOTE_KEY is not set: export REMOTE_KEY=<key>" in str(error)
        assert "keyring package is not installed" in str(error)
        monkeypatch.setenv("REMOTE_KEY", "right")
        await ready(engine, api_key_env="REMOTE_KEY")


@pytest.mark.asyncio
async def test_an_unreachable_engine_is_the_links_exit_with_what_to_do() -> None:
    async with FakeEngine() as engine:
        url = engine.url
    link = RemoteLink("chat", RoleConfig(engine="remote", url=url), FakeClock())
    sink = Sink()
    link.start(sink)
    assert await asyncio.wait_for(sink.exited, 5) is None
    assert link.failure is not None and "is unreachable" in link.failure
    assert "start the engine or fix the role's url" in link.failure


@pytest.mark.asyncio
async def test_an_engine_that_never_answers_times_out() -> None:
    async with FakeEngine(overrides={"/v1/models": never()}) as engine:
        link, sink = await started(engine, timeout_s=0.2)
        await asyncio.wait_for(sink.exited, 5)
        assert link.failure == "did not answer within 0.2 s (is it overloaded or stopped?)"


@pytest.mark.asyncio
async def test_a_chat_stream_becomes_chunks_then_a_result_with_usage_and_speed() -> None:
    async with FakeEngine() as engine:
        link, sink = await started(engine, TickingClock())
        await sink.next("ready")
        link.send(chat(temperature=0.0, top_k=5, max_tokens=3, seed=9, stop=["x"]))
        texts = [(await sink.next("chunk"))["data"]["text"] for _ in range(3)]
        result = (await sink.next("result"))["result"]
        assert texts == ["a", "b", "c"]
        assert result["usage"] == {"prompt_tokens": 7, "completion_tokens": 3}
        assert result["finish_reason"] == "length"
        assert result["ttft_s"] == pytest.approx(0.02) and result["tokens_per_s"] > 0
        body = engine.bodies[-1]
        assert body["stream"] and body["stream_options"] == {"include_usage": True}
        assert (body["model"], body["temperature"], body["top_k"], body["max_tokens"],
                body["seed"], body["stop"]) == ("m1", 0.0, 5, 3, 9, ["x"])
        assert link.rtt_ms == pytest.approx(10.0)


@pytest.mark.asyncio
async def test_llama_servers_timings_give_the_tokens_per_second() -> None:
    timed = {**USAGE, "timings": {"predicted_per_second": 123.5}}
    async with FakeEngine(stream=sse(delta("a"), FINISH, timed, b"[DONE]")) as engine:
        link, sink = await ready(engine)
        link.send(chat())
        assert (await sink.next("result"))["result"]["tokens_per_s"] == 123.5


@pytest.mark.asyncio
async def test_a_malformed_stream_is_a_request_error_not_a_crash() -> None:
    async with FakeEngine(stream=sse(delta("a"), b"{not json")) as engine:
        link, sink = await ready(engine)
        link.send(chat())
        error = error_from_wire((await sink.next("error"))["error"])
        assert type(error).__name__ == "RemoteRequestError"
        assert "not JSON" in str(error)
        assert not sink.exited.done() and link.failure is None


@pytest.mark.asyncio
async def test_a_4xx_is_that_requests_typed_error_with_the_servers_reason() -> None:
    too_long = answer(400, {"error": {"message": "the request exceeds the context size"}})
    async with FakeEngine(overrides={"/v1/chat/completions": too_long}) as engine:
        link, sink = await ready(engine)
        link.send(chat())
        error = error_from_wire((await sink.next("error"))["error"])
        assert str(error) == ("the chat engine refused the request (HTTP 400): the request "
                              "exceeds the context size")
        assert error.status == 400  # type: ignore[attr-defined]
        link.send({"type": "request", "id": 2, "method": "embed", "params": {"texts": ["a"]}})
        error = error_from_wire((await sink.next("error"))["error"])
        assert "has no /v1/embeddings (HTTP 404)" in str(error)
        assert "--embeddings" in str(error)
        assert not sink.exited.done()


@pytest.mark.asyncio
async def test_a_5xx_fails_the_link_so_the_supervisor_counts_it() -> None:
    broken = answer(500, {"error": {"message": "out of memory"}})
    async with FakeEngine(overrides={"/v1/chat/completions": broken}) as engine:
        link, sink = await ready(engine)
        link.send(chat())
        await asyncio.wait_for(sink.exited, 5)
        assert link.failure == "answered HTTP 500 (out of memory)"
        assert not [m for m in sink.messages if m["type"] in ("result", "error")]


@pytest.mark.asyncio
async def test_pings_use_health_or_fall_back_to_models_and_a_5xx_fails_the_link() -> None:
    async with FakeEngine() as engine:
        link, sink = await ready(engine)
        link.send_control({"op": "ping", "seq": 1})
        await asyncio.wait_for(sink.arrived.wait(), 5)
        await asyncio.wait_for(_until(lambda: sink.controls), 5)
        assert sink.controls == [{"op": "pong", "seq": 1}]
    async with FakeEngine(overrides={"/health": answer(404, "no such page")}) as engine:
        link, sink = await ready(engine)
        link.send_control({"op": "ping", "seq": 2})
        await asyncio.wait_for(_until(lambda: sink.controls), 5)
        assert sink.controls == [{"op": "pong", "seq": 2}]
    async with FakeEngine(overrides={"/health": answer(503, {"error": "busy"})}) as engine:
        link, sink = await ready(engine)
        link.send_control({"op": "ping", "seq": 3})
        await asyncio.wait_for(sink.exited, 5)
        assert link.failure == "answered HTTP 503 (busy)" and not sink.controls


@pytest.mark.asyncio
async def test_abort_closes_the_stream_and_reports_cancelled() -> None:
    async with FakeEngine() as engine:
        engine.hold = asyncio.Event()
        link, sink = await ready(engine)
        link.send(chat())
        assert (await sink.next("chunk"))["data"]["text"] == "a"
        link.abort(1)
        assert (await sink.next("cancelled"))["id"] == 1
        engine.hold.set()
        await asyncio.wait_for(engine.disconnected.wait(), 5)
        link.send(chat(rid=2))  # the link still serves
        assert (await sink.next("result"))["id"] == 2


@pytest.mark.asyncio
async def test_shutdown_closes_and_reports_a_clean_exit_once() -> None:
    async with FakeEngine() as engine:
        link, sink = await ready(engine)
        link.send_control({"op": "shutdown"})
        link.kill()
        assert await asyncio.wait_for(sink.exited, 5) == 0
        assert link.failure is None


async def _until(predicate: Any) -> None:
    while not predicate():
        await asyncio.sleep(0.01)
