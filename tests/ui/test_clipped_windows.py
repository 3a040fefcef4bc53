"""No text is cut off in the windows a person reads errors in: Settings with a failed download
(the real command, against a mirror that cannot be reached), the quick chat with a long
banner, and the status window with a crash."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from hivetray.config import default_config
from hivetray.errors import InsufficientMemory, RoleInError
from hivetray.history import History
from hivetray.paths import AppPaths
from hivetray.ui.chat_session import ChatSession
from hivetray.ui.quick_chat import QuickChatWindow
from hivetray.ui.settings import SettingsDialog
from hivetray.ui.status_window import StatusWindow
from hivetray.wording import Fix, Remedy
from tests.ui.clipping import assert_nothing_clipped
from tests.ui.conftest import PoolRig
from tests.ui.test_quick_chat import ScriptedStream, loop  # noqa: F401 (a fixture)

DEEP = "/home/someone/models/" + "a-rather-long-folder-name/" * 4 + "qwen2.5-7b-instruct.gguf"



@pytest.fixture
def quick_chat(qtbot: QtBot, tmp_path: Path, loop: asyncio.AbstractEventLoop  # noqa: F811
               ) -> QuickChatWindow:
    """The quick-chat window over a scripted stream (tests/ui/test_quick_chat.py)."""
    view = QuickChatWindow(ChatSession(ScriptedStream(), History(tmp_path / "history.sqlite3")))
    qtbot.addWidget(view)
    return view

def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_settings_shows_a_failed_download_in_full(qtbot: QtBot, home: AppPaths,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("HF_ENDPOINT", mirror)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                 "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    dialog = SettingsDialog(home, default_config())
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    downloader = dialog.role_tabs["chat"].downloader
    with qtbot.waitSignal(downloader.finished, timeout=30_000) as done:
        downloader.toggle()  # `hivetray models download chat …` in a child process
    ok, text = done.args
    assert not ok and text == downloader.message.text()
    assert text.startswith("Cannot fetch ") and f"the mirror in HF_ENDPOINT ({mirror})" in text
    assert text.endswith("before starting Hivetray, then press Download again")
    assert "hivetray " not in text and "`" not in text
    assert_nothing_clipped(dialog)
    dialog.resize(640, dialog.height())  # narrower: it wraps, the dialog grows
    assert_nothing_clipped(dialog)


def test_the_quick_chat_banner_and_reply_show_a_long_error_in_full(
        qtbot: QtBot, quick_chat: QuickChatWindow) -> None:
    view = quick_chat
    view.present()
    qtbot.waitExposed(view)
    view._add_view("user", "hello")
    view.reply = view._add_view("assistant")
    memory = InsufficientMemory(f"chat needs ~5.2 GiB of memory for {DEEP}, 924 MiB free",
                                "chat", 1, 2, Remedy(Fix.FREE_MEMORY, "chat",
                                                     stop=("vision (2.0 GiB)",), n_ctx=32768))
    view.session.failed.emit(RoleInError("chat", memory.wording))
    assert view.banner_button.text() == "Retry"
    assert_nothing_clipped(view)


def test_the_status_window_shows_a_crash_in_full(qtbot: QtBot, pool_rig: PoolRig) -> None:
    pool_rig.crash_chat(times=2)  # the breaker opens: the detail line says why
    window = StatusWindow(pool_rig.pool.snapshot, pool_rig.pool.paths.worker_log)
    qtbot.addWidget(window)
    window.resize(700, 620)
    window.present()
    qtbot.waitExposed(window)
    shown = window.detail.text()
    assert "the chat worker was killed by SIGKILL; its log is " in shown
    assert str(pool_rig.pool.paths.worker_log("chat")) in shown
    assert_nothing_clipped(window)


def test_a_long_error_in_settings_tooltips_is_a_windows_wording(
        qtbot: QtBot, home: AppPaths, tiny_models: dict[str, Path]) -> None:
    """The model fields' problems name Settings' own fields, never a command."""
    dialog = SettingsDialog(home, default_config())
    qtbot.addWidget(dialog)
    vision = dialog.role_tabs["vision"]
    vision.model.edit.setText(str(tiny_models["chat"]))  # no projector set
    problems = vision.problems()
    assert vision.mmproj is not None and problems == [vision.mmproj.edit.toolTip()]
    assert problems[0].endswith(": choose it in Settings → Vision → Projector (mmproj)")
    chat = dialog.role_tabs["chat"]
    chat.model.edit.setText(str(tiny_models["mmproj"]))
    assert chat.problems()[0].endswith(
        ": choose it as the Projector (mmproj) in Settings → Vision, and pick a model file")
    rerank = dialog.role_tabs["rerank"]
    rerank.model.edit.setText(str(tiny_models["chat"]))
    assert "`" not in rerank.problems()[0] and "hivetray " not in rerank.problems()[0]
