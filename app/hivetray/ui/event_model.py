"""The events pane's model: one row per pool event, a crash's log tail as its only child row.

Why a model and not a text box: a crash event carries the last ~4 KiB of its worker log (chat
template, timing lines, CPU flags). Painted inline it buried every other event; as a child row it
stays folded until asked for. The model adapts the pool's typed :class:`Event` objects directly
and keeps a bounded buffer of them, so a flood of events costs one ``beginInsertRows`` per
repaint and filtering is one reset over the buffer.

Child rows are addressed by the serial number of their event (``internalId``): rows shift when
old events fall out of the buffer, serials never do, and the shown rows stay sorted by serial,
so a child finds its parent's row by bisection.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QAbstractItemModel, QModelIndex, QPersistentModelIndex, QSize, Qt
from PySide6.QtGui import QFont, QFontDatabase, QFontMetrics

from hivetray.pool.events import Event
from hivetray.wording import window_line

MAX_EVENTS = 20_000
#: the level filter's choices, lowest first; "all levels" shows everything
LEVELS = ("all levels", "info", "warning", "error")
_LEVEL_RANK = {"info": 0, "warning": 1, "error": 2}
COLUMNS = ("Time", "Level", "Role", "Message")
TIME, LEVEL, ROLE, MESSAGE = range(len(COLUMNS))
#: the tail's area shows this many lines at most (it scrolls for the rest)
TAIL_VISIBLE_LINES = 12

Index = QModelIndex | QPersistentModelIndex


def first_line(text: str) -> str:
    return text.split("\n", 1)[0]


def log_tail(event: Event) -> str:
    """The worker log tail a crash event carries ("" for every other event)."""
    tail = event.data.get("log_tail") if isinstance(event.data, dict) else None
    return tail.rstrip("\n") if isinstance(tail, str) else ""


def role_name(event: Event) -> str:
    return event.role or "pool"


def event_cells(event: Event) -> tuple[str, str, str, str]:
    """Time, level, role and the message's first line in a window's words (the button to
    press, never a command): what a row shows."""
    stamp = time.strftime("%H:%M:%S", time.localtime(event.ts))
    return stamp, event.level.upper(), role_name(event), window_line(event)


def event_tooltip(event: Event) -> str:
    """The whole message, when the cell shows only its start: its first line in a window's
    words, then the rest as it came."""
    rest = event.message.partition("\n")[2]
    return window_line(event) + (f"\n{rest}" if rest else "")


def event_text(event: Event, with_tail: bool) -> str:
    """One event as plain text for the clipboard: the row, the rest of a multi-line message
    indented below it, and the crash's log tail when it is shown."""
    stamp, level, role, head = event_cells(event)
    rest = event.message.partition("\n")[2]
    lines = [f"{stamp}  {level:7} {role:7} {head}"]
    lines += ["          " + line for line in rest.splitlines()]
    if with_tail and (tail := log_tail(event)):
        lines += ["        │ " + line for line in tail.splitlines()]
    return "\n".join(lines)


@dataclass(frozen=True)
class EventFilter:
    """What the pane's filter bar selects; the default shows everything."""

    #: a role's name, "pool" for the pool's own events, None for all
    role: str | None = None
    min_level: str | None = None
    needle: str = ""

    def matches(self, event: Event) -> bool:
        if self.role is not None and role_name(event) != self.role:
            return False
        if self.min_level is not None and \
                _LEVEL_RANK.get(event.level, 0) < _LEVEL_RANK.get(self.min_level, 0):
            return False
        needle = self.needle.strip().lower()
        return not needle or needle in event.message.lower()


@dataclass(frozen=True, slots=True)
class _Entry:
    serial: int
    event: Event


def _serial(entry: _Entry) -> int:
    return entry.serial


