"""HotkeyManager: the layer chosen from Qt's platform name, fallbacks, and the status texts the
settings dialog and the tray show. Native layers are replaced by fakes here."""

from __future__ import annotations

import sys

import pytest
from pytestqt.qtbot import QtBot

from hivetray.ui.hotkeys import (
    TOGGLE_COMMAND,
    HotkeyManager,
    HotkeyStatus,
    Layer,
    layer_for_platform,
    toggle_command,
)
from hivetray.ui.hotkeys.base import HotkeyBackend, conflict_status
from hivetray.ui.hotkeys.keys import Chord


class FakeBackend(HotkeyBackend):
    def __init__(self, layer: Layer, conflict: bool = False) -> None:
        super().__init__()
        self.layer = layer
        self.conflict = conflict
        self.registered: list[str] = []
        self.unregistered = 0
        self.closed = False

    def register(self, chord: Chord) -> HotkeyStatus:
        self.registered.append(str(chord))
        if self.conflict:
            return conflict_status(self.layer, str(chord), "fake")
        return HotkeyStatus(self.layer, True, f"{chord} is grabbed (fake)", str(chord))

    def unregister(self) -> None:
        self.unregistered += 1

    def close(self) -> None:
        self.closed = True


def fakes(made: list[FakeBackend], conflict: bool = False) -> dict[Layer, object]:
    def factory(layer: Layer):  # type: ignore[no-untyped-def]
        def make() -> FakeBackend:
            made.append(FakeBackend(layer, conflict))
            return made[-1]
        return make

    return {layer: factory(layer) for layer in ("x11", "windows", "macos", "portal", "command")}


@pytest.mark.parametrize(("platform", "layer"), [
    ("xcb", "x11"), ("wayland", "portal"), ("wayland-egl", "command"), ("windows", "windows"),
    ("windows:darkmode=2", "windows"), ("cocoa", "macos"), ("offscreen", "command"),
    ("minimal", "command"), ("eglfs", "command"), ("", "command"),
])
def test_layer_for_platform(platform: str, layer: Layer) -> None:
    assert layer_for_platform(platform) == layer


@pytest.mark.parametrize(("platform", "layer"), [
    ("xcb", "x11"), ("wayland", "portal"), ("windows", "windows"), ("cocoa", "macos")])
def test_each_platform_gets_its_backend(qapp: object, platform: str, layer: Layer) -> None:
    made: list[FakeBackend] = []
    manager = HotkeyManager(platform_name=platform, factories=fakes(made))  # type: ignore[arg-type]
    status = manager.register("alt+ctrl+space")
    assert [b.layer for b in made] == [layer]
    assert made[0].registered == ["Ctrl+Alt+Space"]
    assert status == manager.status == HotkeyStatus(layer, True, "Ctrl+Alt+Space is grabbed "
                                                    "(fake)", "Ctrl+Alt+Space")


def test_offscreen_uses_the_command(qapp: object) -> None:
    manager = HotkeyManager()  # the test suite runs on the offscreen platform
    assert manager.platform_name == "offscreen" and manager.layer == "command"
    status = manager.register("Ctrl+Alt+Space")
    assert status == HotkeyStatus(
        "command", False, "no global shortcut on this platform: bind `hivetray toggle-chat` in "
        "your desktop's keyboard shortcut settings", "Ctrl+Alt+Space")


def test_a_layer_that_cannot_load_falls_back_to_the_command(qapp: object) -> None:
    def broken() -> HotkeyBackend:
        raise OSError("libX11.so.6: cannot open shared object file")

    manager = HotkeyManager(platform_name="xcb", factories={"x11": broken})
    status = manager.register("Ctrl+Alt+Space")
    assert status.layer == "command" and not status.ok
    assert status.message == ("the x11 hotkey layer is unavailable (libX11.so.6: cannot open "
                              "shared object file): bind `hivetray toggle-chat` in your "
                              "desktop's keyboard shortcut settings")


