"""X11 layer: ``XGrabKey`` on the root window through libX11 and ctypes, on a connection of our
own, read on the GUI thread through a ``QSocketNotifier`` (no thread, no polling).

Why this shape:

* Qt's xcb plugin offers no global grab, and its connection is not ours to read, so we open a
  second one with ``XOpenDisplay``.
* A grab is per modifier state: with Caps Lock or Num Lock on the server reports extra modifier
  bits, so the key is grabbed four times (none, Lock, NumLock, both). The Num Lock bit is looked
  up in the modifier map (Mod2 on nearly every keymap).
* A key grabbed by another client fails with ``BadAccess``, which Xlib reports asynchronously
  to a process-wide error handler. We install ours only around the grab requests plus
  ``XSync`` (so every error has arrived), then give Qt's handler back: the answer is synchronous.
* Passive grabs deliver the key events to the grabbing client whatever its event masks, so no
  ``XSelectInput`` is needed; selecting KeyPress on the root would only feed us keystrokes meant
  for other windows.
* Detectable auto-repeat (XKB) turns a held key into KeyPress, KeyPress, ... without releases,
  so holding the hotkey fires once, like Windows' MOD_NOREPEAT.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from typing import Any

from PySide6.QtCore import QSocketNotifier

from hivetray.ui.hotkeys.base import (
    HotkeyBackend,
    HotkeyStatus,
    Layer,
    bind_advice,
    conflict_status,
)
from hivetray.ui.hotkeys.keys import X_LOCK, X_MOD2, Chord, x11_grab, x11_lock_variants

log = logging.getLogger(__name__)

KEY_PRESS, KEY_RELEASE, MAPPING_NOTIFY = 2, 3, 34
BAD_ACCESS = 10
GRAB_MODE_ASYNC = 1
NUM_LOCK_KEYSYM = 0xFF7F
_C = ctypes
ptr = _C.c_void_p


class XKeyEvent(_C.Structure):
    _fields_ = (("type", _C.c_int), ("serial", _C.c_ulong), ("send_event", _C.c_int),
                ("display", ptr), ("window", _C.c_ulong), ("root", _C.c_ulong),
                ("subwindow", _C.c_ulong), ("time", _C.c_ulong), ("x", _C.c_int),
                ("y", _C.c_int), ("x_root", _C.c_int), ("y_root", _C.c_int),
                ("state", _C.c_uint), ("keycode", _C.c_uint), ("same_screen", _C.c_int))


class XMappingEvent(_C.Structure):
    _fields_ = (("type", _C.c_int), ("serial", _C.c_ulong), ("send_event", _C.c_int),
                ("display", ptr), ("window", _C.c_ulong), ("request", _C.c_int),
                ("first_keycode", _C.c_int), ("count", _C.c_int))


class XEvent(_C.Union):
    _fields_ = (("type", _C.c_int), ("xkey", XKeyEvent), ("xmapping", XMappingEvent),
                ("pad", _C.c_long * 24))


class XErrorEvent(_C.Structure):
    _fields_ = (("type", _C.c_int), ("display", ptr), ("resourceid", _C.c_ulong),
                ("serial", _C.c_ulong), ("error_code", _C.c_ubyte),
                ("request_code", _C.c_ubyte), ("minor_code", _C.c_ubyte))


class XModifierKeymap(_C.Structure):
    _fields_ = (("max_keypermod", _C.c_int), ("modifiermap", _C.POINTER(_C.c_ubyte)))


XErrorHandler = _C.CFUNCTYPE(_C.c_int, ptr, _C.POINTER(XErrorEvent))
#: errors seen while our handler was installed: (display address, error code, request code)
_errors: list[tuple[int, int, int]] = []


def _record_error(display: int | None, event: Any) -> int:
    err = event.contents
    _errors.append((display or 0, int(err.error_code), int(err.request_code)))
    return 0


_ERROR_HANDLER = XErrorHandler(_record_error)  # module-level: must outlive every installation


def load_xlib() -> Any:
    """libX11 with the prototypes we use; OSError when it is not installed."""
    x = _C.CDLL(ctypes.util.find_library("X11") or "libX11.so.6")
    sigs: dict[str, tuple[Any, list[Any]]] = {
        "XOpenDisplay": (ptr, [_C.c_char_p]),
        "XCloseDisplay": (_C.c_int, [ptr]),
        "XDefaultRootWindow": (_C.c_ulong, [ptr]),
        "XConnectionNumber": (_C.c_int, [ptr]),
        "XKeysymToKeycode": (_C.c_ubyte, [ptr, _C.c_ulong]),
        "XGrabKey": (_C.c_int, [ptr, _C.c_int, _C.c_uint, _C.c_ulong, _C.c_int, _C.c_int,
                                _C.c_int]),
        "XUngrabKey": (_C.c_int, [ptr, _C.c_int, _C.c_uint, _C.c_ulong]),
        "XSync": (_C.c_int, [ptr, _C.c_int]),
        "XPending": (_C.c_int, [ptr]),
        "XNextEvent": (_C.c_int, [ptr, _C.POINTER(XEvent)]),
        "XSetErrorHandler": (XErrorHandler, [XErrorHandler]),
        "XGetModifierMapping": (_C.POINTER(XModifierKeymap), [ptr]),
        "XFreeModifiermap": (_C.c_int, [_C.POINTER(XModifierKeymap)]),
        "XkbSetDetectableAutoRepeat": (_C.c_int, [ptr, _C.c_int, _C.POINTER(_C.c_int)]),
        "XRefreshKeyboardMapping": (_C.c_int, [_C.POINTER(XMappingEvent)]),
    }
    for name, (restype, argtypes) in sigs.items():
        func = getattr(x, name)
        func.restype, func.argtypes = restype, argtypes
    return x


class X11Backend(HotkeyBackend):
    """Grabs one chord on the root window of ``display_name`` (default: ``$DISPLAY``)."""

    layer: Layer = "x11"

    def __init__(self, display_name: str | None = None) -> None:
        super().__init__()
        self._x = load_xlib()
        self._dpy: int | None = self._x.XOpenDisplay(display_name.encode() if display_name
                                                     else None)
        if not self._dpy:
            raise OSError(f"cannot open X display {display_name or os.environ.get('DISPLAY')!r}")
        self._root = int(self._x.XDefaultRootWindow(self._dpy))
        self.numlock_mask = self._find_numlock_mask()
        supported = _C.c_int(0)
        self._x.XkbSetDetectableAutoRepeat(self._dpy, 1, _C.byref(supported))
        self._chord: Chord | None = None
        self._grab: tuple[int, int] | None = None  # (keycode, modifier mask)
        self._down = False
        #: modifier state of the last activation (tests check the lock bits)
        self.last_state = 0
        #: auto-repeated presses swallowed while the hotkey was held
        self.repeats_ignored = 0
        fd = int(self._x.XConnectionNumber(self._dpy))
        self._notifier = QSocketNotifier(fd, QSocketNotifier.Type.Read, self)
        self._notifier.activated.connect(self._drain)

    # -- HotkeyBackend ----------------------------------------------------------------------------
    def register(self, chord: Chord) -> HotkeyStatus:
        self.unregister()
        status = self._grab_chord(chord)
        if status.ok:
            self._chord = chord
        self._drain()  # XSync may have queued events the socket notifier will not announce
        return status

    def unregister(self) -> None:
        if self._grab is not None and self._dpy:
            keycode, mask = self._grab
            self._with_errors(lambda: [self._x.XUngrabKey(self._dpy, keycode, m, self._root)
                                       for m in x11_lock_variants(mask, self.numlock_mask)])
        self._grab, self._chord, self._down = None, None, False

    def close(self) -> None:
        self.unregister()
        self._notifier.setEnabled(False)
        if self._dpy:
            self._x.XCloseDisplay(self._dpy)
            self._dpy = None

    # -- grabbing ---------------------------------------------------------------------------------
    def _grab_chord(self, chord: Chord) -> HotkeyStatus:
        name = str(chord)
        keysym, mask = x11_grab(chord)
        keycode = int(self._x.XKeysymToKeycode(self._dpy, keysym))
        if keycode == 0:
            return HotkeyStatus("x11", False, f"{name}: the key {chord.key.name} is not on this "
                                f"keyboard layout (X11); choose another shortcut or "
                                f"{bind_advice()}", name)
        variants = x11_lock_variants(mask, self.numlock_mask)
        errors = self._with_errors(lambda: [
            self._x.XGrabKey(self._dpy, keycode, m, self._root, 0, GRAB_MODE_ASYNC,
                             GRAB_MODE_ASYNC) for m in variants])
        if errors:
            # undo the variants that did succeed: a half grab would fire only with some locks
            self._with_errors(lambda: [self._x.XUngrabKey(self._dpy, keycode, m, self._root)
                                       for m in variants])
            if BAD_ACCESS in errors:
                return conflict_status("x11", name, "X11 BadAccess")
            return HotkeyStatus("x11", False, f"{name} could not be grabbed (X11 error "
                                f"{sorted(set(errors))}); choose another shortcut or "
                                f"{bind_advice()}", name)
        self._grab = (keycode, mask)
        message = f"{name} is grabbed (X11)"
        if os.environ.get("WAYLAND_DISPLAY"):
            message += "; under XWayland it works only while an X11 window has focus"
        return HotkeyStatus("x11", True, message, name)

    def _with_errors(self, requests: Any) -> list[int]:
        """Run X requests with our error handler installed and XSync before restoring the old
        one: the error codes this display received for them (BadAccess = 10)."""
        previous = self._x.XSetErrorHandler(_ERROR_HANDLER)
        try:
            requests()
            self._x.XSync(self._dpy, 0)
        finally:
            self._x.XSetErrorHandler(previous)
        mine = [code for display, code, _request in _errors if display == self._dpy]
        _errors.clear()
        return mine

    def _find_numlock_mask(self) -> int:
        keycode = int(self._x.XKeysymToKeycode(self._dpy, NUM_LOCK_KEYSYM))
        modmap = self._x.XGetModifierMapping(self._dpy)
        if not keycode or not modmap:
            return X_MOD2
        try:
            per = modmap.contents.max_keypermod
            codes = modmap.contents.modifiermap
            for index in range(8):
                if any(codes[index * per + j] == keycode for j in range(per)):
                    return 1 << index
        finally:
            self._x.XFreeModifiermap(modmap)
        return X_MOD2

    # -- events -----------------------------------------------------------------------------------
    def _drain(self) -> None:
        if not self._dpy:
            return
        event = XEvent()
        while self._x.XPending(self._dpy) > 0:
            self._x.XNextEvent(self._dpy, _C.byref(event))
            self._handle(event)

    def _handle(self, event: XEvent) -> None:
        kind = event.type
        if kind == MAPPING_NOTIFY:
            self._x.XRefreshKeyboardMapping(_C.byref(event.xmapping))
            if event.xmapping.request in (0, 1) and self._chord is not None:
                self._regrab(self._chord)  # the layout changed: the key may have moved
            return
        if self._grab is None or kind not in (KEY_PRESS, KEY_RELEASE):
            return
        keycode, mask = self._grab
        key = event.xkey
        if key.keycode != keycode:
            return
        if kind == KEY_RELEASE:
            self._down = False
            return
        if self._down:
            self.repeats_ignored += 1  # an auto-repeat of the key still held
            return
        if (key.state & 0xFF & ~(X_LOCK | self.numlock_mask)) != mask:
            return
        self._down = True
        self.last_state = int(key.state)
        self.activated.emit()

    def _regrab(self, chord: Chord) -> None:
        old = self._grab
        self.unregister()
        self.numlock_mask = self._find_numlock_mask()
        status = self._grab_chord(chord)
        if status.ok:
            self._chord = chord
        if self._grab != old or not status.ok:
            log.info("keyboard mapping changed: %s", status.message)
            self.status_changed.emit(status)
