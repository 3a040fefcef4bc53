"""Keyboard and screen-reader checks of the welcome window, the quick chat, Settings and the
status window (offscreen, real widgets): Tab reaches every enabled control and never gets stuck,
the focused control looks focused, buttons and table columns have names, the role table and the
conversation read as sentences, and window sizes follow the font (which follows the screen's
DPI and the user's settings)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncGenerator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QFont, QImage
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QAbstractButton, QApplication, QTabWidget, QWidget
from pytestqt.qtbot import QtBot

from hivetray.config import default_config
from hivetray.history import History
from hivetray.models import builtin
from hivetray.paths import AppPaths
from hivetray.ui.chat_session import ChatSession
from hivetray.ui.quick_chat import GET_FIRST_MODEL_BUTTON, QuickChatWindow
from hivetray.ui.role_table import COLUMNS, RoleTableModel
from hivetray.ui.settings import SettingsDialog
from hivetray.ui.status_window import StatusWindow
from hivetray.ui.welcome import WelcomeWindow
from tests.ui.conftest import PoolRig

ACCESSIBLE_TEXT = Qt.ItemDataRole.AccessibleTextRole


async def _no_stream(role: str, method: str,
                     params: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
    yield {"done": True}  # pragma: no cover  (nothing is sent in these tests)


@pytest.fixture
def quick_chat(qtbot: QtBot, tmp_path: Path) -> Iterator[QuickChatWindow]:
    history = History(tmp_path / "history.sqlite3")
    window = QuickChatWindow(ChatSession(_no_stream, history))
    qtbot.addWidget(window)
    yield window
    history.close()


def conversation(window: QuickChatWindow) -> QuickChatWindow:
    """A chat as a person sees it: a question, a reply with code, a role problem."""
    window._add_view("user", "How do I list files?")
    reply = window._add_view("assistant", "Use **ls**:\n\n```\nls -l\n```")
    reply.repaint_text()
    window.show_banner("No chat model is set yet.", GET_FIRST_MODEL_BUTTON, "chat")
    return window


# -- walking with Tab -----------------------------------------------------------------------------
def label(widget: QWidget) -> str:
    """A control, as a failure message names it."""
    text = widget.text() if isinstance(widget, QAbstractButton) else ""
    return f"{type(widget).__name__} {widget.accessibleName() or text or widget.objectName()}"


def tab_stops(window: QWidget) -> set[QWidget]:
    """The controls a keyboard user must be able to reach: shown, enabled, taking Tab focus
    (a composite's inner part with a focus proxy counts as its owner)."""
    return {w for w in window.findChildren(QWidget)
            if w.isVisible() and w.isEnabled() and w.focusProxy() is None
            and w.focusPolicy().value & Qt.FocusPolicy.TabFocus.value}


def walk(window: QWidget) -> list[QWidget]:
    """Press Tab from the first control until focus comes back to it (or is stuck)."""
    start = min(tab_stops(window), key=lambda w: (w.mapTo(window, w.rect().topLeft()).y(),
                                                  w.mapTo(window, w.rect().topLeft()).x()))
    start.setFocus(Qt.FocusReason.TabFocusReason)
    visited: list[QWidget] = []
    for _ in range(3 * len(tab_stops(window)) + 5):
        focused = QApplication.focusWidget()
        assert focused is not None
        visited.append(focused)
        QTest.keyClick(focused, Qt.Key.Key_Tab)
        if QApplication.focusWidget() is start:
            break
    return visited


def show_active(qtbot: QtBot, window: QWidget) -> None:
    window.show()
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=5000)


def assert_tab_reaches_everything(window: QWidget) -> None:
    visited = walk(window)
    expected = tab_stops(window)
    missing = expected - set(visited)
    assert not missing, sorted(label(w) for w in missing)
    # stuck: Tab pressed on a control left the focus on it (a keyboard trap)
    stuck = [label(a) for a, b in itertools.pairwise(visited) if a is b]
    assert not stuck, stuck


def assert_focus_is_visible(window: QWidget) -> None:
    """Each control looks different with the keyboard focus than without it."""
    start = walk(window)[0]
    start.setFocus(Qt.FocusReason.TabFocusReason)
    focused: dict[QWidget, QImage] = {}
    for _ in range(3 * len(tab_stops(window)) + 5):
        widget = QApplication.focusWidget()
        assert widget is not None
        if widget in focused:
            break
        QApplication.processEvents()
        focused[widget] = widget.grab().toImage()
        QTest.keyClick(widget, Qt.Key.Key_Tab)
    QApplication.processEvents()
    invisible = [label(w) for w, image in focused.items()
                 if w is not QApplication.focusWidget() and w.grab().toImage() == image]
    assert not invisible, invisible


def each_tab(window: QWidget) -> Iterator[None]:
    """Every page of every tab widget in turn (a hidden page's controls are not reachable)."""
    tabs = window.findChildren(QTabWidget)
    if not tabs:
        yield
        return
    for tab_widget in tabs:
        for index in range(tab_widget.count()):
            tab_widget.setCurrentIndex(index)
            QApplication.processEvents()
            yield


def check_keyboard(qtbot: QtBot, window: QWidget) -> None:
    show_active(qtbot, window)
    for _page in each_tab(window):
        assert_tab_reaches_everything(window)
        assert_focus_is_visible(window)


def test_welcome_window_by_keyboard(qtbot: QtBot) -> None:
    window = WelcomeWindow(builtin.LABEL)
    qtbot.addWidget(window)
    check_keyboard(qtbot, window)


def test_quick_chat_by_keyboard(qtbot: QtBot, quick_chat: QuickChatWindow) -> None:
    check_keyboard(qtbot, conversation(quick_chat))


