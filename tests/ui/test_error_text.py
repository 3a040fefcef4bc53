"""ErrorText: a message is read in full at any width, selected, copied, and named for a screen
reader; the clipped-text check catches what today's labels did."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget
from pytestqt.qtbot import QtBot

from hivetray.ui.error_text import ErrorText
from tests.ui.clipping import assert_nothing_clipped, clipped_texts

LONG = ("cannot fetch Qwen/Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q4_k_m.gguf from "
        "huggingface.co: no network connection (ConnectError: [Errno -3] Temporary failure in "
        "name resolution): connect to the network and press Download again; the part file is "
        "/home/someone/.local/share/hivetray/models/Qwen--Qwen2.5-0.5B-Instruct-GGUF/"
        "qwen2.5-0.5b-instruct-q4_k_m.gguf.part")


def host(qtbot: QtBot, width: int) -> tuple[QWidget, ErrorText]:
    window = QWidget()
    layout = QVBoxLayout(window)
    layout.addWidget(QLabel("above"))
    text = ErrorText("Download error")
    layout.addWidget(text)
    layout.addWidget(QPushButton("below"))
    qtbot.addWidget(window)
    window.resize(width, 80)
    window.show()
    qtbot.waitExposed(window)
    return window, text


def test_a_long_message_is_read_in_full_at_any_width(qtbot: QtBot) -> None:
    window, text = host(qtbot, 700)
    assert not text.isVisibleTo(window)  # nothing to say: no empty box
    text.set_text(LONG)
    qtbot.waitUntil(lambda: text.isVisible())
    assert_nothing_clipped(window)
    wide = text.height()
    window.resize(260, window.height())  # a path with no space in it must wrap too
    qtbot.waitUntil(lambda: text.view.width() < 260)
    assert_nothing_clipped(window)
    assert text.height() > wide  # it grew taller rather than being cut off
    assert window.height() >= text.geometry().bottom()  # and the window made room for it
    assert text.view.heightForWidth(text.view.width()) == text.view.height()


def test_it_is_selectable_copyable_and_named(qtbot: QtBot) -> None:
    window, text = host(qtbot, 500)
    text.set_text(LONG)
    flags = text.view.textInteractionFlags()
    assert flags & Qt.TextInteractionFlag.TextSelectableByMouse
    assert flags & Qt.TextInteractionFlag.TextSelectableByKeyboard
    assert text.accessibleName() == "Download error" == text.view.accessibleName()
    assert text.copy_button.isVisibleTo(window)
    text.copy_button.click()
    assert QGuiApplication.clipboard().text() == LONG  # the whole of it, as it was written
    text.set_text("short")
    assert not text.copy_button.isVisibleTo(window)  # a short one needs no button
    text.clear()
    assert not text.isVisibleTo(window)


def test_the_check_catches_a_wrapped_label_squeezed_into_a_row(qtbot: QtBot) -> None:
    """What Settings did before: the error label beside the Download button, as tall as the
    row, so the text was cut off at the top and the bottom."""
    window = QWidget()
    row = QHBoxLayout(window)
    combo = QComboBox()
    combo.addItem("qwen2.5-1.5b-instruct (~1100 MB) — good small assistant")
    label = QLabel(LONG)
    label.setWordWrap(True)
    row.addWidget(combo, 1)
    row.addWidget(QPushButton("Download"))
    row.addWidget(label)
    qtbot.addWidget(window)
    window.resize(1000, 40)
    window.show()
    qtbot.waitExposed(window)
    problems = clipped_texts(window)
    assert len(problems) == 1 and "cannot fetch" in problems[0]
