"""The welcome window: what Hivetray is, and the way to a first model, in one short window.

Why: started from an installer, Hivetray has no model, and without this the first thing a
person meets is a failed chat reply that names a command. The app opens this window on a first
run (``hivetray.first_run`` says when); the quick chat's "Get a model…" and Settings' "Show the
welcome window…" open it again.

It is thin: it renders the catalog's recommended entry for each role and emits intents
(``get_model``, ``cancel_download``, ``use_file``, ``try_builtin``, ``dismissed``). The desktop
app does the work — the download runs in the same downloader as the "Get a better model…"
dialog, the file is checked and written by ``hivetray.first_run`` — and reports back through
:meth:`download_started`, :meth:`download_progress`, :meth:`download_finished` and
:meth:`show_message`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from hivetray import ROLES
from hivetray.models.catalog import DEFAULTS, CatalogEntry, find
from hivetray.ui.a11y import FOCUS_STYLE, describe, text_size

WINDOW_TITLE = "Hivetray — Welcome"
INTRO = ("Hivetray keeps local AI models ready on this computer: a chat window one keyboard "
         "shortcut away, and image questions, embeddings and reranking for your own tools. "
         "Everything runs offline once a model is here: get one below, or use a GGUF file you "
         "already have.")
#: what each role does for the person, in their words
ROLE_USES = {
    "chat": "answers in the quick-chat window",
    "vision": "answers about images you paste or drop into the quick chat",
    "embed": "turns text into vectors for search tools",
    "rerank": "orders search results by relevance",
}
#: the roles a single GGUF file can serve (vision also needs its projector: Settings)
FILE_ROLES = ("chat", "embed", "rerank")
GET = "Get"
CANCEL = "Cancel"

ChooseFile = Callable[[QWidget], str]


def ask_gguf_path(parent: QWidget) -> str:
    """The file dialog of "I have a GGUF file…" ('' when cancelled)."""
    path, _ = QFileDialog.getOpenFileName(parent, "A GGUF model file", str(Path.home()),
                                          "GGUF models (*.gguf);;All files (*)")
    return path


def download_size(megabytes: int) -> str:
    return f"{megabytes / 1000:.1f} GB" if megabytes >= 1000 else f"{megabytes} MB"


@dataclass
class RoleRow:
    """One role's line: the recommended model, its Get button, its progress and outcome."""

    role: str
    entry: CatalogEntry
    button: QPushButton
    bar: QProgressBar
    note: QLabel
    downloading: bool = False


