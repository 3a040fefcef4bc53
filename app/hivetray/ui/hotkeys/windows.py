"""Windows layer: ``RegisterHotKey(NULL, id, MOD_*|MOD_NOREPEAT, vk)`` and a native event filter.

With no window handle, Windows posts ``WM_HOTKEY`` to the message queue of the thread that
registered, which is the GUI thread; Qt's event dispatcher hands every message it takes from that
queue to the application's native event filters ("windows_dispatcher_MSG"; window messages also
come as "windows_generic_MSG"), so the filter runs on the GUI thread and emits a signal. The id
tells our message from any other hotkey's. MOD_NOREPEAT: holding the keys fires once.

Nothing here touches ``user32`` at import time, so the module imports (and its seams are tested)
on any platform; ``user32`` can be injected.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QAbstractNativeEventFilter, QByteArray, QCoreApplication

from hivetray.ui.hotkeys.base import (
    HotkeyBackend,
    HotkeyStatus,
    Layer,
    bind_advice,
    conflict_status,
)
from hivetray.ui.hotkeys.keys import Chord, HotkeyError, windows_hotkey

WM_HOTKEY = 0x0312
ERROR_HOTKEY_ALREADY_REGISTERED = 1409
#: our hotkey id; an application's ids must lie in 0x0000..0xBFFF
HOTKEY_ID = 0x4854  # "HT"
EVENT_TYPES = (b"windows_dispatcher_MSG", b"windows_generic_MSG")


class MSG(ctypes.Structure):
    """The head of Win32 ``MSG`` in fixed-width types, so its layout is the same on any host."""

    _fields_ = (("hwnd", ctypes.c_void_p), ("message", ctypes.c_uint32),
                ("wParam", ctypes.c_size_t), ("lParam", ctypes.c_ssize_t),
                ("time", ctypes.c_uint32), ("pt_x", ctypes.c_int32), ("pt_y", ctypes.c_int32))


def hotkey_id_of(message_address: int) -> int | None:
    """The hotkey id of the ``WM_HOTKEY`` message at ``message_address``, else None."""
    if not message_address:
        return None
    msg = MSG.from_address(message_address)
    return int(msg.wParam) if msg.message == WM_HOTKEY else None


def _as_bytes(event_type: Any) -> bytes:
    if isinstance(event_type, QByteArray):
        return bytes(event_type.data())
    if isinstance(event_type, str):
        return event_type.encode()
    return bytes(event_type)


class HotkeyFilter(QAbstractNativeEventFilter):
    """Calls ``on_hotkey`` for our ``WM_HOTKEY`` and swallows it; lets everything else pass."""

    def __init__(self, hotkey_id: int, on_hotkey: Callable[[], None]) -> None:
        super().__init__()
        self.hotkey_id = hotkey_id
        self._on_hotkey = on_hotkey

    def nativeEventFilter(self, eventType: Any, message: Any) -> tuple[bool, int]:
        if _as_bytes(eventType) not in EVENT_TYPES:
            return False, 0
        if hotkey_id_of(int(message)) != self.hotkey_id:
            return False, 0
        self._on_hotkey()
        return True, 0


def load_user32() -> Any:
    """``user32`` with the prototypes we use (Windows only)."""
    win_dll: Any = getattr(ctypes, "WinDLL")  # noqa: B009 - absent off Windows
    user32 = win_dll("user32", use_last_error=True)
    user32.RegisterHotKey.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint,
                                      ctypes.c_uint]
    user32.RegisterHotKey.restype = ctypes.c_int
    user32.UnregisterHotKey.argtypes = [ctypes.c_void_p, ctypes.c_int]
    user32.UnregisterHotKey.restype = ctypes.c_int
    return user32


def _last_error() -> int:
    getter: Any = getattr(ctypes, "get_last_error", None)
    return int(getter()) if getter is not None else 0


class WindowsBackend(HotkeyBackend):
    layer: Layer = "windows"

    def __init__(self, user32: Any = None, last_error: Callable[[], int] = _last_error,
                 app: QCoreApplication | None = None) -> None:
        super().__init__()
        self._user32 = user32 if user32 is not None else load_user32()
        self._last_error = last_error
        self._registered = False
        self.filter = HotkeyFilter(HOTKEY_ID, self.activated.emit)
        self._app = app or QCoreApplication.instance()
        if self._app is not None:
            self._app.installNativeEventFilter(self.filter)

    def register(self, chord: Chord) -> HotkeyStatus:
        self.unregister()
        name = str(chord)
        try:
            flags, vk = windows_hotkey(chord)
        except HotkeyError as exc:
            return HotkeyStatus("windows", False, f"{exc} Or {bind_advice()}.", name)
        if self._user32.RegisterHotKey(None, HOTKEY_ID, flags, vk):
            self._registered = True
            return HotkeyStatus("windows", True, f"{name} is registered (Windows)", name)
        error = self._last_error()
        if error == ERROR_HOTKEY_ALREADY_REGISTERED:
            return conflict_status("windows", name, "Windows: hotkey already registered")
        return HotkeyStatus("windows", False, f"{name} could not be registered (Windows error "
                            f"{error}); choose another shortcut or {bind_advice()}", name)

    def unregister(self) -> None:
        if self._registered:
            self._user32.UnregisterHotKey(None, HOTKEY_ID)
            self._registered = False

    def close(self) -> None:
        self.unregister()
        if self._app is not None:
            self._app.removeNativeEventFilter(self.filter)
            self._app = None
