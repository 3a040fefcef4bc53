"""The role table model: Qt's model checks, formatting, and cell-precise updates."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from pytestqt.modeltest import ModelTester
from pytestqt.qtbot import QtBot

from hivetray.pool.memory import RUNTIME_OVERHEAD_BYTES
from hivetray.ui.role_table import COLUMNS, KEYS, RoleTableModel
from tests.ui.conftest import PoolRig


def cell(model: RoleTableModel, role: str, key: str,
         data_role: Qt.ItemDataRole = Qt.ItemDataRole.DisplayRole) -> Any:
    row = [model.row_data(r).role for r in range(model.rowCount())].index(role)
    return model.data(model.index(row, KEYS.index(key)), data_role)


def test_model_passes_qt_model_checks(qtmodeltester: ModelTester, pool_rig: PoolRig) -> None:
    model = RoleTableModel(pool_rig.pool.snapshot)
    model.refresh()
    qtmodeltester.check(model)
    assert model.rowCount() == 4 and model.columnCount() == len(COLUMNS)


def test_rows_show_the_four_roles_and_their_states(pool_rig: PoolRig) -> None:
    model = RoleTableModel(pool_rig.pool.snapshot)
    model.refresh()
    assert [model.row_data(r).role for r in range(4)] == ["chat", "vision", "embed", "rerank"]
    assert cell(model, "chat", "state") == "stopped"
    assert cell(model, "vision", "state") == "no model set"
    assert cell(model, "chat", "model") == "chat.gguf"


def test_countdown_ticks_with_the_injected_clock(qtbot: QtBot, pool_rig: PoolRig) -> None:
    pool_rig.crash_chat(times=2)  # budget 1: the 2nd crash opens the breaker (60 s)
    model = RoleTableModel(pool_rig.pool.snapshot)
    model.refresh()
    assert cell(model, "chat", "state") == "cooling down"
    assert cell(model, "chat", "retry_in_s") == "60 s"
    pool_rig.clock.advance(18)
    with qtbot.waitSignal(model.dataChanged) as changed:
        model.refresh()
    assert cell(model, "chat", "retry_in_s") == "42 s"
    top, bottom = changed.args[0], changed.args[1]
    assert top.row() == bottom.row() == 0  # only the chat row repainted
    assert "crashed 2 times" not in str(cell(model, "chat", "state", Qt.ItemDataRole.ToolTipRole))
    assert "SIGKILL" in str(cell(model, "chat", "state", Qt.ItemDataRole.ToolTipRole))


def test_unchanged_snapshot_emits_nothing(qtbot: QtBot, pool_rig: PoolRig) -> None:
    model = RoleTableModel(pool_rig.pool.snapshot)
    model.refresh()
    with qtbot.assertNotEmitted(model.dataChanged):
        model.refresh()


#: the estimate of a worker whose model file does not exist (the fake pool's): the overhead
ESTIMATE_MIB = RUNTIME_OVERHEAD_BYTES >> 20


class FixedMemory:
    """Memory figures the test chooses (the pool's probe; see hivetray.pool.memory)."""

    def __init__(self, rss: int | None) -> None:
        self.rss_bytes = rss

    def available(self) -> int:
        return 64 * 2**30

    def rss(self, pid: int) -> int | None:
        return self.rss_bytes


def test_memory_shows_the_rss_next_to_the_estimate(qtbot: QtBot, pool_rig: PoolRig) -> None:
    pool_rig.pool.memory = FixedMemory(212 * 2**20)
    model = RoleTableModel(pool_rig.pool.snapshot)
    model.refresh()
    assert cell(model, "chat", "rss_bytes") == "—"  # no worker, no estimate yet
    with qtbot.waitSignal(model.dataChanged) as changed:
        pool_rig.ready_chat()  # the check before the spawn estimates it (no file: the overhead)
        model.refresh()
    column = KEYS.index("rss_bytes")
    assert changed.args[0].column() <= column <= changed.args[1].column()
    assert cell(model, "chat", "rss_bytes") == f"212 MiB (est. {ESTIMATE_MIB} MiB)"
    assert "estimated" in str(cell(model, "chat", "rss_bytes", Qt.ItemDataRole.ToolTipRole))
    assert "estimated" in str(model.headerData(column, Qt.Orientation.Horizontal,
                                               Qt.ItemDataRole.ToolTipRole))
    pool_rig.pool.memory = FixedMemory(None)  # the worker's RSS cannot be read (gone)
    model.refresh()
    assert cell(model, "chat", "rss_bytes") == f"est. {ESTIMATE_MIB} MiB"
