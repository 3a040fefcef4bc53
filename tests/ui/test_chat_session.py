"""ChatSession without the window: the order of commit and paint, Stop at any moment, the
conversation sent to the model (alternating roles), and a history that fails under it.

The stream is a script the test feeds step by step; waits are on signals and events, with a
generous timeout that only matters when the behaviour is broken.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections.abc import AsyncGenerator, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtWidgets import QApplication

from hivetray.errors import RoleInError
from hivetray.history import SQLITE_IOERR, History
from hivetray.ui.chat_session import ChatSession, model_messages

TIMEOUT_S = 5.0


class ScriptedStream:
    """Stands in for ``pool.stream``: each item fed is yielded (an exception is raised)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.feed: asyncio.Queue[dict[str, Any] | BaseException] = asyncio.Queue()
        self._requests: asyncio.Queue[list[dict[str, str]]] = asyncio.Queue()

    async def __call__(self, role: str, method: str,
                       params: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        self.calls.append((role, params))
        self._requests.put_nowait(params["messages"])
        while True:
            item = await self.feed.get()
            if isinstance(item, BaseException):
                raise item
            yield item
            if item.get("done"):
                return

    async def next_request(self) -> list[dict[str, str]]:
        """The messages of the next request the session starts."""
        return await asyncio.wait_for(self._requests.get(), TIMEOUT_S)


class Probe:
    """Records what the session emits, and lets a test wait for the next chunk or for idle."""

    def __init__(self, session: ChatSession) -> None:
        self.chunks: asyncio.Queue[str] = asyncio.Queue()
        self.finished: list[dict[str, Any]] = []
        self.failed: list[tuple[str, str]] = []
        self.notices: list[str] = []
        self.idle = asyncio.Event()
        session.chunk.connect(self.chunks.put_nowait)
        session.finished.connect(self.finished.append)
        session.failed.connect(lambda error: self.failed.append(
            (str(error).split("\n", 1)[0], type(error).__name__)))
        session.notice.connect(self.notices.append)
        session.busy_changed.connect(self._on_busy)

    def _on_busy(self, busy: bool) -> None:
        if busy:
            self.idle.clear()
        else:
            self.idle.set()

    async def next_chunk(self) -> str:
        return await asyncio.wait_for(self.chunks.get(), TIMEOUT_S)

    async def until_idle(self) -> None:
        await asyncio.wait_for(self.idle.wait(), TIMEOUT_S)


@pytest.fixture
def loop(qapp: QApplication) -> Iterator[asyncio.AbstractEventLoop]:
    event_loop = asyncio.new_event_loop()
    asyncio.set_event_loop(event_loop)
    yield event_loop
    pending = asyncio.all_tasks(event_loop)  # a failed test may leave its reply streaming
    for task in pending:
        task.cancel()
    event_loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    event_loop.close()
    asyncio.set_event_loop(None)


def run(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, None]) -> None:
    loop.run_until_complete(asyncio.wait_for(coro, 4 * TIMEOUT_S))


@pytest.fixture
def history(tmp_path: Path) -> Iterator[History]:
    store = History(tmp_path / "history.sqlite3")
    yield store
    store.close()


def stored(history: History, session: ChatSession) -> list[tuple[str, str, str]]:
    assert session.conversation_id is not None
    return [(m.role, m.content, m.status) for m in history.messages(session.conversation_id)]


# -- the conversation sent to the model ------------------------------------------------------------
U1, U2, U3 = ("user", "one"), ("user", "two"), ("user", "three")


@pytest.mark.parametrize(("turns", "expected"), [
    ([U1, ("assistant", "hi"), U2], [U1, ("assistant", "hi"), U2]),
    ([U1, ("assistant", ""), U2], [U2]),  # stopped before any text
    ([U1, ("assistant", " \n"), U2], [U2]),  # nothing but blanks is no reply either
    ([U1, ("assistant", "par"), U2], [U1, ("assistant", "par"), U2]),  # stopped with text
    ([U1, ("assistant", ""), U2, ("assistant", "ok"), U3], [U2, ("assistant", "ok"), U3]),
    ([U1, U2, U3], [U3]),  # replies that could not even be stored
    ([("assistant", "welcome"), U1], [U1]),  # the model's turn cannot come first
    ([U1], [U1]),
], ids=["normal", "stopped-empty", "blank", "stopped-partial", "failed-then-ok", "no-replies",
        "assistant-first", "first"])
def test_model_messages_alternate_and_end_with_the_new_question(
        turns: list[tuple[str, str]], expected: list[tuple[str, str]]) -> None:
    assert model_messages(turns) == [{"role": r, "content": c} for r, c in expected]


