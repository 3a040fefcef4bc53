"""Settings: model per role (with the pool's own model check), context, threads, idle timeout,
pin, sampling defaults (chat and vision), the restart budget, the hotkey, start at login and
the local HTTP API (``ui/api_settings.py``).
Saved atomically to config.toml; the app then applies it live (a role whose model changed is
respawned; new sampling defaults apply to the next request)."""

from __future__ import annotations

import os
from dataclasses import replace

from PySide6.QtCore import Qt, Signal
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

from hivetray import ROLES, autostart, buildinfo
from hivetray.config import Config, PoolConfig, RoleConfig, save_config
from hivetray.errors import InvalidModelFile, ModelLoadError, ProjectorMismatch, ProjectorMissing
from hivetray.models.validate import check_role, open_model
from hivetray.paths import AppPaths
from hivetray.sampling import SAMPLED_ROLES
from hivetray.ui.a11y import FOCUS_STYLE, describe, name_clear_buttons
from hivetray.ui.api_settings import ApiTab
from hivetray.ui.hotkeys import toggle_command
from hivetray.ui.model_download import ModelDownloader
from hivetray.ui.remote_form import RemoteFields
from hivetray.ui.sampling_form import SamplingForm
from hivetray.wording import window_text


def expand_path(text: str) -> str | None:
    """What the user typed, as the path the pool will open: ``~`` expanded, made absolute.

    Why: the check and the saved value must be the same path; a saved ``~/model.gguf`` is a
    file the worker cannot find, and a relative path depends on where the app was started.
    An absolute path is kept exactly as typed (no symlink or ``..`` resolution).
    """
    text = text.strip()
    if not text:
        return None
    path = os.path.expanduser(text)
    return path if os.path.isabs(path) else os.path.abspath(path)


def check_gguf(path: str, what: str = "model") -> str | None:
    """One file on its own, read by the pool's reader (``open_model``): None when it is usable.

    Worded for a form field; the role rules (a projector is not a chat model, ...) come after,
    from :func:`role_problem`.
    """
    file = expand_path(path)
    if file is None:
        return None
    if not os.path.lexists(file):
        return f"{file} does not exist: choose the file again, or clear the field"
    try:
        open_model(file, what)
    except InvalidModelFile as exc:
        message = window_text(exc)
        lead = f"{file} is not a usable {what} file: "
        if message.startswith(lead):  # header problems: say plainly what the file is not
            return f"{file} is not a GGUF {what} file Hivetray can load: {message[len(lead):]}"
        return message
    except Exception as exc:  # a hostile file must not break the dialog
        return f"{file} could not be checked ({type(exc).__name__}: {exc}): choose another file"
    return None


def role_problem(role: str, model: str | None, mmproj: str | None) -> ModelLoadError | None:
    """The pool's own check of the role's files (``check_role``), so Settings never saves what
    the pool would refuse to start; None when they are fine.

    The error is returned without its traceback: its frames hold the caller's, and the
    caller holds the error, a cycle that would keep the whole dialog for the garbage collector
    of any thread (Qt widgets must be destroyed in the GUI thread)."""
    try:
        check_role(role, model, mmproj)
    except ModelLoadError as exc:
        return exc.with_traceback(None)
    except Exception as exc:  # any failure of the check refuses, as in the pool
        return InvalidModelFile(f"{model} could not be checked ({type(exc).__name__}: {exc}): "
                                "choose another file", model)
    return None


