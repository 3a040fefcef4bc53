"""macOS layer: Carbon ``RegisterEventHotKey`` with a handler installed on the application event
target (``InstallApplicationEventHandler`` is a C macro, so we call ``InstallEventHandler`` with
``GetApplicationEventTarget()``), all through ctypes.

Carbon hot keys still work in sandboxed and non-sandboxed apps without the Accessibility
permission that a CGEventTap would need, which is why this API rather than a newer one. The
handler is a C callback entered from the Cocoa event loop: it only checks the hot key id and emits
a bridge signal connected with a *queued* connection, so the app's slots run after Carbon has
returned, never inside its callback.

Nothing loads Carbon at import time; the library can be injected, which is how the seams are
tested on Linux.
"""

from __future__ import annotations

import ctypes
import logging
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal

from hivetray.ui.hotkeys.base import (
    HotkeyBackend,
    HotkeyStatus,
    Layer,
    bind_advice,
    conflict_status,
)
from hivetray.ui.hotkeys.keys import (
    OPTION_KEY,
    SHIFT_KEY,
    Chord,
    HotkeyError,
    mac_hotkey,
    mac_label,
)

log = logging.getLogger(__name__)
CARBON_PATH = "/System/Library/Frameworks/Carbon.framework/Carbon"


def fourcc(code: str) -> int:
    """Apple's four-character codes as the UInt32 the headers use ('keyb' → 0x6B657962)."""
    raw = code.encode("ascii")
    assert len(raw) == 4, code
    return int.from_bytes(raw, "big")


K_EVENT_CLASS_KEYBOARD = fourcc("keyb")
K_EVENT_HOT_KEY_PRESSED = 5
K_EVENT_PARAM_DIRECT_OBJECT = fourcc("----")
TYPE_EVENT_HOT_KEY_ID = fourcc("hkid")
HOTKEY_SIGNATURE = fourcc("HvTr")
HOTKEY_ID = 1
NO_ERR = 0
EVENT_NOT_HANDLED_ERR = -9874
EVENT_HOT_KEY_EXISTS_ERR = -9878
EVENT_HOT_KEY_INVALID_ERR = -9879


class EventTypeSpec(ctypes.Structure):
    _fields_ = (("eventClass", ctypes.c_uint32), ("eventKind", ctypes.c_uint32))


class EventHotKeyID(ctypes.Structure):
    _fields_ = (("signature", ctypes.c_uint32), ("id", ctypes.c_uint32))


#: OSStatus (*)(EventHandlerCallRef, EventRef, void *userData)
EventHandlerProc = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p,
                                    ctypes.c_void_p)


def load_carbon() -> Any:
    lib = ctypes.CDLL(CARBON_PATH)
    vp, u32 = ctypes.c_void_p, ctypes.c_uint32
    sigs: dict[str, tuple[Any, list[Any]]] = {
        "GetApplicationEventTarget": (vp, []),
        "InstallEventHandler": (ctypes.c_int32, [vp, EventHandlerProc, ctypes.c_ulong,
                                                 ctypes.POINTER(EventTypeSpec), vp,
                                                 ctypes.POINTER(vp)]),
        "RemoveEventHandler": (ctypes.c_int32, [vp]),
        "RegisterEventHotKey": (ctypes.c_int32, [u32, u32, EventHotKeyID, vp, u32,
                                                 ctypes.POINTER(vp)]),
        "UnregisterEventHotKey": (ctypes.c_int32, [vp]),
        "GetEventParameter": (ctypes.c_int32, [vp, u32, u32, ctypes.POINTER(u32),
                                               ctypes.c_ulong, ctypes.POINTER(ctypes.c_ulong),
                                               ctypes.POINTER(EventHotKeyID)]),
    }
    for name, (restype, argtypes) in sigs.items():
        func = getattr(lib, name)
        func.restype, func.argtypes = restype, argtypes
    return lib


class _Bridge(QObject):
    pressed = Signal()


class MacBackend(HotkeyBackend):
    layer: Layer = "macos"

    def __init__(self, carbon: Any = None) -> None:
        super().__init__()
        self._carbon = carbon if carbon is not None else load_carbon()
        self._bridge = _Bridge()
        self._bridge.pressed.connect(self.activated, Qt.ConnectionType.QueuedConnection)
        self._hotkey = ctypes.c_void_p()
        self._handler_ref = ctypes.c_void_p()
        self._proc = EventHandlerProc(self._on_event)  # kept alive as long as it is installed
        spec = EventTypeSpec(K_EVENT_CLASS_KEYBOARD, K_EVENT_HOT_KEY_PRESSED)
        status = self._carbon.InstallEventHandler(
            self._carbon.GetApplicationEventTarget(), self._proc, 1, ctypes.pointer(spec), None,
            ctypes.pointer(self._handler_ref))
        if status != NO_ERR:
            raise OSError(f"InstallEventHandler failed (OSStatus {status})")

    def register(self, chord: Chord) -> HotkeyStatus:
        self.unregister()
        name = str(chord)
        try:
            keycode, modifiers = mac_hotkey(chord)
        except HotkeyError as exc:
            return HotkeyStatus("macos", False, f"{exc} Or {bind_advice()}.", name)
        hotkey = ctypes.c_void_p()
        status = self._carbon.RegisterEventHotKey(
            keycode, modifiers, EventHotKeyID(HOTKEY_SIGNATURE, HOTKEY_ID),
            self._carbon.GetApplicationEventTarget(), 0, ctypes.pointer(hotkey))
        if status == NO_ERR:
            self._hotkey = hotkey
            return HotkeyStatus("macos", True, f"{mac_label(chord)} ({name}) is registered "
                                "(macOS)", name)
        if status == EVENT_HOT_KEY_EXISTS_ERR:
            return conflict_status("macos", name, "macOS: hot key already registered")
        hint = ""
        if modifiers in (OPTION_KEY, OPTION_KEY | SHIFT_KEY):
            hint = " macOS 15 and later refuse shortcuts whose only modifiers are Option/Shift."
        return HotkeyStatus("macos", False, f"{name} could not be registered (macOS OSStatus "
                            f"{status}).{hint} Choose another shortcut or {bind_advice()}", name)

    def unregister(self) -> None:
        if self._hotkey:
            self._carbon.UnregisterEventHotKey(self._hotkey)
            self._hotkey = ctypes.c_void_p()

    def close(self) -> None:
        self.unregister()
        if self._handler_ref:
            self._carbon.RemoveEventHandler(self._handler_ref)
            self._handler_ref = ctypes.c_void_p()

    def _on_event(self, _call_ref: int | None, event: int | None, _user_data: int | None) -> int:
        """Carbon's callback: never raise into C; hand over to Qt through the queued signal."""
        try:
            hotkey_id = EventHotKeyID()
            status = self._carbon.GetEventParameter(
                event, K_EVENT_PARAM_DIRECT_OBJECT, TYPE_EVENT_HOT_KEY_ID, None,
                ctypes.sizeof(EventHotKeyID), None, ctypes.pointer(hotkey_id))
            if status != NO_ERR or (hotkey_id.signature, hotkey_id.id) != (HOTKEY_SIGNATURE,
                                                                            HOTKEY_ID):
                return EVENT_NOT_HANDLED_ERR
            self._bridge.pressed.emit()
            return NO_ERR
        except Exception:  # pragma: no cover - defensive: an exception cannot cross into C
            log.exception("hot key callback failed")
            return EVENT_NOT_HANDLED_ERR