def test_a_layer_that_raises_while_registering_is_reported(
        qapp: object, caplog: pytest.LogCaptureFixture) -> None:
    class Exploding(FakeBackend):
        def register(self, chord: Chord) -> HotkeyStatus:
            raise RuntimeError("boom")

    manager = HotkeyManager(platform_name="cocoa", factories={"macos": lambda: Exploding("macos")})
    status = manager.register("Ctrl+Alt+Space")
    assert (status.layer, status.ok) == ("macos", False)
    assert "the macos hotkey layer failed (boom)" in status.message
    assert TOGGLE_COMMAND in status.message
    assert "hotkey layer macos failed" in caplog.text  # logged with its traceback
    caplog.clear()  # an expected warning here


def test_conflict_message(qapp: object) -> None:
    made: list[FakeBackend] = []
    manager = HotkeyManager(platform_name="xcb", factories=fakes(made, conflict=True))  # type: ignore[arg-type]
    status = manager.register("Ctrl+Alt+Space")
    assert status.conflict and not status.ok
    assert status.message == (
        "Ctrl+Alt+Space is taken by another program (fake); choose another shortcut or bind "
        "`hivetray toggle-chat` in your desktop's keyboard shortcut settings")


def test_a_bad_sequence_is_a_status_not_an_exception(qapp: object) -> None:
    made: list[FakeBackend] = []
    manager = HotkeyManager(platform_name="xcb", factories=fakes(made))  # type: ignore[arg-type]
    status = manager.register("Ctrl+Alt+Banana")
    assert not status.ok and status.layer == "x11" and status.sequence == "Ctrl+Alt+Banana"
    assert status.message.startswith("'Ctrl+Alt+Banana': 'Banana' is not a key")
    assert status.message.endswith("Until then, bind `hivetray toggle-chat` in your desktop's "
                                   "keyboard shortcut settings.")
    assert made == []  # nothing native was touched


def test_register_again_replaces_and_reuses_the_backend(qapp: object, qtbot: QtBot) -> None:
    made: list[FakeBackend] = []
    manager = HotkeyManager(platform_name="xcb", factories=fakes(made))  # type: ignore[arg-type]
    seen: list[HotkeyStatus] = []
    manager.status_changed.connect(seen.append)
    manager.register("Ctrl+Alt+Space")
    manager.register("Meta+Shift+K")
    assert len(made) == 1 and made[0].registered == ["Ctrl+Alt+Space", "Meta+Shift+K"]
    assert made[0].unregistered == 1
    assert [s.sequence for s in seen] == ["Ctrl+Alt+Space", "Meta+Shift+K"]
    manager.unregister()
    assert manager.status == HotkeyStatus("x11", False, "no hotkey registered")
    manager.close()
    assert made[0].closed and manager.backend is None


def test_activation_and_late_status_reach_the_manager_as_signals(qapp: object,
                                                                qtbot: QtBot) -> None:
    made: list[FakeBackend] = []
    manager = HotkeyManager(platform_name="wayland", factories=fakes(made))  # type: ignore[arg-type]
    manager.register("Ctrl+Alt+Space")
    with qtbot.waitSignal(manager.activated, timeout=1000):
        made[0].activated.emit()
    later = HotkeyStatus("portal", True, "bound by the desktop", "Ctrl+Alt+Space")
    with qtbot.waitSignal(manager.status_changed, timeout=1000) as blocker:
        made[0].status_changed.emit(later)
    assert blocker.args == [later] and manager.status == later


def test_toggle_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name: "/usr/bin/hivetray")
    assert toggle_command() == "hivetray toggle-chat"
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert toggle_command().endswith(" -m hivetray toggle-chat")
    assert sys.executable in toggle_command()
    monkeypatch.setattr(sys, "frozen", True, raising=False)  # a packaged build
    monkeypatch.setattr(sys, "executable", "/opt/Hive Tray/hivetray")
    monkeypatch.delenv("APPIMAGE", raising=False)
    assert toggle_command() == "'/opt/Hive Tray/hivetray' toggle-chat"