class PathField(QWidget):
    def __init__(self, caption: str) -> None:
        super().__init__()
        self.edit = QLineEdit()
        self.edit.setPlaceholderText("no model: the role stays off")
        self.edit.setClearButtonEnabled(True)
        describe(self.edit, caption)
        browse = QPushButton("Browse…")
        describe(browse, f"Browse for the {caption[:1].lower()}{caption[1:]}")
        browse.clicked.connect(self._browse)
        self._caption = caption
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.edit, 1)
        layout.addWidget(browse)

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, self._caption, self.value() or "",
                                              "GGUF models (*.gguf);;All files (*)")
        if path:
            self.edit.setText(path)

    def show_problem(self, problem: str | None) -> None:
        self.edit.setToolTip(problem or "")
        self.edit.setStyleSheet("QLineEdit { border: 1px solid #e5484d; }" if problem else "")

    def value(self) -> str | None:
        """The expanded absolute path (what is checked is what is saved)."""
        return expand_path(self.edit.text())


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
        self.sampling = SamplingForm(form) if role in SAMPLED_ROLES else None
        self.engine = RemoteFields(role, form)
        self.engine.local_rows = [self.model, self.downloader, self.n_ctx, self.n_threads,
                                  *([self.mmproj] if self.mmproj else [])]
        self.engine.sync()
        for path_field in self._path_fields():
            path_field.edit.textChanged.connect(self._validate)

    def _path_fields(self) -> list[PathField]:
        return [self.model] + ([self.mmproj] if self.mmproj else [])

    def load(self, cfg: RoleConfig) -> None:
        self.engine.load(cfg)
        self.model.edit.setText("" if cfg.remote else cfg.model or "")
        if self.mmproj is not None:
            self.mmproj.edit.setText(cfg.mmproj or "")
        self.n_ctx.setValue(cfg.n_ctx)
        self.n_threads.setValue(cfg.n_threads)
        self.idle.setValue(round(cfg.idle_timeout_s / 60))
        self.pinned.setChecked(cfg.pinned)
        if self.sampling is not None:
            self.sampling.load(cfg)

    def value(self, old: RoleConfig) -> RoleConfig:
        idle_s = float(self.idle.value() * 60)
        if self.idle.value() == round(old.idle_timeout_s / 60):
            idle_s = old.idle_timeout_s  # keep sub-minute values the user wrote by hand
        if self.sampling is not None:
            old = self.sampling.value(old)
        return self.engine.value(replace(
            old, model=self.model.value(),
            mmproj=self.mmproj.value() if self.mmproj else old.mmproj,
            n_ctx=self.n_ctx.value(), n_threads=self.n_threads.value(),
            idle_timeout_s=idle_s, pinned=self.pinned.isChecked()))

    def problems(self) -> list[str]:
        """Every reason the pool would refuse this role's files, shown on the field it is about.

        Each file is read on its own first (a missing projector is named as such), then the
        role rules run on both; the header read is cached, so this is cheap on each keystroke.
        A remote role has no files here: only its URL is checked.
        """
        if self.engine.remote:
            for unused in self._path_fields():
                unused.show_problem(None)
            problem = self.engine.problem()
            return [problem] if problem else []
        found: dict[PathField, str] = {}
        for path_field, what in ((self.model, "model"), (self.mmproj, "projector")):
            if path_field is not None and (problem := check_gguf(path_field.edit.text(), what)):
                found[path_field] = problem
        if not found:
            mmproj = self.mmproj.value() if self.mmproj else None
            error = role_problem(self.role, self.model.value(), mmproj)
            if error is not None:
                about_projector = isinstance(error, ProjectorMissing | ProjectorMismatch)
                where = self.mmproj if about_projector and self.mmproj else self.model
                found[where] = window_text(error)  # the fix in this window's words
        for path_field in self._path_fields():
            path_field.show_problem(found.get(path_field))
        return list(found.values())

    def _validate(self) -> None:
        self.problems()


def about_line() -> QLabel:
    """The About line at the foot of Settings: version, commit, build date, llama.cpp build.

    Why here: a user filing a bug can copy exactly which build they run without a terminal.
    Selectable, and word-wrapped so a long commit or version is never cut off; the tooltip
    holds the full ``hivetray --version`` text.
    """
    info = buildinfo.current()
    label = QLabel(info.one_line())
    label.setObjectName("aboutLine")
    label.setAccessibleName("About Hivetray")
    label.setTextFormat(Qt.TextFormat.PlainText)
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse
                                  | Qt.TextInteractionFlag.TextSelectableByKeyboard)
    label.setToolTip("\n".join(info.lines()))
    return label


class SettingsDialog(QDialog):
    saved = Signal()
    #: "Show the welcome window…": the first-run window again, whatever the config says
    show_welcome = Signal()

    def __init__(self, paths: AppPaths, config: Config) -> None:
        super().__init__()
        self.setWindowTitle("Hivetray — Settings")
        self.setStyleSheet(FOCUS_STYLE)
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
        welcome = QPushButton("Show the welcome window…")
        welcome.setToolTip("The first-run window: recommended models per role, your own GGUF "
                           "file, the built-in model")
        welcome.clicked.connect(self.show_welcome)
        form.addRow("Getting started", welcome)
        tabs.addTab(general, "General")
        self.api_tab = ApiTab(paths)
        tabs.addTab(self.api_tab, "API")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save
                                   | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.save)
        buttons.rejected.connect(self.reject)
        layout = QFormLayout(self)
        layout.addRow(tabs)
        layout.addRow(buttons)
        layout.addRow(about_line())
        name_clear_buttons(self)
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

    def set_api_status(self, message: str) -> None:
        """Whether the HTTP API listens (and where), or why it does not."""
        self.api_tab.set_status(message)

    def load(self, config: Config) -> None:
        self.config = config
        for role, tab in self.role_tabs.items():
            tab.load(config.role(role))
        self.hotkey.setKeySequence(QKeySequence(config.hotkeys.quick_chat))
        self.autostart.setChecked(autostart.is_enabled())
        self.budget.setValue(config.pool.restart_budget)
        self.restart_window.setValue(config.pool.restart_window_s)
        self.cooldown.setValue(config.pool.cooldown_s)
        self.api_tab.load(config.api)

    def collect(self) -> Config:
        roles = {role: tab.value(self.config.role(role)) for role, tab in self.role_tabs.items()}
        pool: PoolConfig = replace(self.config.pool, restart_budget=self.budget.value(),
                                   restart_window_s=self.restart_window.value(),
                                   cooldown_s=self.cooldown.value())
        hotkey = self.hotkey.keySequence().toString() or self.config.hotkeys.quick_chat
        # replace(), not Config(...): sections this dialog does not edit are kept as they are
        return replace(self.config, roles=roles, pool=pool,
                       hotkeys=replace(self.config.hotkeys, quick_chat=hotkey),
                       api=self.api_tab.value(self.config.api))

    def save(self) -> None:
        problems = [p for tab in self.role_tabs.values() for p in tab.problems()]
        if problems:
            QMessageBox.warning(self, "Check the model files", "\n".join(problems)
                                + "\n\nChoose another file, or clear the field.")
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