class EventListModel(QAbstractItemModel):
    """Events as rows (time, level, role, message); a crash row has one child: its log tail."""

    def __init__(self, capacity: int = MAX_EVENTS) -> None:
        super().__init__()
        self._buffer: deque[_Entry] = deque(maxlen=capacity)
        self._shown: list[_Entry] = []
        self._next_serial = 1  # 0 is the internalId of top-level rows
        self._filter = EventFilter()
        self._tail_font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)

    # -- feeding --------------------------------------------------------------------------------
    def append(self, events: Iterable[Event]) -> None:
        """Buffer ``events`` and show those the filter lets through, as one insertion."""
        added: list[_Entry] = []
        for event in events:
            entry = _Entry(self._next_serial, event)
            self._next_serial += 1
            self._buffer.append(entry)
            if self._filter.matches(event):
                added.append(entry)
        self._drop_fallen_out()
        added = [e for e in added if self._buffer and e.serial >= self._buffer[0].serial]
        if added:
            first = len(self._shown)
            self.beginInsertRows(QModelIndex(), first, first + len(added) - 1)
            self._shown.extend(added)
            self.endInsertRows()

    def _drop_fallen_out(self) -> None:
        """Rows whose event left the bounded buffer leave the view too (from the top)."""
        if not self._shown or not self._buffer:
            return
        gone = bisect_left(self._shown, self._buffer[0].serial, key=_serial)
        if gone:
            self.beginRemoveRows(QModelIndex(), 0, gone - 1)
            del self._shown[:gone]
            self.endRemoveRows()

    def set_filter(self, event_filter: EventFilter) -> None:
        self.beginResetModel()
        self._filter = event_filter
        self._shown = [e for e in self._buffer if event_filter.matches(e.event)]
        self.endResetModel()

    @property
    def event_filter(self) -> EventFilter:
        return self._filter

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    # -- reading --------------------------------------------------------------------------------
    def event_at(self, index: Index) -> Event | None:
        """The event of a row, or of the row a tail belongs to."""
        if not index.isValid():
            return None
        row = self._parent_row(index) if self.is_tail(index) else index.row()
        return self._shown[row].event if 0 <= row < len(self._shown) else None

    @staticmethod
    def is_tail(index: Index) -> bool:
        return index.isValid() and index.internalId() != 0

    def shown_events(self) -> list[Event]:
        return [entry.event for entry in self._shown]

    def serial_at(self, index: Index) -> int | None:
        """A stable key for a top-level row's event (rows shift, serials do not)."""
        if not index.isValid() or self.is_tail(index) or not 0 <= index.row() < len(self._shown):
            return None
        return self._shown[index.row()].serial

    def index_of_serial(self, serial: int) -> QModelIndex:
        """The top-level row showing event ``serial`` (invalid when it is filtered out)."""
        row = bisect_left(self._shown, serial, key=_serial)
        if row < len(self._shown) and self._shown[row].serial == serial:
            return self.createIndex(row, TIME, 0)
        return QModelIndex()

    @staticmethod
    def has_tail(event: Event) -> bool:
        return bool(log_tail(event))

    def _parent_row(self, index: Index) -> int:
        serial = index.internalId()
        row = bisect_left(self._shown, serial, key=_serial)
        return row if row < len(self._shown) and self._shown[row].serial == serial else -1

    # -- QAbstractItemModel ---------------------------------------------------------------------
    def index(self, row: int, column: int,
              parent: Index = QModelIndex()) -> QModelIndex:  # noqa: B008
        if parent.isValid():
            if self.is_tail(parent) or row != 0 or column != TIME \
                    or not 0 <= parent.row() < len(self._shown) \
                    or not log_tail(self._shown[parent.row()].event):
                return QModelIndex()
            return self.createIndex(0, TIME, self._shown[parent.row()].serial)
        if 0 <= row < len(self._shown) and 0 <= column < len(COLUMNS):
            return self.createIndex(row, column, 0)
        return QModelIndex()

    def parent(self, index: Index = QModelIndex()) -> QModelIndex:  # type: ignore[override]  # noqa: B008
        if not self.is_tail(index):
            return QModelIndex()
        row = self._parent_row(index)
        return self.createIndex(row, TIME, 0) if row >= 0 else QModelIndex()

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        if not parent.isValid():
            return len(self._shown)
        if self.is_tail(parent) or parent.column() != TIME \
                or not 0 <= parent.row() < len(self._shown):
            return 0
        return 1 if log_tail(self._shown[parent.row()].event) else 0

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation is Qt.Orientation.Horizontal and role in (
                Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.AccessibleTextRole):
            return COLUMNS[section]
        return None

    def flags(self, index: Index) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        flags = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
        if self.is_tail(index):
            flags |= Qt.ItemFlag.ItemNeverHasChildren
        return flags

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        event = self.event_at(index)
        if event is None:
            return None
        if self.is_tail(index):
            return self._tail_data(event, role)
        if role == Qt.ItemDataRole.DisplayRole:
            return event_cells(event)[index.column()]
        if role == Qt.ItemDataRole.ToolTipRole and index.column() == MESSAGE:
            return event_tooltip(event)  # the whole text, when the cell shows only its start
        if role == Qt.ItemDataRole.AccessibleTextRole:
            stamp, level, who, line = event_cells(event)
            return f"{stamp}, {level.lower()}, {who}: {line}"
        if role == Qt.ItemDataRole.FontRole and event.level == "error":
            bold = QFont()
            bold.setBold(True)
            return bold
        return None

    def _tail_data(self, event: Event, role: int) -> Any:
        """The child row is a frame for the view's tail widget; its data say how tall it is
        and carry the text for screen readers and for views without the widget."""
        tail = log_tail(event)
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.AccessibleTextRole):
            return tail
        if role == Qt.ItemDataRole.FontRole:
            return self._tail_font
        if role == Qt.ItemDataRole.SizeHintRole:
            lines = min(max(len(tail.splitlines()), 3), TAIL_VISIBLE_LINES)
            return QSize(-1, QFontMetrics(self._tail_font).lineSpacing() * lines + 12)
        return None


def level_filter_value(choice: str) -> str | None:
    """The level combo's text as a filter: None for "all levels"."""
    return None if choice == LEVELS[0] else choice
