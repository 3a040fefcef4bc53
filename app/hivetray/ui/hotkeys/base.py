"""What every hotkey layer shares: the status the UI shows and the backend base class.

A backend reports through Qt signals only (``activated``, ``status_changed``), so whatever
thread or callback a native layer fires on, the GUI reaches it through the event loop.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import Literal

from PySide6.QtCore import QObject, Signal

from hivetray.ui.hotkeys.keys import Chord

Layer = Literal["x11", "windows", "macos", "portal", "command"]
LAYER_NAMES: dict[Layer, str] = {"x11": "X11", "windows": "Windows", "macos": "macOS",
                                 "portal": "desktop portal", "command": "command"}
#: what users bind in their desktop's own shortcut settings; always works while Hivetray runs
TOGGLE_COMMAND = "hivetray toggle-chat"


@dataclass(frozen=True)
class HotkeyStatus:
    """Which layer carries the hotkey and whether it works, in words the UI shows as is.

    ``ok`` means "pressing the shortcut reaches Hivetray by itself"; the command layer is never
    ok in that sense: it needs the user to bind :data:`TOGGLE_COMMAND`. ``conflict`` marks a key
    another program holds; ``pending`` an answer still awaited (the portal may ask the user).
    """

    layer: Layer
    ok: bool
    message: str
    sequence: str = ""
    conflict: bool = False
    pending: bool = False

    @property
    def layer_name(self) -> str:
        return LAYER_NAMES[self.layer]


def toggle_command() -> str:
    """The command line to paste into the desktop's shortcut settings: the short form when
    ``hivetray`` is on PATH, else how this Hivetray was started (a venv's Python, a packaged
    executable, an AppImage), which the desktop can run from anywhere."""
    if shutil.which("hivetray"):
        return TOGGLE_COMMAND
    from hivetray.autostart import launch_command

    argv = [*launch_command(), "toggle-chat"]
    return subprocess.list2cmdline(argv) if sys.platform == "win32" else shlex.join(argv)


def bind_advice() -> str:
    return f"bind `{TOGGLE_COMMAND}` in your desktop's keyboard shortcut settings"


def conflict_status(layer: Layer, sequence: str, why: str) -> HotkeyStatus:
    return HotkeyStatus(layer, False, f"{sequence} is taken by another program ({why}); choose "
                        f"another shortcut or {bind_advice()}", sequence, conflict=True)


def command_status(sequence: str, reason: str = "no global shortcut on this platform") \
        -> HotkeyStatus:
    return HotkeyStatus("command", False, f"{reason}: {bind_advice()}", sequence)


class HotkeyBackend(QObject):
    """One native layer. ``register`` answers at once; a layer that learns more later (the
    portal) emits ``status_changed`` with the final word."""

    layer: Layer = "command"
    activated = Signal()
    status_changed = Signal(object)  # HotkeyStatus

    def register(self, chord: Chord) -> HotkeyStatus:
        raise NotImplementedError

    def unregister(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release the native resources for good (the X connection, the D-Bus session)."""
        self.unregister()


class CommandBackend(HotkeyBackend):
    """No native grab: only ``hivetray toggle-chat`` (offscreen, unknown platforms)."""

    layer: Layer = "command"

    def __init__(self, reason: str = "no global shortcut on this platform") -> None:
        super().__init__()
        self.reason = reason

    def register(self, chord: Chord) -> HotkeyStatus:
        return command_status(str(chord), self.reason)

    def unregister(self) -> None:
        return None
