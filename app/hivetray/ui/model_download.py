"""Download a curated model, with a progress bar: in Settings, and on its own from the quick
chat's "Get a better model…".

The download itself is ``hivetray models download ROLE NAME`` run as a child process (resume,
checksum and the atomic config update live there, once); this widget starts it, shows progress
from the size of the growing ``.part`` file, and reports the outcome in words. The app stays
responsive and a failed or cancelled download can simply be started again: it resumes.

A failure is shown in the window's words, not the CLI's: the child leaves its typed error in a
report file (``hivetray.errors.REPORT_ENV``), whose remedy names the Download button ("connect
and press Download again") where the CLI would name a command. It gets a full-width
:class:`ErrorText` under the row, so a long reason is read in full.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QProcess, QProcessEnvironment, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from hivetray.autostart import launch_command
from hivetray.errors import REPORT_ENV, read_report
from hivetray.models.catalog import DEFAULTS, CatalogEntry, for_role
from hivetray.models.download import target_path
from hivetray.paths import AppPaths
from hivetray.ui.error_text import ErrorText
from hivetray.wording import sentence, window_text

CommandFor = Callable[[str, CatalogEntry], list[str]]


def cli_command(role: str, entry: CatalogEntry) -> list[str]:
    return [*launch_command(), "models", "download", role, entry.name]


class ModelDownloader(QWidget):
    """Pick a curated model for ``role``; Download shows progress; ``finished(ok, message)``."""

    finished = Signal(bool, str)

    def __init__(self, role: str, paths: AppPaths, command_for: CommandFor = cli_command) -> None:
        super().__init__()
        self.role = role
        self.paths = paths
        self.command_for = command_for
        self.entries = for_role(role)
        self.choice = QComboBox()
        for entry in self.entries:
            self.choice.addItem(f"{entry.name} (~{entry.approx_mb} MB) — {entry.about}")
        self.button = QPushButton("Download")
        self.button.clicked.connect(self.toggle)
        self.bar = QProgressBar()
        self.bar.setTextVisible(True)
        self.bar.hide()
        #: the outcome, under the row and as wide as it: a long error is read in full
        self.message = ErrorText(f"Download of a {role} model")
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.choice, 1)
        row.addWidget(self.button)
        row.addWidget(self.bar)
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 0, 0, 0)
        column.addLayout(row)
        column.addWidget(self.message)
        self.process: QProcess | None = None
        self._part: Path | None = None
        self._report: str | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(250)
        self._timer.timeout.connect(self._show_progress)
        if not self.entries:
            self.button.setEnabled(False)
        self.select(DEFAULTS.get(role, ""))

    def select(self, name: str) -> bool:
        """Offer the catalog entry ``name`` (False when the role has no such entry)."""
        index = next((i for i, e in enumerate(self.entries) if e.name == name), -1)
        if index >= 0 and self.process is None:
            self.choice.setCurrentIndex(index)
        return index >= 0

    @property
    def entry(self) -> CatalogEntry:
        return self.entries[self.choice.currentIndex()]

    def toggle(self) -> None:
        if self.process is not None:
            self.process.kill()  # the .part file stays: Download again resumes
            return
        entry = self.entry
        self._part = target_path(self.paths, entry.repo, entry.filename).with_name(
            entry.filename + ".part")
        command = self.command_for(self.role, entry)
        self.process = QProcess(self)
        self.process.setProgram(command[0])
        self.process.setArguments(command[1:])
        handle, self._report = tempfile.mkstemp(prefix="hivetray-download-", suffix=".json")
        os.close(handle)
        environment = QProcessEnvironment.systemEnvironment()
        environment.insert(REPORT_ENV, self._report)
        self.process.setProcessEnvironment(environment)
        self.process.finished.connect(self._done)
        self.bar.setRange(0, max(1, entry.approx_mb))
        self.bar.setValue(0)
        self.bar.setFormat("%v of ~%m MB")
        self.bar.show()
        self.message.clear()
        self.button.setText("Cancel")
        self.choice.setEnabled(False)
        self.process.start()
        self._timer.start()

    def _show_progress(self) -> None:
        if self._part is not None and self._part.exists():
            megabytes = self._part.stat().st_size // 2**20
            if megabytes > self.bar.maximum():
                self.bar.setMaximum(megabytes)
            self.bar.setValue(megabytes)

    def _done(self, exit_code: int, _status: QProcess.ExitStatus) -> None:
        self._timer.stop()
        process, self.process = self.process, None
        assert process is not None
        output = bytes(process.readAllStandardError().data()).decode("utf-8", "replace")
        self.button.setText("Download")
        self.choice.setEnabled(True)
        self.bar.hide()
        error = self._take_report()
        if exit_code == 0:
            text = f"{self.entry.name} is downloaded and set for the {self.role} role."
        elif error is not None:
            text = sentence(window_text(error))
        else:  # cancelled, or the child died before it could say why
            lines = [ln.removeprefix("hivetray: ") for ln in output.splitlines() if ln.strip()]
            text = sentence(lines[-1] if lines else "the download was cancelled") + \
                " — press Download to resume."
        self.message.set_text(text)
        self.finished.emit(exit_code == 0, text)

    def _take_report(self) -> BaseException | None:
        """The typed error the child left (None: it succeeded, was killed, or is not ours)."""
        path, self._report = self._report, None
        if path is None:
            return None
        try:
            return read_report(path)
        finally:
            Path(path).unlink(missing_ok=True)


class ModelDownloadDialog(QDialog):
    """The catalog download for one role on its own (the quick chat's "Get a better model…").

    The same :class:`ModelDownloader` as in Settings, so the child process, the progress bar and
    the config update are the same. Closing the dialog while it downloads only hides it: the
    download goes on, and opening it again shows its progress. It stays on top, as the
    quick-chat window it is opened from does, so it is not hidden behind it.
    """

    def __init__(self, role: str, paths: AppPaths, command_for: CommandFor = cli_command
                 ) -> None:
        super().__init__(None, Qt.WindowType.Dialog | Qt.WindowType.WindowStaysOnTopHint)
        self.setWindowTitle(f"Hivetray — a model for the {role} role")
        intro = QLabel(f"Pick a model for the {role} role. It is downloaded once (an interrupted "
                       "download resumes), checked against the sha256 the hub publishes, and "
                       f"used for {role} as soon as it is in.")
        intro.setWordWrap(True)
        self.downloader = ModelDownloader(role, paths, command_for)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.hide)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.downloader)
        layout.addWidget(buttons)
        self.resize(760, self.sizeHint().height())

    def present(self) -> None:
        self.show()
        self.raise_()
        self.activateWindow()
        self.downloader.button.setFocus()