def test_model_messages_alternate_for_every_short_conversation() -> None:
    kinds = [("user", "q"), ("assistant", ""), ("assistant", "a")]
    for length in range(6):
        for history in itertools.product(kinds, repeat=length):
            sent = model_messages([*history, ("user", "new")])
            roles = [m["role"] for m in sent]
            assert roles[::2] == ["user"] * len(roles[::2]), history
            assert roles[1::2] == ["assistant"] * len(roles[1::2]), history
            assert sent[-1] == {"role": "user", "content": "new"}, history
            assert all(m["content"] for m in sent), history


def test_after_a_stopped_empty_reply_the_next_request_alternates(
        loop: asyncio.AbstractEventLoop, history: History) -> None:
    stream = ScriptedStream()
    session = ChatSession(stream, history)

    async def scenario() -> None:
        probe = Probe(session)
        session.send("one")
        assert await stream.next_request() == [{"role": "user", "content": "one"}]
        assert session.stop()  # the request is waiting for its first chunk
        await probe.until_idle()
        session.send("two")
        assert await stream.next_request() == [{"role": "user", "content": "two"}]
        # the unanswered question stays in the history
        assert [(r, c) for r, c, _ in stored(history, session)] == [
            ("user", "one"), ("assistant", ""), ("user", "two"), ("assistant", "")]
        stream.feed.put_nowait({"done": True})
        await probe.until_idle()

    run(loop, scenario())


def test_after_a_failed_reply_the_next_request_alternates(
        loop: asyncio.AbstractEventLoop, history: History) -> None:
    stream = ScriptedStream()
    session = ChatSession(stream, history)

    async def scenario() -> None:
        probe = Probe(session)
        session.send("one")
        await stream.next_request()
        stream.feed.put_nowait(RoleInError("chat", "the model could not load"))
        await probe.until_idle()
        assert [kind for _, kind in probe.failed] == ["RoleInError"]
        session.send("two")
        assert await stream.next_request() == [{"role": "user", "content": "two"}]
        stream.feed.put_nowait({"done": True})
        await probe.until_idle()

    run(loop, scenario())


def test_a_stopped_reply_with_text_is_kept_as_the_assistant_turn(
        loop: asyncio.AbstractEventLoop, history: History) -> None:
    stream = ScriptedStream()
    session = ChatSession(stream, history)

    async def scenario() -> None:
        probe = Probe(session)
        session.send("one")
        await stream.next_request()
        stream.feed.put_nowait({"text": "part"})
        assert await probe.next_chunk() == "part"
        session.stop()
        await probe.until_idle()
        assert stored(history, session)[-1] == ("assistant", "part", "stopped")
        session.send("two")
        assert await stream.next_request() == [{"role": "user", "content": "one"},
                                               {"role": "assistant", "content": "part"},
                                               {"role": "user", "content": "two"}]
        stream.feed.put_nowait({"done": True})
        await probe.until_idle()

    run(loop, scenario())


def test_a_new_chat_and_a_reopened_one_send_their_own_turns(
        loop: asyncio.AbstractEventLoop, history: History) -> None:
    stream = ScriptedStream()
    session = ChatSession(stream, history)

    async def scenario() -> None:
        probe = Probe(session)
        session.send("one")
        await stream.next_request()
        stream.feed.put_nowait({"text": "reply"})
        stream.feed.put_nowait({"done": True})
        await probe.until_idle()
        first = session.conversation_id
        session.conversation_id = None  # what the window's "New chat" does
        session.send("fresh")
        assert await stream.next_request() == [{"role": "user", "content": "fresh"}]
        stream.feed.put_nowait({"done": True})
        await probe.until_idle()
        session.open_conversation(first)
        session.send("again")
        assert [m["content"] for m in await stream.next_request()] == ["one", "reply", "again"]
        stream.feed.put_nowait({"done": True})
        await probe.until_idle()

    run(loop, scenario())


# -- Stop at any moment -------------------------------------------------------------------------
def test_stop_before_the_request_started_ends_busy_and_marks_the_reply_stopped(
        loop: asyncio.AbstractEventLoop, history: History) -> None:
    stream = ScriptedStream()
    session = ChatSession(stream, history)

    async def scenario() -> None:
        probe = Probe(session)
        session.send("one")
        assert session.stop()  # at once: the request task has not run a single step
        await probe.until_idle()
        assert not session.busy
        assert stream.calls == []
        assert probe.finished == [{"finish_reason": "cancelled"}]
        assert stored(history, session)[-1] == ("assistant", "", "stopped")
        assert not session.stop()  # nothing left to stop
        session.send("two")  # sending works again
        stream.feed.put_nowait({"done": True, "finish_reason": "stop"})
        await probe.until_idle()
        assert await stream.next_request() == [{"role": "user", "content": "two"}]

    run(loop, scenario())


