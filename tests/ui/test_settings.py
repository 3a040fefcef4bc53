"""Settings: a round trip through the dialog lands in config.toml exactly."""

from __future__ import annotations

import os
import shutil
import stat
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QMessageBox
from pytestqt.qtbot import QtBot

from hivetray.api.keys import ApiKey
from hivetray.config import ApiConfig, default_config, load_config, save_config
from hivetray.models.validate import validation_message
from hivetray.paths import AppPaths
from hivetray.ui.settings import SettingsDialog, check_gguf


@pytest.fixture
def warned(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The texts of the warning boxes the dialog shows (no modal box in a test)."""
    texts: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning",
                        lambda _parent, _title, text: texts.append(text))
    return texts




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



@pytest.mark.parametrize("typed", ["~/models/chat.gguf", "models/chat.gguf"])
def test_the_saved_path_is_the_expanded_absolute_one_that_was_checked(
        qtbot: QtBot, home: AppPaths, tmp_path: Path, tiny_models: dict[str, Path],
        monkeypatch: pytest.MonkeyPatch, typed: str) -> None:
    user_home = tmp_path / "me"
    (user_home / "models").mkdir(parents=True)
    shutil.copy(tiny_models["chat"], user_home / "models" / "chat.gguf")
    monkeypatch.setenv("HOME", str(user_home))
    monkeypatch.chdir(user_home)
    dialog = SettingsDialog(home, default_config())
    qtbot.addWidget(dialog)
    dialog.role_tabs["chat"].model.edit.setText(typed)
    with qtbot.waitSignal(dialog.saved):
        dialog.save()
    written = tomllib.loads(home.config_file.read_text())["roles"]["chat"]["model"]
    assert written == str(user_home / "models" / "chat.gguf")  # in the file, not only on load
    assert load_config(home.config_file).config.role("chat").model == written


def truncated_copy(source: Path, folder: Path) -> Path:
    data = source.read_bytes()
    cut = folder / "cut.gguf"
    cut.write_bytes(data[: len(data) // 2])
    return cut


# (role, model fixture, mmproj fixture, what the refusal says)
REFUSED = [
    ("chat", "mmproj", None, "vision projector"),
    ("embed", "mmproj", None, "vision projector"),
    ("rerank", "embed", None, "not a reranker"),
    ("vision", "chat", None, "needs a projector"),
    ("vision", "chat", "chat", "not a projector"),
    ("chat", "truncated", None, "truncated"),
    ("chat", "random", None, "is not a GGUF model file"),
]


@pytest.mark.parametrize(("role", "model", "mmproj", "reason"), REFUSED)
def test_settings_refuses_what_the_pool_refuses(
        qtbot: QtBot, home: AppPaths, tmp_path: Path, tiny_models: dict[str, Path],
        warned: list[str], role: str, model: str, mmproj: str | None, reason: str) -> None:
    files = dict(tiny_models, truncated=truncated_copy(tiny_models["chat"], tmp_path))
    model_path = str(files[model])
    mmproj_path = str(files[mmproj]) if mmproj else None
    assert validation_message(role, model_path, mmproj_path) is not None  # the pool refuses
    dialog = SettingsDialog(home, default_config())
    qtbot.addWidget(dialog)
    tab = dialog.role_tabs[role]
    tab.model.edit.setText(model_path)
    if tab.mmproj is not None:
        tab.mmproj.edit.setText(mmproj_path or "")
    with qtbot.assertNotEmitted(dialog.saved):
        dialog.save()
    assert warned and reason in warned[0]
    assert not home.config_file.exists()


def test_the_field_shows_the_pools_reason_as_it_is_typed(
        qtbot: QtBot, home: AppPaths, tiny_models: dict[str, Path]) -> None:
    dialog = SettingsDialog(home, default_config())
    qtbot.addWidget(dialog)
    vision = dialog.role_tabs["vision"]
    assert vision.mmproj is not None
    vision.model.edit.setText(str(tiny_models["chat"]))
    assert "needs a projector" in vision.mmproj.edit.toolTip()  # on the field it is about
    assert vision.mmproj.edit.styleSheet()
    vision.mmproj.edit.setText(str(tiny_models["chat"]))
    assert "not a projector" in vision.mmproj.edit.toolTip()
    vision.mmproj.edit.setText(str(tiny_models["mmproj"]))
    assert vision.mmproj.edit.toolTip() == "" and vision.model.edit.toolTip() == ""
    chat = dialog.role_tabs["chat"]
    chat.model.edit.setText(str(tiny_models["mmproj"]))
    assert "vision projector" in chat.model.edit.toolTip()
    assert chat.model.edit.styleSheet()


def test_a_good_vision_pair_and_reranker_are_saved(
        qtbot: QtBot, home: AppPaths, tiny_models: dict[str, Path], warned: list[str]) -> None:
    dialog = SettingsDialog(home, default_config())
    qtbot.addWidget(dialog)
    vision = dialog.role_tabs["vision"]
    assert vision.mmproj is not None
    vision.model.edit.setText(str(tiny_models["chat"]))
    vision.mmproj.edit.setText(str(tiny_models["mmproj"]))
    dialog.role_tabs["rerank"].model.edit.setText(str(tiny_models["rerank"]))
    with qtbot.waitSignal(dialog.saved):
        dialog.save()
    assert warned == []
    config = load_config(home.config_file).config
    assert (config.role("vision").model, config.role("vision").mmproj) == (
        str(tiny_models["chat"]), str(tiny_models["mmproj"]))
    assert config.role("rerank").model == str(tiny_models["rerank"])


def test_saved_settings_are_private_whatever_the_umask(
        qtbot: QtBot, home: AppPaths, tiny_models: dict[str, Path], umask_022: None) -> None:
    dialog = SettingsDialog(home, default_config())
    qtbot.addWidget(dialog)
    dialog.role_tabs["chat"].model.edit.setText(str(tiny_models["chat"]))
    with qtbot.waitSignal(dialog.saved):
        dialog.save()
    assert stat.S_IMODE(os.stat(home.config_file).st_mode) == 0o600


def test_the_api_tab_saves_its_switch_and_port_and_keeps_the_rest(
        qtbot: QtBot, home: AppPaths) -> None:
    config = replace(default_config(), api=ApiConfig(cors_origins=("http://localhost:3000",)))
    save_config(home.config_file, config)
    dialog = SettingsDialog(home, load_config(home.config_file).config)
    qtbot.addWidget(dialog)
    tab = dialog.api_tab
    assert not tab.enabled.isChecked() and tab.port.value() == ApiConfig().port
    assert tab.address.text() == f"http://127.0.0.1:{ApiConfig().port}/v1"
    tab.enabled.setChecked(True)
    tab.port.setValue(12345)
    assert tab.address.text() == "http://127.0.0.1:12345/v1"
    with qtbot.waitSignal(dialog.saved):
        dialog.save()
    api = load_config(home.config_file).config.api
    assert api == ApiConfig(enabled=True, port=12345, cors_origins=("http://localhost:3000",))


def test_the_api_key_is_shown_masked_copied_whole_and_replaced_on_demand(
        qtbot: QtBot, home: AppPaths, monkeypatch: pytest.MonkeyPatch) -> None:
    dialog = SettingsDialog(home, default_config())
    qtbot.addWidget(dialog)
    tab = dialog.api_tab
    assert tab.key_field.text() == "" and not home.api_key_file.exists()
    tab.copy_button.click()  # made on first copy
    key = ApiKey(home.api_key_file).read()
    assert key and QGuiApplication.clipboard().text() == key
    assert tab.key_field.text() != key and tab.key_field.text()[-4:] == key[-4:]
    answers = [QMessageBox.StandardButton.No, QMessageBox.StandardButton.Yes]
    monkeypatch.setattr(QMessageBox, "question", lambda *_args: answers.pop(0))
    tab.new_button.click()  # "No": kept
    assert ApiKey(home.api_key_file).read() == key
    tab.new_button.click()  # "Yes": replaced
    renewed = ApiKey(home.api_key_file).read()
    assert renewed and renewed != key and tab.key_field.text()[-4:] == renewed[-4:]
    assert "new key" in tab.status.text().lower()



def test_the_about_line_names_the_build(qtbot: QtBot, home: AppPaths) -> None:
    """The foot of Settings says which build this is (version, commit, llama.cpp build), as
    text a user can select and copy into a bug report."""
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QLabel

    from hivetray import buildinfo

    dialog = SettingsDialog(home, default_config())
    qtbot.addWidget(dialog)
    about = dialog.findChild(QLabel, "aboutLine")
    assert about is not None and about.accessibleName() == "About Hivetray"
    info = buildinfo.current()
    assert about.text() == info.one_line()
    assert f"Hivetray {info.version} · commit {info.commit or 'unknown'}" in about.text()
    assert f"llama.cpp {info.llama_cpp_commit or 'unknown'}" in about.text()
    assert about.textInteractionFlags() & Qt.TextInteractionFlag.TextSelectableByMouse
    assert about.toolTip() == "\n".join(info.lines())


def test_a_long_about_line_wraps_inside_the_window(qtbot: QtBot, home: AppPaths,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A build whose About text is wider than the window (a long local version label) wraps
    onto more lines: it neither widens the window nor is cut off."""
    from PySide6.QtWidgets import QLabel

    from hivetray import buildinfo

    long_build = buildinfo.BuildInfo(
        version="0.1.0", commit="748f278abcd1+dirty", build_date="2026-11-30T01:50:00Z",
        llama_cpp_python="0.3.36+cpu.avx2.fma.f16c.openmp.nonative.debian12.build20261130.r1",
        llama_cpp_commit="0c1e570", llama_cpp_version="0.5.0-dev", llama_cpp_build_number=1,
        packaged=True, problem="/usr/lib/hivetray/_internal/hivetray/build_info.json is damaged")
    monkeypatch.setattr(buildinfo, "current", lambda: long_build)
    dialog = SettingsDialog(home, default_config())
    qtbot.addWidget(dialog)
    about = dialog.findChild(QLabel, "aboutLine")
    assert about is not None and about.text() == long_build.one_line()
    dialog.show()
    qtbot.waitExposed(dialog)
    text_width = about.fontMetrics().horizontalAdvance(about.text())
    assert about.width() < text_width and dialog.width() < text_width  # it had to wrap
    assert dialog.contentsRect().contains(about.geometry())
    one_line_height = about.fontMetrics().height()
    assert about.height() >= about.heightForWidth(about.width()) > one_line_height
