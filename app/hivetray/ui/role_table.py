"""A thin ``QAbstractTableModel`` over pool snapshots: one row per role (a ``RoleStatus``).

It owns no state of its own beyond the last snapshot; ``refresh()`` takes a new one and emits
``dataChanged`` only for cells that changed, so a 1 Hz countdown tick repaints one cell.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QColor

from hivetray.pool.memory import memory_text
from hivetray.pool.states import RoleState
from hivetray.pool.status import PoolStatus, RoleStatus
from hivetray.ui.formatting import (
    STATE_COLOURS,
    STATE_LABELS,
    duration,
    model_name,
)

Index = QModelIndex | QPersistentModelIndex


def _tokens(value: Any) -> str:
    return f"{value:.1f}" if value else "—"


def _seconds_left(value: Any) -> str:
    return f"{round(value)} s" if value is not None else "—"


def _load(value: Any) -> str:
    return f"{value:.2f} s" if value is not None else "—"


def _state(value: Any) -> str:
    return STATE_LABELS[RoleState(value)]


def _served_by(row: RoleStatus) -> str:
    return row.served_by(model_name) or "—"


def _rtt(row: RoleStatus) -> str:
    return row.rtt_text or "—"


def _memory(row: RoleStatus) -> str:
    return memory_text(row.rss_bytes, row.mem_estimate_bytes)


MEMORY_TIP = ("Resident memory of the worker now; est.: what it was estimated to need before "
              "it started (model files + KV cache for n_ctx + buffers), checked against the "
              "memory available")

#: (header, RoleStatus field, formatter of the field's value — or of the whole row for the
#: fields in WHOLE_ROW, whose cell shows more than one field)
COLUMNS: list[tuple[str, str, Callable[[Any], str]]] = [
    ("Role", "role", str),
    ("State", "state", _state),
    ("Model", "model", _served_by),
    ("PID", "pid", lambda p: str(p) if p else "—"),
    ("Memory", "rss_bytes", _memory),
    ("Uptime", "uptime_s", duration),
    ("In flight", "in_flight", str),
    ("Crashes (window)", "crashes_in_window", str),
    ("Retry in", "retry_in_s", _seconds_left),
    ("Tokens/s", "tokens_per_s", _tokens),
    ("Load time", "load_s", _load),
    ("Round trip", "rtt_ms", _rtt),
]
KEYS = [key for _h, key, _f in COLUMNS]
#: each column's header as a screen reader should say it (the shown one is abbreviated)
SPOKEN_HEADERS: dict[str, str] = {
    "role": "Role",
    "state": "State",
    "model": "Model",
    "pid": "Process ID",
    "rss_bytes": "Memory in use",
    "uptime_s": "Uptime",
    "in_flight": "Requests in flight",
    "crashes_in_window": "Crashes in the restart window",
    "retry_in_s": "Retry in",
    "tokens_per_s": "Tokens per second",
    "load_s": "Load time",
    "rtt_ms": "Control round trip",
}
STATE_COLUMN = KEYS.index("state")
MEMORY_COLUMN = KEYS.index("rss_bytes")
MODEL_COLUMN = KEYS.index("model")
#: the measured RSS is shown next to the estimate
WHOLE_ROW = frozenset({"rss_bytes", "model", "rtt_ms"})


def spoken(text: str) -> str:
    """A cell's text for a screen reader: the dash that means "nothing" said as a word."""
    return "none" if text in ("", "—") else text


def row_sentence(row: RoleStatus) -> str:
    """One role's row as a sentence (the Role cell's accessible text), so a screen reader
    moving down the first column hears each role's state without visiting every cell."""
    parts = [f"{row.role} role: {STATE_LABELS[RoleState(row.state)]}",
             f"model {spoken(_served_by(row))}"]
    if row.retry_in_s is not None:
        parts.append(f"retrying in {round(row.retry_in_s)} s")
    if row.in_flight:
        parts.append(f"{row.in_flight} requests in flight")
    if row.crashes_in_window:
        parts.append(f"{row.crashes_in_window} crashes in the restart window")
    if row.last_error:
        parts.append(f"last error: {row.last_error.splitlines()[0]}")
    return ", ".join(parts)


class RoleTableModel(QAbstractTableModel):
    def __init__(self, snapshot: Callable[[], PoolStatus]) -> None:
        super().__init__()
        self._snapshot = snapshot
        self._rows: list[RoleStatus] = []

    def refresh(self) -> None:
        rows = list(self._snapshot().roles)
        if [r.role for r in rows] != [r.role for r in self._rows]:
            self.beginResetModel()
            self._rows = rows
            self.endResetModel()
            return
        old, self._rows = self._rows, rows
        for r, (before, after) in enumerate(zip(old, rows, strict=True)):
            changed = [c for c, key in enumerate(KEYS)
                       if getattr(before, key) != getattr(after, key)]
            if before.last_error != after.last_error:
                changed.append(STATE_COLUMN)
            if before.mem_estimate_bytes != after.mem_estimate_bytes:
                changed.append(MEMORY_COLUMN)
            if (before.url, before.engine) != (after.url, after.engine):
                changed.append(MODEL_COLUMN)
            if changed:
                self.dataChanged.emit(self.index(r, min(changed)), self.index(r, max(changed)))

    def row_data(self, row: int) -> RoleStatus:
        return self._rows[row]

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation != Qt.Orientation.Horizontal:
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section][0]
        if role == Qt.ItemDataRole.AccessibleTextRole:
            return SPOKEN_HEADERS[KEYS[section]]
        if role in (Qt.ItemDataRole.ToolTipRole, Qt.ItemDataRole.AccessibleDescriptionRole) \
                and section == MEMORY_COLUMN:
            return MEMORY_TIP
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        row = self._rows[index.row()]
        _header, key, fmt = COLUMNS[index.column()]
        value = getattr(row, key)
        if role == Qt.ItemDataRole.DisplayRole:
            return fmt(row if key in WHOLE_ROW else value)
        if role == Qt.ItemDataRole.AccessibleTextRole:
            if key == "role":
                return row_sentence(row)
            return f"{SPOKEN_HEADERS[key]}: {spoken(fmt(row if key in WHOLE_ROW else value))}"
        if role == Qt.ItemDataRole.UserRole:
            return value
        if role == Qt.ItemDataRole.ForegroundRole and key == "state" and value in STATE_COLOURS:
            return QColor(STATE_COLOURS[value])
        if role in (Qt.ItemDataRole.ToolTipRole, Qt.ItemDataRole.AccessibleDescriptionRole):
            if key == "state" and row.last_error:
                return row.error_for_window  # a window's words: no command to type
            if key == "model" and (value or row.remote):
                return row.served_by() or ""
            if key == "rss_bytes":
                return MEMORY_TIP
        if role == Qt.ItemDataRole.TextAlignmentRole and key not in ("role", "state", "model"):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None
