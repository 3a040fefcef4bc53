"""The global hotkey, in layers: a native grab where the platform allows one (X11 XGrabKey,
Windows RegisterHotKey, macOS RegisterEventHotKey), the XDG GlobalShortcuts portal on Wayland,
and always ``hivetray toggle-chat`` for the desktop's own shortcut settings.

:class:`HotkeyManager` picks the layer from Qt's platform plugin, registers the sequence from the
config and says in :attr:`HotkeyManager.status` which layer carries it and whether it works, so
the UI never fails silently. Platform modules are imported only on their platform.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QGuiApplication

from hivetray.ui.hotkeys.base import (
    TOGGLE_COMMAND,
    CommandBackend,
    HotkeyBackend,
    HotkeyStatus,
    Layer,
    bind_advice,
    toggle_command,
)
from hivetray.ui.hotkeys.keys import HotkeyError, normalize, parse

__all__ = ["TOGGLE_COMMAND", "HotkeyError", "HotkeyManager", "HotkeyStatus", "Layer",
           "layer_for_platform", "normalize", "toggle_command"]

log = logging.getLogger(__name__)
BackendFactory = Callable[[], HotkeyBackend]

_PLATFORM_LAYERS: dict[str, Layer] = {"xcb": "x11", "wayland": "portal", "windows": "windows",
                                      "cocoa": "macos"}


def layer_for_platform(platform_name: str) -> Layer:
    """Qt platform plugin name → layer; offscreen, minimal, eglfs, ... → the command only."""
    return _PLATFORM_LAYERS.get(platform_name.split(":", 1)[0], "command")


def _x11() -> HotkeyBackend:
    from hivetray.ui.hotkeys.x11 import X11Backend

    return X11Backend()


def _windows() -> HotkeyBackend:
    from hivetray.ui.hotkeys.windows import WindowsBackend

    return WindowsBackend()


def _macos() -> HotkeyBackend:
    from hivetray.ui.hotkeys.macos import MacBackend

    return MacBackend()


def _portal() -> HotkeyBackend:
    from hivetray.ui.hotkeys.portal import PortalBackend

    return PortalBackend()


DEFAULT_FACTORIES: dict[Layer, BackendFactory] = {
    "x11": _x11, "windows": _windows, "macos": _macos, "portal": _portal,
    "command": CommandBackend,
}


class HotkeyManager(QObject):
    """Owns the one global hotkey of the app.

    ``activated`` fires on the GUI thread each time the hotkey is pressed; ``status_changed``
    whenever :attr:`status` changes (the portal answers later than ``register`` returns).
    """

    activated = Signal()
    status_changed = Signal(object)  # HotkeyStatus

    def __init__(self, parent: QObject | None = None, *, platform_name: str | None = None,
                 factories: Mapping[Layer, BackendFactory] | None = None) -> None:
        super().__init__(parent)
        name = platform_name if platform_name is not None else QGuiApplication.platformName()
        self.platform_name = name
        self.layer: Layer = layer_for_platform(name)
        self._factories = dict(factories or DEFAULT_FACTORIES)
        self._backend: HotkeyBackend | None = None
        self._status = HotkeyStatus(self.layer, False, "no hotkey registered yet")

    @property
    def status(self) -> HotkeyStatus:
        return self._status

    @property
    def backend(self) -> HotkeyBackend | None:
        """The native layer in use (None before the first ``register``)."""
        return self._backend

    def register(self, sequence: str) -> HotkeyStatus:
        """Replace the current hotkey by ``sequence``; never raises: a bad sequence, a missing
        native layer or a conflict all come back as a status with ``ok=False``."""
        if self._backend is not None:
            self._backend.unregister()  # no interim "unregistered" status: the UI would flicker
        try:
            chord = parse(sequence)
        except HotkeyError as exc:
            return self._set(HotkeyStatus(self.layer, False, f"{exc} Until then, {bind_advice()}.",
                                          sequence.strip()))
        backend = self._ensure_backend()
        try:
            status = backend.register(chord)
        except Exception as exc:  # a native layer must never take the app down
            log.warning("hotkey layer %s failed", self.layer, exc_info=True)
            status = HotkeyStatus(self.layer, False, f"{chord}: the {self.layer} hotkey layer "
                                  f"failed ({exc}); {bind_advice()}", str(chord))
        return self._set(status)

    def unregister(self) -> None:
        if self._backend is not None:
            self._backend.unregister()
            if self._status.sequence:
                self._set(HotkeyStatus(self.layer, False, "no hotkey registered"))

    def close(self) -> None:
        """Ungrab and release the native connection (call at quit)."""
        if self._backend is not None:
            self._backend.close()
            self._backend.activated.disconnect(self.activated)
            self._backend.status_changed.disconnect(self._set)
            self._backend = None

    def _ensure_backend(self) -> HotkeyBackend:
        if self._backend is None:
            try:
                backend = self._factories[self.layer]()
            except Exception as exc:  # e.g. a missing system library
                log.info("hotkey layer %s unavailable: %s", self.layer, exc)
                backend = CommandBackend(f"the {self.layer} hotkey layer is unavailable ({exc})")
            backend.activated.connect(self.activated)
            backend.status_changed.connect(self._set)
            self._backend = backend
        return self._backend

    def _set(self, status: HotkeyStatus) -> HotkeyStatus:
        if status != self._status:
            self._status = status
            log.info("hotkey: %s", status.message)
            self.status_changed.emit(status)
        return status