def test_an_unexpected_error_in_the_stream_fails_the_reply_and_ends_busy(
        loop: asyncio.AbstractEventLoop, history: History,
        caplog: pytest.LogCaptureFixture) -> None:
    stream = ScriptedStream()
    session = ChatSession(stream, history)

    async def scenario() -> None:
        probe = Probe(session)
        session.send("one")
        stream.feed.put_nowait({"text": "so far"})
        await probe.next_chunk()
        stream.feed.put_nowait(RuntimeError("a bug"))
        await probe.until_idle()
        [(message, kind)] = probe.failed
        assert kind == "InternalError" and "RuntimeError" in message
        assert stored(history, session)[-1][1:] == ("so far", "failed")

    run(loop, scenario())
    assert "failed with RuntimeError" in caplog.text
    caplog.clear()  # the expected error


# -- history and painting --------------------------------------------------------------------------
def test_every_chunk_is_committed_to_the_history_before_it_is_painted(
        loop: asyncio.AbstractEventLoop, history: History, tmp_path: Path) -> None:
    stream = ScriptedStream()
    session = ChatSession(stream, history)
    reader = sqlite3.connect(tmp_path / "history.sqlite3")  # what a crash right now would keep
    seen_at_paint: list[tuple[str, str]] = []

    def paint(piece: str) -> None:
        [(content,)] = reader.execute(
            "SELECT content FROM messages WHERE role='assistant' ORDER BY id DESC LIMIT 1")
        seen_at_paint.append((piece, content))

    session.chunk.connect(paint)

    async def scenario() -> None:
        probe = Probe(session)
        session.send("one")
        for piece in ("Here ", "it ", "is."):
            stream.feed.put_nowait({"text": piece})
            await probe.next_chunk()
        stream.feed.put_nowait({"done": True})
        await probe.until_idle()

    run(loop, scenario())
    reader.close()
    assert seen_at_paint == [("Here ", "Here "), ("it ", "Here it "), ("is.", "Here it is.")]


def test_a_full_disk_mid_reply_is_reported_once_and_the_reply_goes_on(
        loop: asyncio.AbstractEventLoop, history: History,
        caplog: pytest.LogCaptureFixture) -> None:
    stream = ScriptedStream()
    session = ChatSession(stream, history)
    db = history.db
    assert db is not None
    big = "b" * 20_000  # needs pages the database may not take

    async def scenario() -> None:
        probe = Probe(session)
        session.send("one")
        stream.feed.put_nowait({"text": "a"})
        await probe.next_chunk()
        db.execute(f"PRAGMA max_page_count={db.execute('PRAGMA page_count').fetchone()[0]}")
        for piece in (big, "c"):
            stream.feed.put_nowait({"text": piece})
            assert await probe.next_chunk() == piece  # still painted
        assert len(probe.notices) == 1 and "disk is full" in probe.notices[0]
        assert stored(history, session)[-1] == ("assistant", "a", "streaming")  # kept
        db.execute("PRAGMA max_page_count=1000000")  # space freed
        stream.feed.put_nowait({"text": "d"})
        await probe.next_chunk()
        assert stored(history, session)[-1][1] == "a" + big + "cd"  # caught up
        stream.feed.put_nowait({"done": True, "finish_reason": "stop"})
        await probe.until_idle()
        assert probe.finished == [{"finish_reason": "stop"}] and probe.failed == []
        assert stored(history, session)[-1] == ("assistant", "a" + big + "cd", "complete")
        assert len(probe.notices) == 1

    run(loop, scenario())
    assert "disk is full" in caplog.text
    caplog.clear()  # the expected warning


def _io_error(path: Path, timeout: float) -> sqlite3.Connection:
    error = sqlite3.OperationalError("disk I/O error")
    error.sqlite_errorcode = SQLITE_IOERR  # type: ignore[attr-defined]
    raise error


def test_without_a_history_the_chat_still_works_and_says_so_once(
        loop: asyncio.AbstractEventLoop, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    unavailable = History(tmp_path / "history.sqlite3", connect=_io_error)
    assert not unavailable.available
    stream = ScriptedStream()
    session = ChatSession(stream, unavailable)

    async def scenario() -> None:
        probe = Probe(session)
        session.send("one")
        await stream.next_request()
        stream.feed.put_nowait({"text": "first reply"})
        assert await probe.next_chunk() == "first reply"
        stream.feed.put_nowait({"done": True})
        await probe.until_idle()
        session.send("two")
        assert [m["content"] for m in await stream.next_request()] == ["one", "first reply", "two"]
        stream.feed.put_nowait({"done": True})
        await probe.until_idle()
        assert len(probe.notices) == 1 and "disk I/O error" in probe.notices[0]
        assert probe.failed == []

    run(loop, scenario())
    caplog.clear()  # the expected warnings
