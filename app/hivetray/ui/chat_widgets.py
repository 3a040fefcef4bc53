"""Pieces of the quick-chat window: the input box, one message bubble, the image attachment."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QMimeData, Qt, Signal
from PySide6.QtGui import (
    QFont,
    QFontDatabase,
    QGuiApplication,
    QImage,
    QKeyEvent,
    QPixmap,
    QTextDocument,
)
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from hivetray.images import sniff_image_type

_CODE_BLOCK = re.compile(r"```[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_LONG_RUN = re.compile(r"\S{40,}")
_FENCE = re.compile(r"(```.*?(?:```|\Z))", re.DOTALL)


def soft_wrap(markdown: str) -> str:
    """Let very long unbroken runs wrap (zero-width spaces), outside code blocks only.

    Only for display: copying uses the original text.
    """
    def breakable(match: re.Match[str]) -> str:
        run = match.group(0)
        return "\u200b".join(run[i:i + 20] for i in range(0, len(run), 20))

    parts = _FENCE.split(markdown)
    return "".join(part if part.startswith("```") else _LONG_RUN.sub(breakable, part)
                   for part in parts)


def code_blocks(markdown: str) -> list[str]:
    """The contents of fenced code blocks (an unclosed one at the end counts while streaming)."""
    return [m.group(1).rstrip("\n") for m in _CODE_BLOCK.finditer(markdown)]


#: colour emoji fonts, best first: the first one installed is the fallback for glyphs the UI
#: font lacks (emoji in a reply would otherwise be drawn as empty boxes)
EMOJI_FAMILIES = ("Noto Color Emoji", "Apple Color Emoji", "Segoe UI Emoji", "Twemoji",
                  "Twitter Color Emoji", "JoyPixels", "EmojiOne Color", "OpenMoji Color",
                  "Noto Emoji", "Segoe UI Symbol", "Symbola")


@functools.cache
def installed_families() -> tuple[str, ...]:
    """The system's font families, asked once (the font database does not change under us)."""
    return tuple(QFontDatabase.families())


def emoji_family(installed: Iterable[str]) -> str | None:
    """The best emoji font among ``installed`` (names compared without case), or None."""
    by_name = {family.casefold(): family for family in installed}
    return next((by_name[name.casefold()] for name in EMOJI_FAMILIES
                 if name.casefold() in by_name), None)


def with_emoji_fallback(font: QFont, installed: Iterable[str] | None = None) -> QFont:
    """``font`` with an emoji font after its own families, for the glyphs they lack.

    Qt looks a missing glyph up along the font's family list before its own last-resort
    fallback, which on a bare system has no emoji and draws boxes. Without an emoji font
    installed the font is returned as it was.
    """
    emoji = emoji_family(installed_families() if installed is None else installed)
    own = list(font.families()) or [font.family()]
    if emoji is None or emoji in own:
        return font
    fallback = QFont(font)
    fallback.setFamilies([*own, emoji])
    return fallback


def plain_text(markdown: str) -> str:
    """What a screen reader should say for a message: its words, without Markdown marks or
    the zero-width breaks :func:`soft_wrap` puts in for the screen."""
    document = QTextDocument()
    document.setMarkdown(markdown)
    return document.toPlainText().strip()


#: who wrote a message, as a screen reader says it before the message
SPEAKERS = {"user": "You", "assistant": "Hivetray"}


def image_to_png(image: QImage) -> bytes:
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")  # type: ignore[call-overload]  # the stub says bytes; str works
    return bytes(buffer.data().data())


class ChatInput(QPlainTextEdit):
    """Enter sends, Shift+Enter is a new line; pasted image data becomes an attachment."""

    submit = Signal()
    image_pasted = Signal(str, bytes)

    def __init__(self) -> None:
        super().__init__()
        self.setPlaceholderText("Ask anything…  (Enter sends, Shift+Enter new line, Esc stops or "
                                "hides, Ctrl+V pastes an image)")
        self.setTabChangesFocus(True)
        self.setMaximumHeight(110)
        self.setFont(with_emoji_fallback(self.font()))

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and not (
                event.modifiers() & Qt.KeyboardModifier.ShiftModifier):
            self.submit.emit()
            return
        super().keyPressEvent(event)

    def canInsertFromMimeData(self, source: QMimeData) -> bool:
        return source.hasImage() or super().canInsertFromMimeData(source)

    def insertFromMimeData(self, source: QMimeData) -> None:
        if source.hasImage():
            image = QImage(source.imageData())
            if not image.isNull():
                self.image_pasted.emit("pasted image.png", image_to_png(image))
                return
        super().insertFromMimeData(source)


