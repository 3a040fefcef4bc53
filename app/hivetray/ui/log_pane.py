"""The logs pane of the status window: the event log and each worker's log tail.

Events arrive from the pool at any rate; they are buffered and appended by a 100 ms timer
(qutebrowser's habit: throttle repaints), and the view keeps a bounded number of lines, so a
flood of events never stalls the loop. Filtering rebuilds the view from the in-memory buffer.
"""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path
from typing import Any

from PySide6.QtCore import QTimer
from PySide6.QtGui import QGuiApplication, QTextCursor
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from hivetray import ROLES
from hivetray.pool.logtail import read_tail

MAX_EVENTS = 20_000
LEVELS = ("all levels", "info", "warning", "error")
_LEVEL_RANK = {"info": 0, "warning": 1, "error": 2}


def format_event(event: dict[str, Any]) -> str:
    stamp = time.strftime("%H:%M:%S", time.localtime(event["ts"]))
    role = event.get("role") or "pool"
    text = f"{stamp}  {event['level'].upper():7} {role:7} {event['message']}"
    tail = (event.get("data") or {}).get("log_tail")
    if tail:  # crash rows show the log tail
        text += "\n" + "\n".join("        │ " + line for line in tail.splitlines()[-15:])
    return text


class EventLogView(QWidget):
    def __init__(self) -> None:
        super().__init__()
        self.events: deque[dict[str, Any]] = deque(maxlen=MAX_EVENTS)
        self._pending: list[dict[str, Any]] = []
        self.role_filter = QComboBox()
        self.role_filter.addItems(["all roles", *ROLES])
        self.level_filter = QComboBox()
        self.level_filter.addItems(list(LEVELS))
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search…")
        self.search.setClearButtonEnabled(True)
        self.follow = QCheckBox("Follow")
        self.follow.setChecked(True)
        copy = QPushButton("Copy")
        copy.setToolTip("Copy the shown lines (or the selection)")
        copy.clicked.connect(self.copy)
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setMaximumBlockCount(MAX_EVENTS * 4)
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        bar = QHBoxLayout()
        for widget in (self.role_filter, self.level_filter, self.search, self.follow, copy):
            bar.addWidget(widget)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(bar)
        layout.addWidget(self.text)
        for signal in (self.role_filter.currentIndexChanged, self.level_filter.currentIndexChanged,
                       self.search.textChanged):
            signal.connect(self.rebuild)
        self._flush_timer = QTimer(self)
        self._flush_timer.setInterval(100)
        self._flush_timer.timeout.connect(self.flush)
        self._flush_timer.start()

    def add(self, event: dict[str, Any]) -> None:
        """Cheap: just buffer; the timer appends."""
        self.events.append(event)
        self._pending.append(event)

    def load(self, events: list[dict[str, Any]]) -> None:
        """Many events at once (the history, when the window first opens): one repaint."""
        self.events.extend(events)
        self.rebuild()

    def matches(self, event: dict[str, Any]) -> bool:
        role = self.role_filter.currentText()
        if role != "all roles" and event.get("role") != role:
            return False
        level = self.level_filter.currentText()
        if level != "all levels" and _LEVEL_RANK.get(event["level"], 0) < _LEVEL_RANK[level]:
            return False
        needle = self.search.text().strip().lower()
        return not needle or needle in event["message"].lower()

    def flush(self) -> None:
        if not self._pending:
            return
        lines = [format_event(e) for e in self._pending if self.matches(e)]
        self._pending.clear()
        if lines:
            self.text.appendPlainText("\n".join(lines))
            if self.follow.isChecked():
                self.text.moveCursor(QTextCursor.MoveOperation.End)
                self.text.ensureCursorVisible()

    def rebuild(self) -> None:
        self._pending.clear()
        self.text.setPlainText("\n".join(format_event(e) for e in self.events if self.matches(e)))
        if self.follow.isChecked():
            self.text.moveCursor(QTextCursor.MoveOperation.End)

    def shown_text(self) -> str:
        return self.text.toPlainText()

    def copy(self) -> None:
        selected = self.text.textCursor().selectedText().replace("\u2029", "\n")
        QGuiApplication.clipboard().setText(selected or self.text.toPlainText())


class WorkerLogView(QWidget):
    """The tail of ``logs/worker-<role>.log``, refreshed each second while following."""

    TAIL_BYTES = 64 * 1024

    def __init__(self, log_path_for: Any) -> None:
        super().__init__()
        self._log_path_for = log_path_for
        self.role = QComboBox()
        self.role.addItems(list(ROLES))
        self.follow = QCheckBox("Follow")
        self.follow.setChecked(True)
        self.path_label = QLineEdit()
        self.path_label.setReadOnly(True)
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        bar = QHBoxLayout()
        bar.addWidget(self.role)
        bar.addWidget(self.path_label, 1)
        bar.addWidget(self.follow)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(bar)
        layout.addWidget(self.text)
        self.role.currentIndexChanged.connect(self.reload)
        self._timer = QTimer(self)
        self._timer.setInterval(1000)
        self._timer.timeout.connect(self._tick)
        self._timer.start()
        self._shown = ""

    def show_role(self, role: str) -> None:
        self.role.setCurrentText(role)
        self.reload()

    def _tick(self) -> None:
        if self.follow.isChecked() and self.isVisible():
            self.reload()

    def reload(self) -> None:
        path: Path = self._log_path_for(self.role.currentText())
        self.path_label.setText(str(path))
        text = read_tail(path, self.TAIL_BYTES) or f"(no log yet at {path})"
        if text != self._shown:
            self._shown = text
            self.text.setPlainText(text)
            self.text.moveCursor(QTextCursor.MoveOperation.End)


class LogPane(QTabWidget):
    def __init__(self, log_path_for: Any) -> None:
        super().__init__()
        self.events = EventLogView()
        self.worker_log = WorkerLogView(log_path_for)
        self.addTab(self.events, "Events")
        self.addTab(self.worker_log, "Worker logs")
