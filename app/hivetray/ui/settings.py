"""Settings: model per role (with a GGUF check), context, threads, idle timeout, pin, the
restart budget, the hotkey and start at login. Saved atomically to config.toml; the app then
applies it live (a role whose model changed is respawned)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtGui import QGuiApplication, QKeySequence
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QKeySequenceEdit,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QSpinBox,
    QTabWidget,
    QWidget,
)

from hivetray import ROLES, autostart
from hivetray.config import Config, PoolConfig, RoleConfig, save_config
from hivetray.paths import AppPaths
from hivetray.ui.hotkeys import toggle_command
from hivetray.ui.model_download import ModelDownloader

GGUF_MAGIC = b"GGUF"


def check_gguf(path: str) -> str | None:
    """A quick look at the file before saving: None when it looks like a GGUF model."""
    if not path:
        return None
    file = Path(path).expanduser()
    if not file.is_file():
        return f"{file} does not exist"
    try:
        with open(file, "rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        return f"{file} cannot be read: {exc.strerror}"
    if magic != GGUF_MAGIC:
        return f"{file} is not a GGUF model file (it does not start with 'GGUF')"
    return None


class PathField(QWidget):
    def __init__(self, caption: str) -> None:
        super().__init__()
        self.edit = QLineEdit()
        self.edit.setPlaceholderText("no model: the role stays off")
        self.edit.setClearButtonEnabled(True)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        self.status = QLabel()
        self._caption = caption
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.edit, 1)
        layout.addWidget(browse)
        self.edit.textChanged.connect(self._validate)

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, self._caption, self.edit.text(),
                                              "GGUF models (*.gguf);;All files (*)")
        if path:
            self.edit.setText(path)

    def _validate(self) -> None:
        problem = check_gguf(self.edit.text().strip())
        self.edit.setToolTip(problem or "")
        self.edit.setStyleSheet("QLineEdit { border: 1px solid #e5484d; }" if problem else "")

    def value(self) -> str | None:
        return self.edit.text().strip() or None


class RoleTab(QWidget):
    def __init__(self, role: str, paths: AppPaths) -> None:
        super().__init__()
        self.role = role
        form = QFormLayout(self)
        self.model = PathField(f"Model for the {role} role")
        form.addRow("Model file", self.model)
        self.downloader = ModelDownloader(role, paths)
        form.addRow("Or download", self.downloader)
        self.mmproj: PathField | None = None
        if role == "vision":
            self.mmproj = PathField("Projector (mmproj) for the vision model")
            form.addRow("Projector (mmproj)", self.mmproj)
        self.n_ctx = QSpinBox()
        self.n_ctx.setRange(128, 1_048_576)
        self.n_ctx.setSingleStep(1024)
        form.addRow("Context size (tokens)", self.n_ctx)
        self.n_threads = QSpinBox()
        self.n_threads.setRange(0, 256)
        self.n_threads.setSpecialValueText("automatic")
        form.addRow("Threads", self.n_threads)
        self.idle = QSpinBox()
        self.idle.setRange(0, 24 * 60)
        self.idle.setSuffix(" min")
        self.idle.setSpecialValueText("never")
        form.addRow("Stop when idle for", self.idle)
        self.pinned = QCheckBox("Start at launch and never stop when idle")
        form.addRow("Pinned", self.pinned)

    def load(self, cfg: RoleConfig) -> None:
        self.model.edit.setText(cfg.model or "")
        if self.mmproj is not None:
            self.mmproj.edit.setText(cfg.mmproj or "")
        self.n_ctx.setValue(cfg.n_ctx)
        self.n_threads.setValue(cfg.n_threads)
        self.idle.setValue(round(cfg.idle_timeout_s / 60))
        self.pinned.setChecked(cfg.pinned)

    def value(self, old: RoleConfig) -> RoleConfig:
        idle_s = float(self.idle.value() * 60)
        if self.idle.value() == round(old.idle_timeout_s / 60):
            idle_s = old.idle_timeout_s  # keep sub-minute values the user wrote by hand
        return replace(old, model=self.model.value(),
                       mmproj=self.mmproj.value() if self.mmproj else old.mmproj,
                       n_ctx=self.n_ctx.value(), n_threads=self.n_threads.value(),
                       idle_timeout_s=idle_s, pinned=self.pinned.isChecked())

    def problems(self) -> list[str]:
        fields = [self.model] + ([self.mmproj] if self.mmproj else [])
        return [p for f in fields if (p := check_gguf(f.edit.text().strip()))]


class SettingsDialog(QDialog):
    saved = Signal()

    def __init__(self, paths: AppPaths, config: Config) -> None:
        super().__init__()
        self.setWindowTitle("Hivetray — Settings")
        self.paths = paths
        self.config = config
        tabs = QTabWidget()
        self.role_tabs = {role: RoleTab(role, paths) for role in ROLES}
        for tab in self.role_tabs.values():
            tab.downloader.finished.connect(self._downloaded)
        for role, tab in self.role_tabs.items():
            tabs.addTab(tab, role.capitalize())
        general = QWidget()
        form = QFormLayout(general)
        self.hotkey = QKeySequenceEdit()
        form.addRow("Quick-chat shortcut", self.hotkey)
        self.hotkey_status = QLabel()
        self.hotkey_status.setWordWrap(True)
        form.addRow("", self.hotkey_status)
        copy = QPushButton("Copy command")
        copy.setToolTip("Paste it into your desktop's keyboard-shortcut settings (Wayland, or "
                        "when the shortcut is taken)")
        copy.clicked.connect(lambda: QGuiApplication.clipboard().setText(toggle_command()))
        form.addRow("Or bind this command:", copy)
        self.autostart = QCheckBox("Start Hivetray when I log in")
        form.addRow("", self.autostart)
        self.budget = QSpinBox()
        self.budget.setRange(0, 100)
        form.addRow("Crashes allowed", self.budget)
        self.restart_window = self._seconds(1, 3600)
        form.addRow("…within", self.restart_window)
        self.cooldown = self._seconds(1, 3600)
        form.addRow("Then pause restarts for", self.cooldown)
        tabs.addTab(general, "General")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save
                                   | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.save)
        buttons.rejected.connect(self.reject)
        layout = QFormLayout(self)
        layout.addRow(tabs)
        layout.addRow(buttons)
        self.load(config)

    @staticmethod
    def _seconds(low: int, high: int) -> QDoubleSpinBox:
        box = QDoubleSpinBox()
        box.setRange(low, high)
        box.setDecimals(0)
        box.setSuffix(" s")
        return box

    def _downloaded(self, ok: bool, _message: str) -> None:
        """The CLI wrote the new model into config.toml: show it, and let the app apply it."""
        if ok:
            from hivetray.config import load_config

            self.load(load_config(self.paths.config_file).config)
            self.saved.emit()

    def set_hotkey_status(self, message: str) -> None:
        """Which layer carries the shortcut and whether registration worked."""
        self.hotkey_status.setText(message)

    def load(self, config: Config) -> None:
        self.config = config
        for role, tab in self.role_tabs.items():
            tab.load(config.role(role))
        self.hotkey.setKeySequence(QKeySequence(config.hotkeys.quick_chat))
        self.autostart.setChecked(autostart.is_enabled())
        self.budget.setValue(config.pool.restart_budget)
        self.restart_window.setValue(config.pool.restart_window_s)
        self.cooldown.setValue(config.pool.cooldown_s)

    def collect(self) -> Config:
        roles = {role: tab.value(self.config.role(role)) for role, tab in self.role_tabs.items()}
        pool: PoolConfig = replace(self.config.pool, restart_budget=self.budget.value(),
                                   restart_window_s=self.restart_window.value(),
                                   cooldown_s=self.cooldown.value())
        hotkey = self.hotkey.keySequence().toString() or self.config.hotkeys.quick_chat
        return Config(roles=roles, pool=pool,
                      hotkeys=replace(self.config.hotkeys, quick_chat=hotkey))

    def save(self) -> None:
        problems = [p for tab in self.role_tabs.values() for p in tab.problems()]
        if problems:
            QMessageBox.warning(self, "Check the model files", "\n".join(problems)
                                + "\n\nChoose a .gguf model file, or clear the field.")
            return
        config = self.collect()
        try:
            save_config(self.paths.config_file, config)
            if self.autostart.isChecked() != autostart.is_enabled():
                autostart.set_enabled(self.autostart.isChecked())
        except OSError as exc:
            QMessageBox.critical(self, "Could not save settings",
                                 f"{exc}\n\nYour previous settings are unchanged.")
            return
        self.config = config
        self.saved.emit()
        self.accept()
