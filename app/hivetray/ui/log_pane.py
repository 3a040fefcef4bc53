"""The logs pane of the status window: the event list and each worker's log tail.

Events arrive from the pool at any rate; they are buffered and handed to the model by a 100 ms
timer (qutebrowser's habit: throttle repaints), as one insertion, and the model keeps a bounded
number of them, so a flood of events never stalls the loop. Filtering resets the model from its
buffer.

The list shows one row per event (time, level, role, the message's first line; the whole message
in the tooltip). A crash row folds its worker log tail away until asked (the arrow, Enter, Right,
a double-click); the tail then shows in a monospace, wrapped, selectable box under the row. The
view never scrolls sideways by itself: Follow scrolls to the bottom and keeps the horizontal
position at the left edge, so the start of every row stays in sight.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, Qt, QTimer, Signal
from PySide6.QtGui import (
    QFontDatabase,
    QFontMetrics,
    QGuiApplication,
    QKeyEvent,
    QKeySequence,
    QTextCursor,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QTabWidget,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from hivetray import ROLES
from hivetray.pool.events import Event
from hivetray.pool.logtail import read_tail
from hivetray.ui.event_model import (
    LEVEL,
    LEVELS,
    MAX_EVENTS,
    MESSAGE,
    ROLE,
    TIME,
    EventFilter,
    EventListModel,
    event_text,
    level_filter_value,
    log_tail,
    role_name,
)

__all__ = ["LEVELS", "MAX_EVENTS", "EventLogView", "EventTreeView", "LogPane", "WorkerLogView"]
ALL_ROLES = "all roles"


class EventTreeView(QTreeView):
    """The event list: Enter toggles a crash's tail (Right and Left expand and collapse, as in
    any tree), Ctrl+C copies the selected rows, and nothing scrolls it sideways but the user."""

    toggle_requested = Signal(QModelIndex)
    copy_requested = Signal()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and self.currentIndex().isValid():
            self.toggle_requested.emit(self.currentIndex())
            return
        if event.matches(QKeySequence.StandardKey.Copy):
            self.copy_requested.emit()
            return
        super().keyPressEvent(event)

    def scrollTo(self, index: QModelIndex | QPersistentModelIndex,
                 hint: QAbstractItemView.ScrollHint = QAbstractItemView.ScrollHint.EnsureVisible
                 ) -> None:
        """Bring a row into view vertically only: Qt would also scroll to the column of the
        index, which hides the start of every row."""
        left = self.horizontalScrollBar().value()
        super().scrollTo(index, hint)
        self.horizontalScrollBar().setValue(left)


class TailBox(QPlainTextEdit):
    """A crash's log tail, opened at its end: the last lines say why the worker died.

    The text is laid out after it is set, in steps and again at every new width, so one
    scroll at creation lands nowhere near the end: the box follows its scroll range to the end
    until the person scrolls it themselves."""

    def __init__(self) -> None:
        super().__init__()
        self._at_end = True
        bar = self.verticalScrollBar()
        bar.rangeChanged.connect(self._follow_end)
        bar.actionTriggered.connect(self._scrolled_by_person)

    def _follow_end(self, _low: int, high: int) -> None:
        if self._at_end:
            self.verticalScrollBar().setValue(high)

    def _scrolled_by_person(self, _action: int) -> None:
        self._at_end = False


class EventLogView(QWidget):
    def __init__(self) -> None:
        super().__init__()
        self._pending: list[Event] = []
        self._expanded: set[int] = set()  # serials of crash rows showing their tail
        self.model = EventListModel(MAX_EVENTS)
        self.role_filter = QComboBox()
        self.role_filter.addItems([ALL_ROLES, *ROLES, "pool"])
        self.role_filter.setAccessibleName("Show events of role")
        self.level_filter = QComboBox()
        self.level_filter.addItems(list(LEVELS))
        self.level_filter.setAccessibleName("Show events of at least level")
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search…")
        self.search.setClearButtonEnabled(True)
        self.search.setAccessibleName("Search events")
        self.follow = QCheckBox("Follow")
        self.follow.setChecked(True)
        self.follow.setToolTip("Keep the newest event in sight")
        self.copy_button = QPushButton("Copy")
        self.copy_button.setToolTip("Copy the shown events, with the log tails that are open "
                                    "(Ctrl+C in the list copies the selected ones)")
        self.copy_button.setAccessibleName("Copy the shown events")
        self.copy_button.clicked.connect(self.copy)
        self.list = self._build_list()
        bar = QHBoxLayout()
        for widget in (self.role_filter, self.level_filter, self.search, self.follow,
                       self.copy_button):
            bar.addWidget(widget)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(bar)
        layout.addWidget(self.list)
        for signal in (self.role_filter.currentIndexChanged, self.level_filter.currentIndexChanged,
                       self.search.textChanged):
            signal.connect(self.rebuild)
        self.follow.toggled.connect(lambda on: self.scroll_to_newest() if on else None)
        self._flush_timer = QTimer(self)
        self._flush_timer.setInterval(100)
        self._flush_timer.timeout.connect(self.flush)
        self._flush_timer.start()

    def _build_list(self) -> EventTreeView:
        view = EventTreeView()
        view.setModel(self.model)
        view.setAccessibleName("Events")
        view.setAccessibleDescription("One row per event: time, level, role, message. On a "
                                      "crash, Enter or Right shows its worker log tail.")
        view.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        view.setUniformRowHeights(False)  # an open tail is taller than a row
        view.setWordWrap(False)
        view.setTextElideMode(Qt.TextElideMode.ElideRight)  # the tooltip has the whole message
        view.setExpandsOnDoubleClick(False)  # double-click is wired to toggle, as Enter is
        view.setAllColumnsShowFocus(True)
        view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        view.setIndentation(14)
        header = view.header()
        header.setStretchLastSection(True)
        metrics = QFontMetrics(view.font())
        pad = metrics.horizontalAdvance("  ") + 8
        widths = {TIME: view.indentation() + metrics.horizontalAdvance("00:00:00") + pad,
                  LEVEL: metrics.horizontalAdvance("WARNING") + pad,
                  ROLE: metrics.horizontalAdvance("rerank") + pad}
        for column, width in widths.items():
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.Interactive)
            header.resizeSection(column, width)
        header.setSectionResizeMode(MESSAGE, QHeaderView.ResizeMode.Stretch)
        view.toggle_requested.connect(self.toggle_tail)
        view.doubleClicked.connect(self.toggle_tail)
        view.copy_requested.connect(self.copy_selection)
        view.expanded.connect(self._on_expanded)
        view.collapsed.connect(self._on_collapsed)
        return view

    # -- feeding --------------------------------------------------------------------------------
    def add(self, event: Event) -> None:
        """Cheap: just buffer; the timer hands the batch to the model."""
        self._pending.append(event)

    def load(self, events: list[Event]) -> None:
        """Many events at once (the history, when the window first opens): one insertion."""
        self.model.append(events)
        self.scroll_to_newest()

    def flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        self.model.append(batch)
        self.scroll_to_newest()

    def current_filter(self) -> EventFilter:
        role = self.role_filter.currentText()
        return EventFilter(None if role == ALL_ROLES else role,
                           level_filter_value(self.level_filter.currentText()),
                           self.search.text())

    def rebuild(self) -> None:
        """Apply the filter bar to every buffered event; open tails stay open."""
        if self._pending:
            batch, self._pending = self._pending, []
            self.model.append(batch)
        self.model.set_filter(self.current_filter())
        for serial in list(self._expanded):
            index = self.model.index_of_serial(serial)
            if index.isValid():
                self.list.expand(index)
        self.scroll_to_newest()

    def scroll_to_newest(self) -> None:
        """Follow: the last row at the bottom, the start of the rows at the left."""
        if self.follow.isChecked():
            self.list.scrollToBottom()
            self.list.horizontalScrollBar().setValue(0)

    # -- crash tails ------------------------------------------------------------------------------
    def toggle_tail(self, index: QModelIndex) -> None:
        """Open or fold a crash row's tail; on the tail itself, fold it and go back to its row."""
        if self.model.is_tail(index):
            row = self.model.parent(index)
            self.list.collapse(row)
            self.list.setCurrentIndex(row)
            return
        row = index.siblingAtColumn(TIME)
        if self.model.rowCount(row):
            self.list.setExpanded(row, not self.list.isExpanded(row))

    def tail_widget(self, index: QModelIndex) -> QPlainTextEdit | None:
        """The box showing the tail of the crash row ``index``, once it has been opened."""
        widget = self.list.indexWidget(self.model.index(0, TIME, index.siblingAtColumn(TIME)))
        return widget if isinstance(widget, QPlainTextEdit) else None

    def _on_expanded(self, index: QModelIndex) -> None:
        serial = self.model.serial_at(index)
        event = self.model.event_at(index)
        if serial is None or event is None:
            return
        self._expanded.add(serial)
        self.list.setFirstColumnSpanned(0, index, True)
        tail = self.model.index(0, TIME, index)
        if self.tail_widget(index) is None:
            self.list.setIndexWidget(tail, self._tail_box(event))
        # an opened tail below the last visible row would be cut off by the list's bottom edge:
        # bring it into view once the row has its height (after this expansion is laid out)
        shown = QPersistentModelIndex(tail)  # still valid if rows come in meanwhile
        QTimer.singleShot(0, self.list, lambda: self.list.scrollTo(shown))

    def _on_collapsed(self, index: QModelIndex) -> None:
        serial = self.model.serial_at(index)
        if serial is not None:
            self._expanded.discard(serial)

    @staticmethod
    def _tail_box(event: Event) -> QPlainTextEdit:
        box = TailBox()
        box.setReadOnly(True)
        box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse
                                    | Qt.TextInteractionFlag.TextSelectableByKeyboard)
        box.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        box.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        box.setAccessibleName(f"Log tail of the {role_name(event)} worker")
        box.setPlainText(log_tail(event))
        return box

    def is_open(self, event_row: int) -> bool:
        return self.list.isExpanded(self.model.index(event_row, TIME))

    # -- copying ----------------------------------------------------------------------------------
    def _row_text(self, row: int) -> str:
        index = self.model.index(row, TIME)
        event = self.model.event_at(index)
        return event_text(event, self.list.isExpanded(index)) if event is not None else ""

    def shown_text(self) -> str:
        """The shown rows as text, with the tails that are open: what Copy puts on the
        clipboard."""
        return "\n".join(self._row_text(row) for row in range(self.model.rowCount()))

    def copy(self) -> None:
        QGuiApplication.clipboard().setText(self.shown_text())

    def copy_selection(self) -> None:
        rows = sorted({index.row() for index in self.list.selectionModel().selectedRows()
                       if not self.model.is_tail(index)})
        if rows:
            QGuiApplication.clipboard().setText("\n".join(self._row_text(row) for row in rows))


class WorkerLogView(QWidget):
    """The tail of ``logs/worker-<role>.log``, refreshed each second while following."""

    TAIL_BYTES = 64 * 1024

    def __init__(self, log_path_for: Callable[[str], Path]) -> None:
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
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.text.setAccessibleName("Worker log")
        self.role.setAccessibleName("Worker log of role")
        self.path_label.setAccessibleName("Worker log file")
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
            self.text.horizontalScrollBar().setValue(0)


class LogPane(QTabWidget):
    def __init__(self, log_path_for: Callable[[str], Path]) -> None:
        super().__init__()
        self.events = EventLogView()
        self.worker_log = WorkerLogView(log_path_for)
        self.addTab(self.events, "Events")
        self.addTab(self.worker_log, "Worker logs")
