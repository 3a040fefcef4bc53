"""A message a person must be able to read in full: wrapped, selectable, copyable, never clipped.

Why not a QLabel: a word-wrapped label placed in a row beside other widgets gets the row's
height, not its text's, so a long error is cut off at top and bottom; and a label wraps only at
spaces, so a long path or URL (what errors quote) pushes the window wider or is cut at the
right. Here the text wraps anywhere it must, the widget's height follows its text at its
width (``heightForWidth``, and a fixed height the layout has to honour), the text can be
selected with the mouse or the keyboard, and a long one has a Copy button for the whole of it.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QSize, Qt, Signal
from PySide6.QtGui import QGuiApplication, QResizeEvent, QTextOption
from PySide6.QtWidgets import QFrame, QHBoxLayout, QPushButton, QSizePolicy, QTextEdit, QWidget

#: a message longer than this (or of several lines) gets a Copy button
COPY_FROM_CHARS = 100


class _TextView(QTextEdit):
    """The read-only text: as tall as its text at the current width, no scroll bars."""

    #: the height the text needs now (at the view's current width)
    fitted = Signal(int)

    def __init__(self) -> None:
        super().__init__()
        self.setReadOnly(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setLineWrapMode(QTextEdit.LineWrapMode.WidgetWidth)
        self.setWordWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse
                                     | Qt.TextInteractionFlag.TextSelectableByKeyboard)
        self.setTabChangesFocus(True)  # Tab leaves the text instead of typing nothing
        self.viewport().setAutoFillBackground(False)
        self.setStyleSheet("QTextEdit { background: transparent; }")
        self.document().setDocumentMargin(2)
        policy = QSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        policy.setHeightForWidth(True)
        self.setSizePolicy(policy)
        # no slot on the document's own size signal: the document outlives the view's C++
        # half while the view is destroyed, and would call back into it (a crash); the text
        # only changes through ErrorText, which fits it, and a resize or a font change refits
        self.fit()

    def _chrome(self) -> int:
        """Height around the document: the frame and the viewport margins."""
        margins = self.contentsMargins()
        return margins.top() + margins.bottom() + 2 * self.frameWidth()

    def heightForWidth(self, width: int) -> int:
        document = self.document().clone()
        margins = self.contentsMargins()
        document.setTextWidth(max(1, width - margins.left() - margins.right()
                                  - 2 * self.frameWidth()))
        return int(document.size().height() + 0.999) + self._chrome()

    def fit(self) -> None:
        """Hold exactly the text's height at the current width (the layout must honour it)."""
        height = int(self.document().size().height() + 0.999) + self._chrome()
        if height != self.height() or self.minimumHeight() != height:
            self.setFixedHeight(height)
        self.fitted.emit(height)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self.fit()

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() in (QEvent.Type.FontChange, QEvent.Type.StyleChange):
            self.fit()

    def sizeHint(self) -> QSize:
        return QSize(320, self.heightForWidth(320))

    def minimumSizeHint(self) -> QSize:
        return QSize(80, self.fontMetrics().lineSpacing() + self._chrome())


class ErrorText(QWidget):
    """Show ``set_text``'s message in full; ``name`` is what a screen reader calls it.

    ``object_name`` styles the text (the quick chat's ``#banner`` colour). An empty message
    hides the widget.
    """

    def __init__(self, name: str, object_name: str = "errorText") -> None:
        super().__init__()
        self.setAccessibleName(name)
        self.view = _TextView()
        self.view.fitted.connect(self._fit)
        self.view.setObjectName(object_name)
        self.view.setAccessibleName(name)
        self.copy_button = QPushButton("Copy")
        self.copy_button.setToolTip("Copy the whole message")
        self.copy_button.setAccessibleName(f"Copy: {name}")
        self.copy_button.clicked.connect(self.copy)
        self.copy_button.hide()
        self._row = QHBoxLayout(self)
        self._row.setContentsMargins(0, 0, 0, 0)
        self._row.addWidget(self.view, 1)
        self._row.addWidget(self.copy_button, 0, Qt.AlignmentFlag.AlignTop)
        policy = QSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        policy.setHeightForWidth(True)
        self.setSizePolicy(policy)
        self.hide()

    def set_text(self, text: str) -> None:
        """Plain text (an error quotes paths and llama.cpp's words, which may hold ``<``)."""
        self.view.setPlainText(text)
        self._shown(text)

    def set_html(self, html: str) -> None:
        """Rich text the caller escaped (the status window's detail line)."""
        self.view.setHtml(html)
        self._shown(self.view.toPlainText())

    def _shown(self, text: str) -> None:
        self.view.setAccessibleDescription(text)
        self.copy_button.setVisible(len(text) > COPY_FROM_CHARS or "\n" in text.strip())
        if self.parentWidget() is not None or not text:  # never a window of its own
            self.setVisible(bool(text))
        self.view.fit()

    def _fit(self, text_height: int) -> None:
        """Hold the text's height (and the Copy button's): a parent layout must make room,
        and a window's minimum size grows with it, so nothing is ever cut off."""
        button = self.copy_button.sizeHint().height() if not self.copy_button.isHidden() else 0
        height = max(text_height, button)
        if self.minimumHeight() != height or self.maximumHeight() != height:
            self.setFixedHeight(height)

    def text(self) -> str:
        return self.view.toPlainText()

    def clear(self) -> None:
        self.set_text("")

    def copy(self) -> None:
        QGuiApplication.clipboard().setText(self.text())

    def hasHeightForWidth(self) -> bool:
        return True

    def heightForWidth(self, width: int) -> int:
        button = self.copy_button.sizeHint() if self.copy_button.isVisibleTo(self) else None
        spacing = self._row.spacing() if button is not None else 0
        text_width = width - (button.width() + spacing if button is not None else 0)
        return max(self.view.heightForWidth(text_width), button.height() if button else 0)
