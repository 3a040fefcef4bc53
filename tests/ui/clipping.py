"""A clipped-text check for any shown window: no visible label's text is wider or taller than
the room its geometry gives it.

Usage in a widget test, once the window is shown and laid out::

    assert_nothing_clipped(window)   # fails naming each clipped label and by how much

What counts: every visible ``QLabel`` (plain or rich text, wrapped or not) and every
:class:`~hivetray.ui.error_text.ErrorText` (its document against its viewport); and each of
them must lie inside its parents (a widget taller than the row it sits in is cut off by it),
up to a scroll area's viewport, where scrolling is how the rest is reached. A label whose
text was elided on purpose ("…" at its end) must carry the full text in its tooltip; an empty
label, or one showing a picture, has nothing to clip. Measured with the label's own font the
way Qt lays it out (``QFontMetrics.boundingRect`` with ``TextWordWrap`` for plain text, a
``QTextDocument`` for rich text), so a label that fits passes with no tolerance beyond 1 px of
rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6 import QtGui
from PySide6.QtCore import QRect, Qt
from PySide6.QtGui import QFontMetrics, QTextDocument
from PySide6.QtWidgets import QAbstractScrollArea, QApplication, QLabel, QWidget

from hivetray.ui.error_text import ErrorText

#: rounding between the metrics and the layout
SLACK_PX = 1


@dataclass(frozen=True)
class Clipped:
    widget: QWidget
    text: str
    needed_w: int
    needed_h: int
    room_w: int
    room_h: int

    def __str__(self) -> str:
        name = self.widget.objectName() or type(self.widget).__name__
        return (f"{name}: needs {self.needed_w}x{self.needed_h} px, has {self.room_w}x"
                f"{self.room_h}: {self.text[:80]!r}")


def _rich(label: QLabel) -> bool:
    fmt = label.textFormat()
    return fmt in (Qt.TextFormat.RichText, Qt.TextFormat.MarkdownText) or (
        fmt == Qt.TextFormat.AutoText and QtGui.Qt.mightBeRichText(label.text()))


def _label_room(label: QLabel) -> QRect:
    """Where QLabel draws its text: the contents rect less its margin and indent."""
    room = label.contentsRect()
    margin = label.margin()
    room = room.adjusted(margin, margin, -margin, -margin)
    indent = label.indent()
    if indent > 0:
        room = room.adjusted(indent, 0, 0, 0)
    return room


def _label_needs(label: QLabel, room: QRect) -> tuple[int, int]:
    if _rich(label):
        document = QTextDocument()
        document.setDefaultFont(label.font())
        document.setDocumentMargin(0)
        if label.textFormat() == Qt.TextFormat.MarkdownText:
            document.setMarkdown(label.text())
        else:
            document.setHtml(label.text())
        if label.wordWrap():
            document.setTextWidth(room.width())
            return int(document.idealWidth() + 0.999), int(document.size().height() + 0.999)
        return int(document.idealWidth() + 0.999), int(document.size().height() + 0.999)
    metrics = QFontMetrics(label.font())
    flags = int(label.alignment().value)
    if label.wordWrap():
        flags |= int(Qt.TextFlag.TextWordWrap.value)
        bounds = metrics.boundingRect(QRect(0, 0, room.width(), 100_000), flags, label.text())
    else:
        bounds = metrics.boundingRect(QRect(0, 0, 100_000, 100_000), flags, label.text())
    return bounds.width(), bounds.height()


def label_clipping(label: QLabel) -> Clipped | None:
    text = label.text()
    if not text or (label.pixmap() is not None and not label.pixmap().isNull()):
        return None
    room = _label_room(label)
    need_w, need_h = _label_needs(label, room)
    if need_w > room.width() + SLACK_PX or need_h > room.height() + SLACK_PX:
        return Clipped(label, text, need_w, need_h, room.width(), room.height())
    return None


def elided_without_tooltip(label: QLabel) -> bool:
    """An elided label ("…" at the end of a shortened text) must say it all in its tooltip."""
    text = label.text().rstrip()
    if not text.endswith("…"):
        return False
    return text[:-1].strip() not in label.toolTip()


def error_text_clipping(widget: ErrorText) -> Clipped | None:
    view = widget.view
    room = view.viewport().rect()
    document = view.document()
    need_w = int(document.idealWidth() + 0.999)
    need_h = int(document.size().height() + 0.999)
    if need_w > room.width() + SLACK_PX or need_h > room.height() + SLACK_PX:
        return Clipped(view, widget.text(), need_w, need_h, room.width(), room.height())
    return None


def cut_by_parent(widget: QWidget, window: QWidget) -> str | None:
    """The first ancestor (below ``window``) that does not hold ``widget``'s whole rectangle,
    described; None when every one does (or a scroll area takes over)."""
    name = widget.objectName() or type(widget).__name__
    child: QWidget = widget
    while child is not window and (parent := child.parentWidget()) is not None:
        area = parent.parentWidget()
        if isinstance(area, QAbstractScrollArea) and parent is area.viewport():
            # scrolling reaches the rest, unless that scroll bar is switched off
            sideways = child.geometry().right() > parent.rect().right() + SLACK_PX
            if sideways and area.horizontalScrollBarPolicy() == Qt.ScrollBarPolicy.\
                    ScrollBarAlwaysOff:
                return f"{name}: wider than the scroll area, which cannot scroll sideways"
            return None
        room = parent.rect().adjusted(-SLACK_PX, -SLACK_PX, SLACK_PX, SLACK_PX)
        if not room.contains(child.geometry()):
            return (f"{name}: cut off by {parent.objectName() or type(parent).__name__} "
                    f"({child.geometry().getRect()} is outside {parent.rect().getRect()})")
        child = parent
    return None


def clipped_texts(window: QWidget) -> list[str]:
    """Every clipped text in ``window`` (shown), as readable lines; [] when all fit."""
    for _ in range(5):  # a layout request goes up one level of nesting per pass
        QApplication.processEvents()
    problems: list[str] = []
    for label in window.findChildren(QLabel):
        if not label.isVisibleTo(window) or label.width() <= 0:
            continue
        if (found := label_clipping(label)) is not None:
            problems.append(str(found))
        elif (cut := cut_by_parent(label, window)) is not None:
            problems.append(cut)
        elif elided_without_tooltip(label):
            problems.append(f"{label.objectName() or 'QLabel'}: elided without its full text "
                            f"in a tooltip: {label.text()[:80]!r}")
    for error_text in window.findChildren(ErrorText):
        if not error_text.isVisibleTo(window):
            continue
        if (found := error_text_clipping(error_text)) is not None:
            problems.append(str(found))
        elif (cut := cut_by_parent(error_text.view, window)) is not None:
            problems.append(cut)
    return problems


def assert_nothing_clipped(window: QWidget) -> None:
    problems = clipped_texts(window)
    assert not problems, "clipped text:\n" + "\n".join(problems)
