"""The status window: four roles, a ticking countdown, row actions, and the logs pane."""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from hivetray.pool.memory import RUNTIME_OVERHEAD_BYTES
from hivetray.ui.role_table import KEYS
from hivetray.ui.status_window import WINDOW_TITLE, StatusWindow
from hivetray.wording import Wording
from tests.ui.conftest import PoolRig
from tests.ui.test_role_table import FixedMemory


def make_window(qtbot: QtBot, pool_rig: PoolRig) -> StatusWindow:
    window = StatusWindow(pool_rig.pool.snapshot, pool_rig.pool.paths.worker_log)
    qtbot.addWidget(window)
    return window


def test_title_and_rows(qtbot: QtBot, pool_rig: PoolRig) -> None:
    window = make_window(qtbot, pool_rig)
    window.present()
    assert window.windowTitle().startswith("Hivetray") and window.windowTitle() == WINDOW_TITLE
    assert window.model.rowCount() == 4
    assert window.selected_role() == "chat"


def test_countdown_cell_ticks_every_second(qtbot: QtBot, pool_rig: PoolRig) -> None:
    pool_rig.crash_chat(times=2)
    window = make_window(qtbot, pool_rig)
    window.present()
    index = window.model.index(0, KEYS.index("retry_in_s"))
    assert window.model.data(index) == "60 s"
    assert window.tick.interval() == 1000 and window.tick.isActive()
    pool_rig.clock.advance(1)
    with qtbot.waitSignal(window.tick.timeout, timeout=3000):
        pass
    assert window.model.data(index) == "59 s"
    assert window.buttons["Retry"].isEnabled()
    with qtbot.waitSignal(window.retry) as sent:
        qtbot.mouseClick(window.buttons["Retry"], Qt.MouseButton.LeftButton)
    assert sent.args == ["chat"]


def test_closing_hides_and_stops_the_tick(qtbot: QtBot, pool_rig: PoolRig) -> None:
    window = make_window(qtbot, pool_rig)
    window.present()
    window.close()
    assert not window.isVisible() and not window.tick.isActive()


def test_open_log_shows_the_worker_log_tail(qtbot: QtBot, pool_rig: PoolRig) -> None:
    log = pool_rig.pool.paths.worker_log("chat")
    log.write_text("".join(f"line {i}\n" for i in range(20_000)))
    window = make_window(qtbot, pool_rig)
    window.present()
    qtbot.mouseClick(window.buttons["Open log"], Qt.MouseButton.LeftButton)
    shown = window.logs.worker_log.text.toPlainText()
    assert shown.endswith("line 19999") and "line 0\n" not in shown


def test_the_memory_column_shows_the_estimate_made_before_the_start(
        qtbot: QtBot, pool_rig: PoolRig) -> None:
    pool_rig.pool.memory = FixedMemory(300 * 2**20)
    window = make_window(qtbot, pool_rig)
    window.present()
    index = window.model.index(0, KEYS.index("rss_bytes"))
    assert window.model.data(index) == "—"
    pool_rig.ready_chat()  # no model file here: the estimate is the runtime overhead alone
    window.refresh()
    assert window.model.data(index) == f"300 MiB (est. {RUNTIME_OVERHEAD_BYTES >> 20} MiB)"


def test_the_detail_line_shows_the_sampling_defaults_and_escapes_errors(
        qtbot: QtBot, pool_rig: PoolRig) -> None:
    window = make_window(qtbot, pool_rig)
    window.present()
    chat = pool_rig.pool.role("chat")
    chat.reconfigure(replace(chat.config, temperature=0.0, seed=5))
    chat.last_failure = Wording("bad <tensor> in /m/x.gguf")
    window.refresh()
    text = window.detail.text()  # what is shown, as plain text
    assert "Sampling: greedy (temperature 0)" in text and "seed 5" in text
    assert "bad <tensor> in /m/x.gguf" in text  # escaped: not taken for a tag and dropped
    window.table.selectRow(2)  # embed: not sampled
    window.refresh()
    assert "Sampling" not in window.detail.text()
