"""The events pane: one row per event, a crash's log tail folded until asked for, no sideways
scrolling, filters, Copy, the keyboard, and the bounded buffer (offscreen widgets)."""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication, QPlainTextEdit, QWidget
from pytestqt.qtbot import QtBot

from hivetray.desktop import DesktopApp
from hivetray.errors import CircuitOpen
from hivetray.pool.events import Event, EventKind
from hivetray.ui.event_model import MESSAGE, TIME, EventListModel
from hivetray.ui.log_pane import EventLogView, WorkerLogView
from tests.test_desktop import desktop  # noqa: F401  (the fixture)

#: what a real crash event carries: llama.cpp's chatter before the fatal line
TAIL = "\n".join([
    "llama_model_loader: - kv  21: tokenizer.chat_template str = {% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>'}}",
    *(f"llama_perf_context_print: eval time = {i}.00 ms / 16 runs" for i in range(40)),
    "system_info: n_threads = 2 | CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1",
    "GGML_ASSERT(id_to_token.size() == token_to_id.size()) failed",
])
CRASH = "the chat worker was killed by SIGABRT (log: /h/logs/worker-chat.log)\nmore details"


def ev(kind: EventKind, role: str | None, message: str, level: str = "info",
       **data: object) -> Event:
    return Event(kind, role, message, dict(data), time.time(), level)


def crash(role: str = "chat") -> Event:
    return ev(EventKind.CRASH, role, CRASH.replace("chat", role), "error", exitcode=-6,
              log_tail=TAIL)


def make_view(qtbot: QtBot, width: int = 700) -> EventLogView:
    view = EventLogView()
    qtbot.addWidget(view)
    view.resize(width, 400)
    view.show()
    qtbot.waitExposed(view)
    return view


def cell(view: EventLogView, row: int, column: int,
         role: Qt.ItemDataRole = Qt.ItemDataRole.DisplayRole) -> object:
    return view.model.data(view.model.index(row, column), role)


def test_one_row_per_event_and_the_crash_tail_stays_folded(qtbot: QtBot) -> None:
    view = make_view(qtbot)
    first = ev(EventKind.STATE, "chat", "chat: stopped → starting")
    view.add(first)
    view.add(crash())
    assert view.model.rowCount() == 0  # nothing painted until the throttle timer fires
    qtbot.waitUntil(lambda: view.model.rowCount() == 2, timeout=2000)
    assert [cell(view, 1, c) for c in range(1, 4)] == [
        "ERROR", "chat", "the chat worker was killed by SIGABRT (log: /h/logs/worker-chat.log)"]
    assert cell(view, 1, MESSAGE, Qt.ItemDataRole.ToolTipRole) == CRASH  # the whole text
    assert cell(view, 0, TIME) == time.strftime("%H:%M:%S", time.localtime(first.ts))
    # the tail is one folded child row, not inline text
    crash_row = view.model.index(1, TIME)
    assert view.model.rowCount(crash_row) == 1 and view.model.rowCount(view.model.index(0, 0)) == 0
    assert not view.is_open(1) and view.tail_widget(crash_row) is None
    assert "GGML_ASSERT" not in view.shown_text() and "chat_template" not in view.shown_text()
    assert view.shown_text().count("\n") == 2  # two rows, the crash message's second line


def test_enter_right_left_and_double_click_open_and_fold_the_tail(qtbot: QtBot) -> None:
    view = make_view(qtbot)
    view.load([ev(EventKind.SPAWN, "chat", "chat worker pid 7 starting"), crash()])
    tree = view.list
    tree.setFocus()
    tree.setCurrentIndex(view.model.index(0, TIME))
    qtbot.keyClick(tree, Qt.Key.Key_Return)
    assert not view.is_open(0) and view.tail_widget(view.model.index(0, 0)) is None
    qtbot.keyClick(tree, Qt.Key.Key_Down)
    assert tree.currentIndex().row() == 1
    qtbot.keyClick(tree, Qt.Key.Key_Return)
    assert view.is_open(1)
    box = view.tail_widget(view.model.index(1, 0))
    assert isinstance(box, QPlainTextEdit)
    assert box.toPlainText() == TAIL and box.isReadOnly()
    assert box.lineWrapMode() is QPlainTextEdit.LineWrapMode.WidgetWidth
    assert box.font().fixedPitch() or box.fontInfo().fixedPitch()
    assert box.textInteractionFlags() & Qt.TextInteractionFlag.TextSelectableByMouse
    assert box.accessibleName() == "Log tail of the chat worker"
    qtbot.waitUntil(box.isVisible, timeout=2000)
    assert box.height() > 3 * box.fontMetrics().lineSpacing()  # room to read, not one line
    bar = box.verticalScrollBar()  # opened at its end: the last lines say why it died
    qtbot.waitUntil(lambda: bar.maximum() > 0 and bar.value() == bar.maximum(), timeout=2000)
    qtbot.keyClick(tree, Qt.Key.Key_Left)
    assert not view.is_open(1)
    qtbot.keyClick(tree, Qt.Key.Key_Right)
    assert view.is_open(1)
    qtbot.keyClick(tree, Qt.Key.Key_Enter)
    assert not view.is_open(1)
    where = tree.visualRect(view.model.index(1, MESSAGE)).center()
    for attempt in range(2):  # a real double-click is a click, then Qt's double-click event
        qtbot.mouseClick(tree.viewport(), Qt.MouseButton.LeftButton, pos=where)
        qtbot.mouseDClick(tree.viewport(), Qt.MouseButton.LeftButton, pos=where)
        assert view.is_open(1) is (attempt == 0)