def test_settings_by_keyboard(qtbot: QtBot, home: AppPaths) -> None:
    dialog = SettingsDialog(home, default_config())
    qtbot.addWidget(dialog)
    check_keyboard(qtbot, dialog)


def test_status_window_by_keyboard(qtbot: QtBot, pool_rig: PoolRig) -> None:
    window = StatusWindow(pool_rig.pool.snapshot, pool_rig.pool.paths.worker_log)
    qtbot.addWidget(window)
    window.present()
    check_keyboard(qtbot, window)


# -- names ----------------------------------------------------------------------------------------
def unnamed_buttons(window: QWidget) -> list[str]:
    buttons = [b for _page in each_tab(window) for b in window.findChildren(QAbstractButton)
               if b.isVisibleTo(window)]
    return [f"{type(b).__name__} in {type(b.parent()).__name__}" for b in buttons
            if not (b.accessibleName().strip() or b.text().strip())]


def test_every_button_has_a_name(qtbot: QtBot, home: AppPaths, pool_rig: PoolRig,
                                 quick_chat: QuickChatWindow) -> None:
    welcome = WelcomeWindow(builtin.LABEL)
    settings = SettingsDialog(home, default_config())
    settings.role_tabs["chat"].model.edit.setText("/models/chat.gguf")  # shows its clear button
    status = StatusWindow(pool_rig.pool.snapshot, pool_rig.pool.paths.worker_log)
    windows: list[QWidget] = [welcome, settings, status, conversation(quick_chat)]
    for window in windows:
        if window is not quick_chat:
            qtbot.addWidget(window)
        window.show()
        assert unnamed_buttons(window) == [], type(window).__name__


def test_role_table_columns_and_rows_read_as_words(pool_rig: PoolRig) -> None:
    model = RoleTableModel(pool_rig.pool.snapshot)
    model.refresh()
    spoken = [model.headerData(c, Qt.Orientation.Horizontal, ACCESSIBLE_TEXT)
              for c in range(len(COLUMNS))]
    assert all(isinstance(text, str) and text.strip() for text in spoken), spoken
    assert "Process ID" in spoken and "Tokens per second" in spoken
    row = model.data(model.index(0, 0), ACCESSIBLE_TEXT)
    assert isinstance(row, str)
    assert row.startswith("chat role: stopped") and "chat.gguf" in row, row
    cell = model.data(model.index(0, [k for _h, k, _f in COLUMNS].index("pid")),
                      ACCESSIBLE_TEXT)
    assert cell == "Process ID: none"  # not "—"


def test_status_table_says_what_it_is(qtbot: QtBot, pool_rig: PoolRig) -> None:
    window = StatusWindow(pool_rig.pool.snapshot, pool_rig.pool.paths.worker_log)
    qtbot.addWidget(window)
    assert window.table.accessibleName() == "Roles"
    assert not window.table.tabKeyNavigation()  # Tab leaves the table; arrows move in it


def test_the_conversation_reads_as_who_said_what(quick_chat: QuickChatWindow) -> None:
    conversation(quick_chat)
    assert quick_chat.scroll_area.accessibleName() == "Conversation"
    views = [quick_chat.messages_layout.itemAt(i).widget()
             for i in range(quick_chat.messages_layout.count() - 1)]
    assert [v.accessibleName() for v in views if v is not None] == ["You", "Hivetray"]
    reply = views[1]
    assert reply is not None
    body = reply.body  # type: ignore[attr-defined]
    assert body.accessibleName() == "Use ls:\nls -l"  # the words, not Markdown or soft breaks
    assert quick_chat.input.accessibleName() == "Message"
    long = quick_chat._add_view("assistant", "x" * 100)  # soft-wrapped on screen
    assert long.body.accessibleName() == "x" * 100


def test_a_streamed_reply_reads_as_words_once_it_ends(quick_chat: QuickChatWindow) -> None:
    quick_chat.reply = quick_chat._add_view("assistant")
    for piece in ("**Paris** is", " the capital."):
        quick_chat._on_chunk(piece)
    quick_chat._on_finished({"finish_reason": "stop"})
    assert quick_chat.reply.body.accessibleName() == "Paris is the capital."


# -- sizes ----------------------------------------------------------------------------------------
def sizes_under_fonts(qapp: QApplication, make: Callable[[], QWidget]) -> list[tuple[int, int]]:
    base = qapp.font()
    sizes: list[tuple[int, int]] = []
    try:
        for points in (4.0, 6.5):  # both fit the offscreen screen (800 x 600)
            font = QFont(base)
            font.setPointSizeF(points)
            qapp.setFont(font)
            window = make()
            sizes.append((window.width(), window.height()))
            window.deleteLater()
    finally:
        qapp.setFont(base)
    return sizes


def test_window_sizes_follow_the_font(qapp: QApplication, tmp_path: Path,
                                      pool_rig: PoolRig) -> None:
    history = History(tmp_path / "history.sqlite3")
    makers: dict[str, Callable[[], QWidget]] = {
        "quick chat": lambda: QuickChatWindow(ChatSession(_no_stream, history)),
        "status": lambda: StatusWindow(pool_rig.pool.snapshot, pool_rig.pool.paths.worker_log),
        "welcome": lambda: WelcomeWindow(builtin.LABEL),
    }
    try:
        for name, make in makers.items():
            (small_w, small_h), (large_w, large_h) = sizes_under_fonts(qapp, make)
            assert large_w >= 1.15 * small_w and large_h >= 1.15 * small_h, (
                name, small_w, small_h, large_w, large_h)
    finally:
        history.close()
