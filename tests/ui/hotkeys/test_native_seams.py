"""The Windows and macOS layers cannot run here; their seams can: the calls they make into a
fake user32/Carbon, the statuses they build, the Windows filter parsing a real MSG layout and the
Carbon callback reaching the ``activated`` signal through a queued connection."""

from __future__ import annotations

import ctypes
from typing import Any

import pytest
from PySide6.QtCore import QByteArray, QCoreApplication
from pytestqt.qtbot import QtBot

from hivetray.ui.hotkeys import macos, windows
from hivetray.ui.hotkeys.keys import parse


# -- Windows ---------------------------------------------------------------------------------------
class FakeUser32:
    def __init__(self, ok: bool = True) -> None:
        self.ok = ok
        self.calls: list[tuple[Any, ...]] = []

    def RegisterHotKey(self, hwnd: Any, ident: int, flags: int, vk: int) -> int:
        self.calls.append(("register", hwnd, ident, flags, vk))
        return 1 if self.ok else 0

    def UnregisterHotKey(self, hwnd: Any, ident: int) -> int:
        self.calls.append(("unregister", hwnd, ident))
        return 1


def test_windows_registers_with_norepeat_on_the_thread_queue(qapp: QCoreApplication) -> None:
    user32 = FakeUser32()
    backend = windows.WindowsBackend(user32=user32)
    status = backend.register(parse("Ctrl+Alt+Space"))
    assert (status.layer, status.ok, status.message) == (
        "windows", True, "Ctrl+Alt+Space is registered (Windows)")
    # hwnd NULL: WM_HOTKEY goes to the GUI thread's queue; MOD_CONTROL|MOD_ALT|MOD_NOREPEAT
    assert user32.calls == [("register", None, windows.HOTKEY_ID, 0x4003, 0x20)]
    backend.register(parse("Meta+Shift+K"))
    assert user32.calls[1:] == [("unregister", None, windows.HOTKEY_ID),
                                ("register", None, windows.HOTKEY_ID, 0x400C, 0x4B)]
    backend.close()
    assert user32.calls[-1] == ("unregister", None, windows.HOTKEY_ID)
    backend.close()  # idempotent
    assert len(user32.calls) == 4


def test_windows_conflict_and_other_errors(qapp: QCoreApplication) -> None:
    backend = windows.WindowsBackend(user32=FakeUser32(ok=False), last_error=lambda: 1409)
    status = backend.register(parse("Ctrl+Alt+Space"))
    assert status.conflict and not status.ok
    assert status.message.startswith("Ctrl+Alt+Space is taken by another program (Windows: "
                                     "hotkey already registered); choose another shortcut")
    backend = windows.WindowsBackend(user32=FakeUser32(ok=False), last_error=lambda: 87)
    status = backend.register(parse("Ctrl+Alt+Space"))
    assert not status.ok and not status.conflict and "Windows error 87" in status.message
    status = backend.register(parse("Ctrl+F30"))
    assert not status.ok and "F30 has no Windows key code" in status.message
    backend.close()


def message(kind: int, wparam: int) -> windows.MSG:
    return windows.MSG(hwnd=None, message=kind, wParam=wparam, lParam=(0x20 << 16) | 0x3)


@pytest.mark.parametrize(("event_type", "kind", "wparam", "ours"), [
    (b"windows_dispatcher_MSG", windows.WM_HOTKEY, windows.HOTKEY_ID, True),
    (b"windows_generic_MSG", windows.WM_HOTKEY, windows.HOTKEY_ID, True),
    (QByteArray(b"windows_dispatcher_MSG"), windows.WM_HOTKEY, windows.HOTKEY_ID, True),
    ("windows_generic_MSG", windows.WM_HOTKEY, windows.HOTKEY_ID, True),
    (b"windows_dispatcher_MSG", windows.WM_HOTKEY, 7, False),  # someone else's hotkey id
    (b"windows_dispatcher_MSG", 0x0100, windows.HOTKEY_ID, False),  # WM_KEYDOWN
    (b"xcb_generic_event_t", windows.WM_HOTKEY, windows.HOTKEY_ID, False),
])
def test_windows_filter(qapp: QCoreApplication, qtbot: QtBot, event_type: Any, kind: int,
                        wparam: int, ours: bool) -> None:
    backend = windows.WindowsBackend(user32=FakeUser32())
    fired: list[bool] = []
    backend.activated.connect(lambda: fired.append(True))
    msg = message(kind, wparam)
    assert backend.filter.nativeEventFilter(event_type, ctypes.addressof(msg)) == (ours, 0)
    assert fired == ([True] if ours else [])
    backend.close()


def test_windows_msg_layout_and_null_message() -> None:
    # x64 MSG: hwnd 0, message 8, wParam 16, lParam 24, time 32, pt 36
    assert [getattr(windows.MSG, f).offset for f in ("message", "wParam", "lParam", "time")] \
        == [8, 16, 24, 32]
    assert windows.hotkey_id_of(0) is None


