"""Emoji in the quick chat: the reply view falls back to an installed emoji font for glyphs its
own font lacks (they were drawn as boxes), and stays as it was where none is installed. The
system's font list is injected, so this runs the same on any machine."""

from __future__ import annotations

import pytest
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QLabel, QWidget
from pytestqt.qtbot import QtBot

from hivetray.ui import chat_widgets
from hivetray.ui.chat_widgets import (
    ChatInput,
    MessageView,
    emoji_family,
    with_emoji_fallback,
)


def test_the_best_installed_emoji_family_is_chosen() -> None:
    assert emoji_family(["DejaVu Sans", "Twemoji", "Noto Color Emoji"]) == "Noto Color Emoji"
    assert emoji_family(["DejaVu Sans", "segoe ui emoji"]) == "segoe ui emoji"  # any case
    assert emoji_family(["DejaVu Sans", "Liberation Serif"]) is None


def test_the_font_keeps_its_own_families_first(qtbot: QtBot) -> None:
    font = QFont("DejaVu Sans", 11)
    fallback = with_emoji_fallback(font, ["DejaVu Sans", "Apple Color Emoji"])
    assert fallback.families() == ["DejaVu Sans", "Apple Color Emoji"]
    assert fallback.pointSize() == 11
    assert font.families() == ["DejaVu Sans"]  # a copy: the given font is not changed
    assert with_emoji_fallback(font, ["DejaVu Sans"]) is font  # none installed: as it was


def test_reply_and_input_fall_back_to_the_installed_emoji_font(
        qtbot: QtBot, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chat_widgets, "installed_families",
                        lambda: ("DejaVu Sans", "Noto Color Emoji"))
    reply = MessageView("assistant", "Bees 🐝 and honey 🍯")
    box = ChatInput()
    qtbot.addWidget(reply)
    qtbot.addWidget(box)
    for font in (reply.body.font(), box.font()):
        own = list(QWidget().font().families()) or [QWidget().font().family()]
        assert font.families() == [*own, "Noto Color Emoji"]


def test_without_an_emoji_font_the_default_font_stays(qtbot: QtBot,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chat_widgets, "installed_families", lambda: ("DejaVu Sans",))
    reply = MessageView("assistant", "Bees 🐝")
    qtbot.addWidget(reply)
    assert reply.body.font() == QLabel().font()
