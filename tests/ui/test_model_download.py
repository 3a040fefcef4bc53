"""Settings' curated download: a real child process, progress from the .part file, outcome."""

from __future__ import annotations

import sys
from pathlib import Path

from pytestqt.qtbot import QtBot

from hivetray.models.catalog import CatalogEntry
from hivetray.models.download import target_path
from hivetray.paths import AppPaths
from hivetray.ui.model_download import ModelDownloader

GROW = """
import sys, time, os
part, final = sys.argv[1], sys.argv[2]
os.makedirs(os.path.dirname(part), exist_ok=True)
with open(part, "ab") as f:
    for _ in range(6):
        f.write(b"x" * 2**20); f.flush()
        line = sys.stdin.readline()  # the test says when to go on
os.replace(part, final)
"""


def grower(paths: AppPaths) -> object:
    def command(role: str, entry: CatalogEntry) -> list[str]:
        final = target_path(paths, entry.repo, entry.filename)
        part = final.with_name(entry.filename + ".part")
        return [sys.executable, "-c", GROW, str(part), str(final)]

    return command


def test_progress_follows_the_part_file_and_success_is_reported(qtbot: QtBot,
                                                               home: AppPaths) -> None:
    widget = ModelDownloader("embed", home, grower(home))  # type: ignore[arg-type]
    qtbot.addWidget(widget)
    widget.toggle()
    assert widget.button.text() == "Cancel" and not widget.choice.isEnabled()
    process = widget.process
    assert process is not None
    process.waitForStarted(5000)
    for step in range(1, 4):
        process.write(b"\n")
        qtbot.waitUntil(lambda step=step: widget.bar.value() >= step, timeout=5000)
    with qtbot.waitSignal(widget.finished, timeout=10_000) as done:
        process.write(b"\n\n\n")
    assert done.args[0] is True and "is downloaded and set for the embed role" in done.args[1]
    assert widget.button.text() == "Download" and widget.choice.isEnabled()
    entry = widget.entry
    assert target_path(home, entry.repo, entry.filename).stat().st_size == 6 * 2**20


def test_failure_shows_the_reason_and_how_to_resume(qtbot: QtBot, home: AppPaths) -> None:
    def failing(role: str, entry: CatalogEntry) -> list[str]:
        return [sys.executable, "-c",
                "import sys; print('hivetray: cannot fetch x: connection refused', "
                "file=sys.stderr); sys.exit(1)"]

    widget = ModelDownloader("chat", home, failing)
    qtbot.addWidget(widget)
    with qtbot.waitSignal(widget.finished, timeout=10_000) as done:
        widget.toggle()
    assert done.args[0] is False
    assert "connection refused" in done.args[1] and "resume" in done.args[1]
    assert widget.message.text() == done.args[1]


def test_cancel_kills_the_download(qtbot: QtBot, home: AppPaths, tmp_path: Path) -> None:
    widget = ModelDownloader("rerank", home, grower(home))  # type: ignore[arg-type]
    qtbot.addWidget(widget)
    widget.toggle()
    assert widget.process is not None and widget.process.waitForStarted(5000)
    with qtbot.waitSignal(widget.finished, timeout=10_000) as done:
        widget.toggle()  # the button reads "Cancel"
    assert done.args[0] is False and "resume" in done.args[1]


def test_the_quick_chats_download_window_offers_the_roles_default_and_survives_closing(
        qtbot: QtBot, home: AppPaths) -> None:
    """"Get a better model…" opens this window: the catalog's first choice for the role is
    offered, the download shows its progress, and closing the window does not stop it."""
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QDialogButtonBox

    from hivetray.models.catalog import DEFAULTS
    from hivetray.ui.model_download import ModelDownloadDialog

    dialog = ModelDownloadDialog("chat", home, grower(home))  # type: ignore[arg-type]
    qtbot.addWidget(dialog)
    dialog.present()
    assert dialog.isVisible() and "chat" in dialog.windowTitle()
    assert dialog.windowFlags() & Qt.WindowType.WindowStaysOnTopHint  # above the quick chat
    downloader = dialog.downloader
    assert downloader.entry.name == DEFAULTS["chat"] and downloader.role == "chat"
    downloader.toggle()
    process = downloader.process
    assert process is not None and process.waitForStarted(5000)
    assert downloader.bar.isVisibleTo(dialog)
    process.write(b"\n")
    qtbot.waitUntil(lambda: downloader.bar.value() >= 1, timeout=5000)
    close = dialog.findChild(QDialogButtonBox)
    assert close is not None
    close.button(QDialogButtonBox.StandardButton.Close).click()
    assert not dialog.isVisible() and downloader.process is process  # still downloading
    with qtbot.waitSignal(downloader.finished, timeout=10_000) as done:
        process.write(b"\n" * 6)
    assert done.args[0] is True and "set for the chat role" in done.args[1]


def test_a_role_default_is_offered_first_and_unknown_names_are_refused(qtbot: QtBot,
                                                                       home: AppPaths) -> None:
    from hivetray.models.catalog import for_role

    widget = ModelDownloader("chat", home)
    qtbot.addWidget(widget)
    other = for_role("chat")[-1].name
    assert widget.select(other) and widget.entry.name == other
    assert not widget.select("no-such-model") and widget.entry.name == other