def test_follow_scrolls_down_but_never_sideways(qtbot: QtBot) -> None:
    view = make_view(qtbot, width=420)
    long_line = "the HTTP API could not listen on 127.0.0.1:11480 " + "x" * 3000
    for i in range(300):
        view.add(ev(EventKind.API, None, f"{i} {long_line}", "warning"))
    view.add(crash())
    view.flush()
    tree = view.list
    vbar, hbar = tree.verticalScrollBar(), tree.horizontalScrollBar()
    qtbot.waitUntil(lambda: vbar.maximum() > 0 and vbar.value() == vbar.maximum(), timeout=2000)
    assert hbar.value() == 0
    tree.setFocus()
    tree.setCurrentIndex(view.model.index(299, MESSAGE))  # the message column, far right
    qtbot.keyClick(tree, Qt.Key.Key_Down)
    qtbot.keyClick(tree, Qt.Key.Key_Right)  # opens the tail; must not scroll
    assert view.is_open(300) and hbar.value() == 0
    # the row height stays one line: long messages are elided, not wrapped over many lines
    assert tree.visualRect(view.model.index(0, MESSAGE)).height() < 2 * tree.fontMetrics().height()
    assert tree.textElideMode() is Qt.TextElideMode.ElideRight and not tree.wordWrap()
    # the user may still scroll by hand; follow puts it back at the left edge
    hbar.setValue(hbar.maximum())
    view.add(ev(EventKind.STATE, "chat", "chat: ready"))
    view.flush()
    assert hbar.value() == 0 and vbar.value() == vbar.maximum()


def test_the_worker_log_wraps_and_does_not_scroll_sideways(qtbot: QtBot, tmp_path: Path) -> None:
    log = tmp_path / "worker-chat.log"
    log.write_text("short\n" + "y" * 5000 + "\n" + "z" * 5000)
    pane = WorkerLogView(lambda role: tmp_path / f"worker-{role}.log")
    qtbot.addWidget(pane)
    pane.resize(400, 300)
    pane.show()
    qtbot.waitExposed(pane)
    pane.reload()
    assert pane.text.toPlainText().endswith("z" * 5000)
    assert pane.text.horizontalScrollBar().value() == 0


