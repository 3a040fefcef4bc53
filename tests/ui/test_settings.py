"""Settings: a round trip through the dialog lands in config.toml exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtWidgets import QMessageBox
from pytestqt.qtbot import QtBot

from hivetray.config import default_config, load_config
from hivetray.paths import AppPaths
from hivetray.ui.settings import SettingsDialog, check_gguf


def test_round_trip_saves_every_field(qtbot: QtBot, home: AppPaths, tmp_path: Path,
                                      tiny_models: dict[str, Path],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    dialog = SettingsDialog(home, default_config())
    qtbot.addWidget(dialog)
    chat = dialog.role_tabs["chat"]
    chat.model.edit.setText(str(tiny_models["chat"]))
    chat.n_ctx.setValue(2048)
    chat.n_threads.setValue(2)
    chat.idle.setValue(0)
    chat.pinned.setChecked(True)
    dialog.budget.setValue(5)
    dialog.cooldown.setValue(30)
    dialog.autostart.setChecked(True)
    with qtbot.waitSignal(dialog.saved):
        dialog.save()
    loaded = load_config(home.config_file)
    assert loaded.warnings == []
    role = loaded.config.role("chat")
    assert (role.model, role.n_ctx, role.n_threads, role.idle_timeout_s, role.pinned) == (
        str(tiny_models["chat"]), 2048, 2, 0.0, True)
    assert loaded.config.pool.restart_budget == 5 and loaded.config.pool.cooldown_s == 30
    assert loaded.config.role("embed") == default_config().role("embed")
    autostart_file = tmp_path / "xdg" / "autostart" / "hivetray.desktop"
    assert "Exec=" in autostart_file.read_text()


def test_a_file_that_is_not_gguf_is_refused_and_nothing_is_written(
        qtbot: QtBot, home: AppPaths, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text_file = tmp_path / "notes.txt"
    text_file.write_text("hello")
    warned: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning",
                        lambda _parent, _title, text: warned.append(text))
    dialog = SettingsDialog(home, default_config())
    qtbot.addWidget(dialog)
    dialog.role_tabs["chat"].model.edit.setText(str(text_file))
    with qtbot.assertNotEmitted(dialog.saved):
        dialog.save()
    assert warned and "is not a GGUF model file" in warned[0]
    assert not home.config_file.exists()


def test_check_gguf_says_what_is_wrong(tmp_path: Path) -> None:
    assert "does not exist" in str(check_gguf(str(tmp_path / "missing.gguf")))
    assert check_gguf("") is None