# -- macOS -----------------------------------------------------------------------------------------
class FakeCarbon:
    TARGET = 0xA11

    def __init__(self, register_status: int = 0) -> None:
        self.register_status = register_status
        self.calls: list[tuple[Any, ...]] = []
        self.proc: Any = None
        self.pressed_id = (macos.HOTKEY_SIGNATURE, macos.HOTKEY_ID)

    def GetApplicationEventTarget(self) -> int:
        return self.TARGET

    def InstallEventHandler(self, target: int, proc: Any, count: int, specs: Any,
                            user_data: Any, out_ref: Any) -> int:
        spec = specs.contents
        self.calls.append(("install", target, count, spec.eventClass, spec.eventKind))
        self.proc = proc
        out_ref.contents.value = 0xE1
        return 0

    def RemoveEventHandler(self, ref: Any) -> int:
        self.calls.append(("remove", ref.value))
        return 0

    def RegisterEventHotKey(self, code: int, mods: int, hkid: Any, target: int,
                            options: int, out_ref: Any) -> int:
        self.calls.append(("register", code, mods, hkid.signature, hkid.id, target, options))
        if self.register_status == 0:
            out_ref.contents.value = 0xB0
        return self.register_status

    def UnregisterEventHotKey(self, ref: Any) -> int:
        self.calls.append(("unregister", ref.value))
        return 0

    def GetEventParameter(self, event: Any, name: int, kind: int, actual: Any,
                          size: int, actual_size: Any, out: Any) -> int:
        assert (name, kind, size) == (macos.fourcc("----"), macos.fourcc("hkid"), 8)
        out.contents.signature, out.contents.id = self.pressed_id
        return 0


def test_fourcc() -> None:
    assert macos.K_EVENT_CLASS_KEYBOARD == 0x6B657962
    assert macos.TYPE_EVENT_HOT_KEY_ID == 0x686B6964
    assert macos.K_EVENT_PARAM_DIRECT_OBJECT == 0x2D2D2D2D


def test_macos_registers_on_the_application_target(qapp: QCoreApplication) -> None:
    carbon = FakeCarbon()
    backend = macos.MacBackend(carbon=carbon)
    assert carbon.calls == [("install", FakeCarbon.TARGET, 1, macos.K_EVENT_CLASS_KEYBOARD,
                             macos.K_EVENT_HOT_KEY_PRESSED)]
    status = backend.register(parse("Ctrl+Alt+Space"))
    assert (status.ok, status.message) == (True, "⌥⌘Space (Ctrl+Alt+Space) is registered "
                                           "(macOS)")
    assert carbon.calls[1] == ("register", 0x31, 0x900, macos.HOTKEY_SIGNATURE, macos.HOTKEY_ID,
                               FakeCarbon.TARGET, 0)
    backend.close()
    assert carbon.calls[2:] == [("unregister", 0xB0), ("remove", 0xE1)]


def test_macos_callback_reaches_activated_only_through_the_event_loop(
        qapp: QCoreApplication, qtbot: QtBot) -> None:
    carbon = FakeCarbon()
    backend = macos.MacBackend(carbon=carbon)
    backend.register(parse("Ctrl+Alt+Space"))
    fired: list[bool] = []
    backend.activated.connect(lambda: fired.append(True))
    assert carbon.proc(None, 0xEE, None) == 0  # through the real C trampoline
    assert fired == []  # queued: nothing runs inside Carbon's callback
    qtbot.waitUntil(lambda: fired == [True], timeout=1000)
    carbon.pressed_id = (macos.fourcc("othr"), 1)  # another app's hot key id
    assert carbon.proc(None, 0xEE, None) == macos.EVENT_NOT_HANDLED_ERR
    QCoreApplication.processEvents()
    assert fired == [True]
    backend.close()


@pytest.mark.parametrize(("sequence", "status", "says"), [
    ("Ctrl+Alt+Space", macos.EVENT_HOT_KEY_EXISTS_ERR,
     "Ctrl+Alt+Space is taken by another program (macOS: hot key already registered)"),
    ("Alt+Shift+K", -9868, "macOS 15 and later refuse shortcuts whose only modifiers are "
                           "Option/Shift."),
    ("Ctrl+Alt+K", -50, "could not be registered (macOS OSStatus -50)."),
    ("Ctrl+Ins", 0, "Macs have no Ins key"),
])
def test_macos_failures(qapp: QCoreApplication, sequence: str, status: int, says: str) -> None:
    backend = macos.MacBackend(carbon=FakeCarbon(register_status=status))
    result = backend.register(parse(sequence))
    assert not result.ok and says in result.message, result.message
    assert result.conflict == (status == macos.EVENT_HOT_KEY_EXISTS_ERR)
    assert "bind `hivetray toggle-chat`" in result.message
    backend.close()