def test_filters_keep_open_tails_and_copy_copies_the_shown_rows(qtbot: QtBot) -> None:
    view = make_view(qtbot)
    view.load([ev(EventKind.STATE, "chat", "chat: stopped → starting"), crash("embed"),
               ev(EventKind.CONFIG, None, "config.toml line 3: bad value", "warning")])
    view.copy()
    copied = QGuiApplication.clipboard().text()
    assert copied == view.shown_text() and len(copied.splitlines()) == 4
    assert "GGML_ASSERT" not in copied  # a folded tail is not copied
    view.toggle_tail(view.model.index(1, MESSAGE))
    view.copy()
    copied = QGuiApplication.clipboard().text()
    assert "        │ GGML_ASSERT(id_to_token.size() == token_to_id.size()) failed" in copied
    assert copied.index("SIGABRT") < copied.index("GGML_ASSERT") < copied.index("config.toml")
    view.level_filter.setCurrentText("warning")
    assert [e.kind for e in view.model.shown_events()] == [EventKind.CRASH, EventKind.CONFIG]
    assert view.is_open(0)  # the open tail stays open through a filter change
    view.level_filter.setCurrentText("all levels")
    view.role_filter.setCurrentText("pool")  # the pool's own events have no role
    assert [e.kind for e in view.model.shown_events()] == [EventKind.CONFIG]
    view.role_filter.setCurrentText("chat")
    assert "starting" in view.shown_text() and "SIGABRT" not in view.shown_text()
    view.role_filter.setCurrentText("all roles")
    view.search.setText("sigabrt")
    assert [e.kind for e in view.model.shown_events()] == [EventKind.CRASH]
    # Ctrl+C in the list copies the selected rows only
    view.search.setText("")
    view.list.setFocus()
    view.list.setCurrentIndex(view.model.index(0, TIME))
    qtbot.keyClick(view.list, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
    assert QGuiApplication.clipboard().text().endswith("chat    chat: stopped → starting")


def test_ten_thousand_events_load_and_filter(qtbot: QtBot) -> None:
    view = make_view(qtbot)
    for i in range(10_000):
        view.add(ev(EventKind.STATE, "chat" if i % 2 else "embed", f"message {i}"))
    started = time.perf_counter()
    view.flush()
    assert view.model.rowCount() == 10_000
    view.role_filter.setCurrentText("embed")
    assert view.model.rowCount() == 5_000
    assert time.perf_counter() - started < 5.0


def test_old_events_leave_the_bounded_buffer_and_tails_follow_their_row(qtbot: QtBot) -> None:
    model = EventListModel(capacity=10)
    model.append([crash()])
    model.append([ev(EventKind.STATE, "chat", f"m{i}") for i in range(5)] + [crash("embed")])
    model.append([ev(EventKind.STATE, "chat", f"n{i}") for i in range(6)])
    assert model.rowCount() == 10 and model.buffered == 10
    events = model.shown_events()
    assert events[0].message == "m2" and events[3].kind is EventKind.CRASH  # the first crash went
    row = model.index(3, TIME)
    tail = model.index(0, TIME, row)
    assert model.parent(tail) == row and model.event_at(tail) is events[3]
    assert model.data(tail) == TAIL and model.rowCount(tail) == 0
    assert model.data(tail, Qt.ItemDataRole.SizeHintRole).height() > 0
    # one batch larger than the buffer keeps its newest events only
    model.append([ev(EventKind.STATE, "rerank", f"o{i}") for i in range(25)])
    assert [e.message for e in model.shown_events()] == [f"o{i}" for i in range(15, 25)]


def test_the_list_is_reached_by_tab_and_everything_is_named(qtbot: QtBot,
                                                             qapp: QApplication) -> None:
    view = make_view(qtbot)
    view.load([crash()])
    view.activateWindow()
    view.copy_button.setFocus()
    qtbot.waitUntil(view.copy_button.hasFocus, timeout=2000)
    qtbot.keyClick(view.copy_button, Qt.Key.Key_Tab)
    assert qapp.focusWidget() is view.list
    named: list[QWidget] = [view.list, view.role_filter, view.level_filter, view.search,
                            view.copy_button]
    assert all(widget.accessibleName() for widget in named)
    assert view.follow.text() == "Follow"
    assert view.model.headerData(MESSAGE, Qt.Orientation.Horizontal,
                                 Qt.ItemDataRole.AccessibleTextRole) == "Message"
    assert cell(view, 0, TIME, Qt.ItemDataRole.AccessibleTextRole).endswith(  # type: ignore[union-attr]
        "error, chat: the chat worker was killed by SIGABRT (log: /h/logs/worker-chat.log)")


def test_the_status_window_shows_pool_events_as_rows(qtbot: QtBot,
                                                     desktop: DesktopApp) -> None:  # noqa: F811
    desktop.show_status()
    window = desktop.status_window
    assert window is not None
    qtbot.addWidget(window)
    desktop.pool.events.emit(crash())
    pane = window.logs.events
    qtbot.waitUntil(lambda: any(e.kind is EventKind.CRASH for e in pane.model.shown_events()),
                    timeout=2000)
    row = next(r for r, e in enumerate(pane.model.shown_events()) if e.kind is EventKind.CRASH)
    assert pane.model.rowCount(pane.model.index(row, TIME)) == 1
    # the event also scheduled the app's repaint: let it run while the widgets still exist
    qtbot.waitUntil(lambda: not desktop._refresh.isActive(), timeout=2000)
    window.close()


def test_an_opened_tail_below_the_visible_rows_is_brought_into_view(qtbot: QtBot) -> None:
    view = make_view(qtbot)
    view.follow.setChecked(False)
    view.load([*(ev(EventKind.STATE, "chat", f"chat: state {i}") for i in range(60)), crash()])
    tree = view.list
    tree.scrollToTop()
    view.toggle_tail(view.model.index(60, TIME))
    box = view.tail_widget(view.model.index(60, 0))
    assert box is not None

    def tail_in_view() -> bool:
        shown = tree.viewport().rect()
        where = box.geometry()
        return box.isVisible() and shown.contains(where.topLeft()) \
            and shown.contains(where.bottomLeft())

    qtbot.waitUntil(tail_in_view, timeout=2000)
    bar = box.verticalScrollBar()  # and at its end: the last lines say why it died
    assert bar.value() == bar.maximum()
    assert tree.horizontalScrollBar().value() == 0


def test_rows_speak_a_windows_words_never_a_command(qtbot: QtBot) -> None:
    breaker = CircuitOpen("chat", 4, 60, 41.6)
    view = make_view(qtbot)
    view.load([Event(EventKind.BREAKER_OPEN, "chat", str(breaker), {}, time.time(), "error",
                     wording=breaker.wording),
               ev(EventKind.STATE, "embed", "the embed role is in error: bad file (after fixing "
                  "it: hivetray retry embed)\nmore")])
    for row in range(2):
        shown = str(cell(view, row, MESSAGE))
        tip = str(cell(view, row, MESSAGE, Qt.ItemDataRole.ToolTipRole))
        assert "hivetray " not in shown + tip and "`" not in shown + tip, (shown, tip)
    assert "press Retry" in str(cell(view, 0, MESSAGE))
    assert cell(view, 1, MESSAGE) == "the embed role is in error: bad file"
    assert str(cell(view, 1, MESSAGE, Qt.ItemDataRole.ToolTipRole)).endswith("\nmore")
