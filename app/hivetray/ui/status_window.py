"""The status window: the role table (with a 1 s countdown tick) above the logs pane."""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QMainWindow,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from hivetray.pool.status import PoolStatus, RoleStatus
from hivetray.ui.a11y import FOCUS_STYLE, describe, name_clear_buttons, text_size
from hivetray.ui.error_text import ErrorText
from hivetray.ui.log_pane import LogPane
from hivetray.ui.role_table import KEYS, RoleTableModel

WINDOW_TITLE = "Hivetray — Status"


def detail_html(row: RoleStatus) -> str:
    """The selected role's last error (in a window's words: the button to press, not the
    command to type), its built-in model and sampling defaults, as rich text (escaped: an
    error quotes file names and llama.cpp's words, which may hold ``<``)."""
    lines = [f"<b>{row.role}</b>: {html.escape(row.error_for_window or 'no errors')}"]
    if row.model_label:
        lines.append(html.escape(row.model_label))
    if row.sampling is not None:
        lines.append(f"Sampling: {html.escape(row.sampling.describe())}")
    return "<br>".join(lines).replace("\n", "<br>")


class StatusWindow(QMainWindow):
    retry = Signal(str)
    restart = Signal(str)
    stop = Signal(str)

    def __init__(self, snapshot: Callable[[], PoolStatus],
                 log_path_for: Callable[[str], Path]) -> None:
        super().__init__()
        self.setWindowTitle(WINDOW_TITLE)
        self.setStyleSheet(FOCUS_STYLE)
        self.model = RoleTableModel(snapshot)
        self.table = QTableView()
        self.table.setModel(self.model)
        describe(self.table, "Roles", "One row per role: its state, model, process and "
                 "figures. The arrow keys move between roles and cells; Tab leaves the table.")
        self.table.setTabKeyNavigation(False)  # Tab goes on to the buttons, not cell by cell
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setSectionResizeMode(KEYS.index("model"),
                                                           QHeaderView.ResizeMode.Stretch)
        self.table.doubleClicked.connect(lambda _i: self._open_log())
        self.detail = ErrorText("Details of the selected role", "roleDetail")
        buttons = QHBoxLayout()
        self.buttons: dict[str, QPushButton] = {}
        for name, tip, slot in (
            ("Retry", "Reset the crash counter or error and try again (Ctrl+R)", self._retry),
            ("Restart", "Stop and start the worker", self._restart),
            ("Stop", "Stop the worker (it starts again on next use)", self._stop),
            ("Open log", "Show this worker's log below", self._open_log),
        ):
            button = QPushButton(name)
            button.setToolTip(tip)
            button.clicked.connect(slot)
            buttons.addWidget(button)
            self.buttons[name] = button
        buttons.addStretch(1)
        self.logs = LogPane(log_path_for)
        top = QWidget()
        top_layout = QVBoxLayout(top)
        top_layout.addWidget(self.table)
        top_layout.addWidget(self.detail)
        top_layout.addLayout(buttons)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(top)
        splitter.addWidget(self.logs)
        line = self.fontMetrics().lineSpacing()
        splitter.setSizes([19 * line, 24 * line])  # the table's rows above, the logs below
        self.setCentralWidget(splitter)
        self.table.selectionModel().selectionChanged.connect(lambda *_: self._update_detail())
        name_clear_buttons(self)
        self.resize(text_size(self, 170, 43))
        QShortcut(QKeySequence("Ctrl+R"), self, self._retry)
        QShortcut(QKeySequence("Ctrl+W"), self, self.hide)
        QShortcut(QKeySequence("Escape"), self, self.hide)
        self.tick = QTimer(self)
        self.tick.setInterval(1000)  # the cooldown countdown and uptime tick every second
        self.tick.timeout.connect(self.refresh)
        self.refresh()
        self.table.selectRow(0)

    def refresh(self) -> None:
        self.model.refresh()
        self._update_detail()

    def selected_role(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        return self.model.row_data(rows[0].row()).role

    def _update_detail(self) -> None:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if not rows:
            self.detail.clear()
            return
        row = self.model.row_data(rows[0].row())
        self.detail.set_html(detail_html(row))
        self.buttons["Retry"].setEnabled(row.can_retry)
        self.buttons["Stop"].setEnabled(row.can_stop)
        self.buttons["Restart"].setEnabled(row.configured)

    def _retry(self) -> None:
        if (role := self.selected_role()) is not None:
            self.retry.emit(role)

    def _restart(self) -> None:
        if (role := self.selected_role()) is not None:
            self.restart.emit(role)

    def _stop(self) -> None:
        if (role := self.selected_role()) is not None:
            self.stop.emit(role)

    def _open_log(self) -> None:
        if (role := self.selected_role()) is not None:
            self.logs.setCurrentWidget(self.logs.worker_log)
            self.logs.worker_log.show_role(role)

    def present(self) -> None:
        """Show, raise and focus (the second-launch and tray-click path)."""
        self.refresh()
        self.tick.start()
        self.show()
        self.setWindowState(self.windowState() & ~Qt.WindowState.WindowMinimized)
        self.raise_()
        self.activateWindow()

    def closeEvent(self, event: QCloseEvent) -> None:
        """Closing only hides: the app lives in the tray."""
        self.tick.stop()
        event.ignore()
        self.hide()