class WelcomeWindow(QDialog):
    #: role, catalog entry name: download it and set it for the role
    get_model = Signal(str, str)
    #: role: stop its running download (it resumes when started again)
    cancel_download = Signal(str)
    #: role, path: check the file and set it for the role
    use_file = Signal(str, str)
    try_builtin = Signal()
    #: closed by the person (Esc or Close), not by the app
    dismissed = Signal()

    def __init__(self, builtin_label: str | None = None,
                 choose_file: ChooseFile = ask_gguf_path) -> None:
        super().__init__()
        self.setWindowTitle(WINDOW_TITLE)
        self.setStyleSheet(FOCUS_STYLE)
        self._choose_file = choose_file
        self.rows: dict[str, RoleRow] = {}
        heading = QLabel("<h2>Welcome to Hivetray</h2>")
        intro = QLabel(INTRO)
        intro.setWordWrap(True)
        self._layout = layout = QVBoxLayout(self)
        layout.addWidget(heading)
        layout.addWidget(intro)
        layout.addLayout(self._role_grid())
        self.builtin_button: QPushButton | None = None
        if builtin_label:
            layout.addLayout(self._builtin_row(builtin_label))
        layout.addLayout(self._file_row())
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse
                                             | Qt.TextInteractionFlag.TextSelectableByKeyboard)
        self.message.hide()
        layout.addWidget(self.message)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.rejected.connect(self.dismissed)  # Esc and Close both reject
        self.resize(max(self.sizeHint().width(), text_size(self, 100, 1).width()),
                    self.sizeHint().height())
        self._fit()

    def _role_grid(self) -> QGridLayout:
        grid = QGridLayout()
        grid.setColumnStretch(1, 1)
        for line, role in enumerate(ROLES):
            entry = find(DEFAULTS.get(role, ""))
            if entry is None:
                continue
            title = QLabel(f"<b>{role.capitalize()}</b>")
            about = QLabel(f"<b>{entry.name}</b> · {download_size(entry.approx_mb)} download"
                           f"<br>{entry.about}; {ROLE_USES.get(role, '')}")
            about.setWordWrap(True)
            button = QPushButton(GET)
            describe(button, f"Get {entry.name} for the {role} role",
                     f"Download {entry.name} ({download_size(entry.approx_mb)}) and use it for "
                     f"the {role} role")
            button.setToolTip(button.accessibleDescription())
            button.clicked.connect(lambda _checked=False, r=role: self._get_clicked(r))
            bar = QProgressBar()
            describe(bar, f"Download of {entry.name}")
            bar.hide()
            note = QLabel()
            note.setWordWrap(True)
            note.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            note.hide()
            details = QVBoxLayout()
            details.addWidget(about)
            details.addWidget(bar)
            details.addWidget(note)
            grid.addWidget(title, line, 0, Qt.AlignmentFlag.AlignTop)
            grid.addLayout(details, line, 1)
            grid.addWidget(button, line, 2, Qt.AlignmentFlag.AlignTop)
            title.setBuddy(button)
            self.rows[role] = RoleRow(role, entry, button, bar, note)
        return grid

    def _builtin_row(self, label: str) -> QHBoxLayout:
        self.builtin_button = QPushButton("Try the built-in model now")
        describe(self.builtin_button, "Try the built-in model now",
                 f"{label}. Opens the quick chat with it; no download")
        self.builtin_button.clicked.connect(self.try_builtin)
        about = QLabel(f"{label}. It is already on this computer.")
        about.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(self.builtin_button)
        row.addWidget(about, 1)
        return row

    def _file_row(self) -> QHBoxLayout:
        self.file_button = QPushButton("I have a GGUF file…")
        describe(self.file_button, "I have a GGUF file",
                 "Choose a .gguf model file on this computer; it is checked, then used for the "
                 "role chosen beside it")
        self.file_button.clicked.connect(self.pick_file)
        self.file_role = QComboBox()
        self.file_role.addItems(list(FILE_ROLES))
        describe(self.file_role, "Role for the GGUF file")
        self.file_role.setToolTip("A vision model also needs its projector (mmproj) file: set "
                                  "both in Settings")
        for_label = QLabel("for the")
        for_label.setBuddy(self.file_role)
        row = QHBoxLayout()
        row.addWidget(self.file_button)
        row.addWidget(for_label)
        row.addWidget(self.file_role)
        row.addWidget(QLabel("role"))
        row.addStretch(1)
        return row

    # -- intents --------------------------------------------------------------------------------
    def _get_clicked(self, role: str) -> None:
        row = self.rows[role]
        if row.downloading:
            self.cancel_download.emit(role)
        else:
            self.get_model.emit(role, row.entry.name)

    def pick_file(self) -> None:
        path = self._choose_file(self)
        if path:
            self.use_file.emit(self.file_role.currentText(), path)

    def present(self) -> None:
        self.show()
        self.raise_()
        self.activateWindow()
        self.rows["chat"].button.setFocus(Qt.FocusReason.ActiveWindowFocusReason)

    # -- what the app reports back --------------------------------------------------------------
    def set_models(self, models: Mapping[str, str | None]) -> None:
        """Say which roles already have a model (config.toml's, by file name)."""
        for role, row in self.rows.items():
            model = models.get(role)
            if not row.downloading and model:
                self._note(row, f"In use now: {Path(model).name}")

    def download_started(self, role: str) -> None:
        row = self.rows[role]
        row.downloading = True
        row.bar.setRange(0, max(1, row.entry.approx_mb))
        row.bar.setValue(0)
        row.bar.setFormat("%v of ~%m MB")
        row.bar.show()
        row.note.hide()
        row.button.setText(CANCEL)
        describe(row.button, f"Cancel the download of {row.entry.name}")
        self._fit()

    def download_progress(self, role: str, done_mb: int, total_mb: int) -> None:
        row = self.rows[role]
        if not row.downloading:
            self.download_started(role)
        row.bar.setMaximum(max(1, total_mb))
        row.bar.setValue(done_mb)

    def download_finished(self, role: str, ok: bool, message: str) -> None:
        row = self.rows[role]
        row.downloading = False
        row.bar.hide()
        row.button.setText(GET)
        describe(row.button, f"Get {row.entry.name} for the {role} role")
        self._note(row, message)  # fits the window

    def show_message(self, text: str) -> None:
        """An outcome of "I have a GGUF file…": in full, wrapped and selectable."""
        self.message.setText(text)
        self.message.setVisible(bool(text))
        self._fit()

    def _note(self, row: RoleRow, text: str) -> None:
        row.note.setText(text)
        row.note.setVisible(bool(text))
        self._fit()

    def _fit(self) -> None:
        """Take the height the wrapped texts need at the current width, so a progress bar or
        a long message that appears is never cut off (a window does not grow by itself)."""
        layout = self._layout
        layout.activate()
        needed = layout.totalHeightForWidth(self.width()) if layout.hasHeightForWidth() \
            else layout.totalSizeHint().height()
        if needed > 0 and needed != self.height():
            self.resize(self.width(), needed)
