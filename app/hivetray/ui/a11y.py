"""Keyboard and screen-reader helpers shared by the windows: a visible focus, names for
controls that have no words of their own, and window sizes in text units.

Why each exists:

* **Focus.** Qt's Fusion style (the default on Linux without a platform theme) draws no focus
  mark on scroll areas and read-only text views, so a keyboard user who tabs into the
  quick chat's conversation or the status window's logs cannot see where they are; and it
  draws a focused push button exactly as it draws a dialog's default button, so in Settings
  the Save button looks focused wherever the focus is. :data:`FOCUS_STYLE` is a window style
  sheet rule for exactly those widgets; fields, boxes, tabs and tables keep the style's own
  focus frame. It lives here, in the package, rather than in ``resources/``: a pip-installed
  Hivetray has no ``resources/`` folder.
* **Names.** A screen reader reads a button by its text; the clear button Qt puts in a line
  edit has none (:func:`name_clear_buttons`).
* **Sizes.** A window sized in pixels is cramped under a large font or a scaled screen and huge
  under a small one. :func:`text_size` measures in the window's own font (which follows the
  screen's logical DPI and the user's font settings), and never beyond the screen.
"""

from __future__ import annotations

from PySide6.QtCore import QSize
from PySide6.QtGui import QAction, QGuiApplication
from PySide6.QtWidgets import QAbstractButton, QLineEdit, QToolButton, QWidget

#: a clear highlight frame on the widgets whose focus the default style does not show
FOCUS_STYLE = """
QAbstractScrollArea:focus { border: 2px solid palette(highlight); }
QPushButton:focus {
    border: 2px solid palette(highlight); border-radius: 4px; padding: 0px;
    background: qlineargradient(x1: 0, y1: 0, x2: 0, y2: 1,
                                stop: 0 palette(light), stop: 1 palette(button));
}
"""
#: the fraction of the screen a window may take at most
SCREEN_SHARE = 0.9
#: Qt's name for the clear action of QLineEdit.setClearButtonEnabled
_CLEAR_ACTION = "_q_qlineeditclearaction"


def describe(widget: QWidget, name: str, description: str = "") -> None:
    """Set what a screen reader says for ``widget``: its name, then its description."""
    widget.setAccessibleName(name)
    if description:
        widget.setAccessibleDescription(description)


def name_clear_buttons(root: QWidget) -> None:
    """Give every line-edit clear button under ``root`` a name ("Clear <the field's name>")."""
    for edit in root.findChildren(QLineEdit):
        for button in edit.findChildren(QToolButton):
            action = button.defaultAction()
            if action is not None and action.objectName() == _CLEAR_ACTION:
                field = edit.accessibleName() or edit.placeholderText() or "the field"
                _name_action(action, button, f"Clear {field}")


def _name_action(action: QAction, button: QAbstractButton, name: str) -> None:
    action.setToolTip(name)
    button.setAccessibleName(name)


def text_size(widget: QWidget, columns: float, lines: float) -> QSize:
    """``columns`` average characters by ``lines`` lines of ``widget``'s font, in the logical
    pixels Qt lays out with (so a scaled screen scales it too), bounded by the screen."""
    metrics = widget.fontMetrics()
    size = QSize(round(columns * metrics.averageCharWidth()), round(lines * metrics.lineSpacing()))
    screen = widget.screen() or QGuiApplication.primaryScreen()
    if screen is not None:
        area = screen.availableGeometry().size()
        size = size.boundedTo(QSize(int(area.width() * SCREEN_SHARE),
                                    int(area.height() * SCREEN_SHARE)))
    return size