class MessageView(QFrame):
    """One message, rendered as Markdown (code blocks, lists); the reply's text grows in place."""

    def __init__(self, role: str, text: str = "", image: bytes | None = None) -> None:
        super().__init__()
        self.role = role
        self.markdown = text
        self.setObjectName("userMessage" if role == "user" else "assistantMessage")
        self.setAccessibleName(SPEAKERS.get(role, role))
        self.setFrameShape(QFrame.Shape.StyledPanel)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 6)
        if image:
            thumb = QLabel()
            pixmap = QPixmap()
            pixmap.loadFromData(QByteArray(image))
            thumb.setPixmap(pixmap.scaled(160, 120, Qt.AspectRatioMode.KeepAspectRatio,
                                          Qt.TransformationMode.SmoothTransformation))
            layout.addWidget(thumb)
        self.body = QLabel()
        self.body.setTextFormat(Qt.TextFormat.MarkdownText)
        self.body.setWordWrap(True)
        self.body.setOpenExternalLinks(True)
        self.body.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse
                                          | Qt.TextInteractionFlag.LinksAccessibleByMouse)
        self.body.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)
        self.body.setFont(with_emoji_fallback(self.body.font()))
        layout.addWidget(self.body)
        self.status = QLabel()
        self.status.setObjectName("messageStatus")
        self.status.setWordWrap(True)  # "failed: <why and what to do>" is read in full
        self.status.hide()
        layout.addWidget(self.status)
        if role == "assistant":
            actions = QHBoxLayout()
            actions.addStretch(1)
            self.copy_code = QPushButton("Copy code")
            self.copy_code.setAccessibleName("Copy the code of this reply")
            self.copy_code.clicked.connect(self._copy_code)
            self.copy_code.hide()
            copy = QPushButton("Copy")
            copy.setAccessibleName("Copy this reply")
            copy.setToolTip("Copy this reply as Markdown")
            copy.clicked.connect(lambda: QGuiApplication.clipboard().setText(self.markdown))
            actions.addWidget(self.copy_code)
            actions.addWidget(copy)
            layout.addLayout(actions)
        self.repaint_text()
        if text:
            self.settle()

    def append(self, piece: str) -> None:
        """Cheap: the text grows; the window repaints at most once per frame."""
        self.markdown += piece

    def settle(self) -> None:
        """The text is complete: give screen readers its words (while it streams they read
        the label as it is; converting the Markdown on every frame would cost the loop)."""
        self.body.setAccessibleName(plain_text(self.markdown))

    def repaint_text(self) -> None:
        self.body.setText(soft_wrap(self.markdown) or "…")
        if self.role == "assistant":
            self.copy_code.setVisible(bool(code_blocks(self.markdown)))

    def set_status(self, text: str) -> None:
        self.status.setText(text)
        self.status.setVisible(bool(text))

    def _copy_code(self) -> None:
        QGuiApplication.clipboard().setText("\n\n".join(code_blocks(self.markdown)))


class Attachment(QWidget):
    """The image waiting to be sent: a thumbnail and a remove button."""

    changed = Signal()

    def __init__(self) -> None:
        super().__init__()
        self.name: str | None = None
        self.data: bytes | None = None
        self.thumb = QLabel()
        self.label = QLabel()
        remove = QPushButton("Remove")
        remove.setAccessibleName("Remove the attached image")
        remove.clicked.connect(self.clear)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.thumb)
        layout.addWidget(self.label, 1)
        layout.addWidget(remove)
        self.hide()

    def set_image(self, name: str, data: bytes) -> str | None:
        """Attach ``data``; returns a message when it is not an image we can send."""
        if sniff_image_type(data) is None:
            return f"{name} is not an image (PNG, JPEG, WebP, GIF or BMP)"
        pixmap = QPixmap()
        pixmap.loadFromData(QByteArray(data))
        self.thumb.setPixmap(pixmap.scaled(64, 64, Qt.AspectRatioMode.KeepAspectRatio,
                                           Qt.TransformationMode.SmoothTransformation))
        self.name, self.data = name, data
        self.label.setText(f"{name} — {len(data) / 1024:.0f} KiB, goes to the vision model")
        self.show()
        self.changed.emit()
        return None

    def take(self) -> tuple[str, bytes] | None:
        if self.data is None or self.name is None:
            return None
        image = (self.name, self.data)
        self.clear()
        return image

    def clear(self) -> None:
        self.name = self.data = None
        self.hide()
        self.changed.emit()
