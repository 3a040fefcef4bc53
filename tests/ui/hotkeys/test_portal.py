"""The Wayland layer: the GlobalShortcuts conversation against a fake bus object (every call's
arguments, Responses, refusals, stale answers), then for real over a private ``dbus-daemon``
with a fake portal service, which proves the wire marshalling of ``a(sa{sv})``.

The fake bus passes every message through jeepney's serialiser and parser, so the portal sees
values shaped as on a real bus: variants as (signature, value) pairs, structs as tuples."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from jeepney.bus_messages import MatchRule, message_bus
from jeepney.low_level import HeaderFields, Message
from jeepney.wrappers import DBusAddress, new_signal
from PySide6.QtCore import QCoreApplication
from pytestqt.qtbot import QtBot

from hivetray.ui.hotkeys import HotkeyManager, HotkeyStatus, portal
from hivetray.ui.hotkeys.dbus_client import DBusError
from hivetray.ui.hotkeys.keys import parse
from tests.helpers.fake_portal import FakePortal, ServingConnection, private_bus

ADVICE = "bind `hivetray toggle-chat` in your desktop's keyboard shortcut settings"


class FakeBus:
    unique_name = ":1.42"

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.handlers: list[tuple[MatchRule, Callable[[Message], None]]] = []
        self.rules: list[str] = []
        self.closed = False

    def call(self, message: Message,
             on_reply: Callable[[tuple[Any, ...]], None] | None = None,
             on_error: Callable[[DBusError], None] | None = None) -> None:
        message = _through_the_wire(message)
        fields = message.header.fields
        self.calls.append(dict(destination=fields[HeaderFields.destination],
                               path=fields[HeaderFields.path],
                               interface=fields[HeaderFields.interface],
                               member=fields[HeaderFields.member],
                               signature=fields.get(HeaderFields.signature, ""),
                               body=list(message.body), on_reply=on_reply, on_error=on_error))

    def subscribe(self, rule: MatchRule, handler: Callable[[Message], None]) -> None:
        self.handlers.append((rule, handler))
        self.rules.append(rule.serialise())

    def close(self) -> None:
        self.closed = True

    def last(self, member: str) -> dict[str, Any]:
        return [c for c in self.calls if c["member"] == member][-1]

    def signal(self, path: str, interface: str, member: str, signature: str,
               body: tuple[Any, ...]) -> None:
        message = _through_the_wire(
            new_signal(DBusAddress(path, interface=interface), member, signature, body))
        for rule, handler in self.handlers:
            if rule.matches(message):
                handler(message)


def _through_the_wire(message: Message) -> Message:
    """The message as the other end parses it: jeepney refuses values that do not fit the
    signature, and gives back what a real connection would deliver."""
    return Message.from_buffer(message.serialise(serial=1))


@pytest.fixture
def rig(qapp: QCoreApplication) -> Iterator[tuple[portal.PortalBackend, FakeBus,
                                                  list[HotkeyStatus]]]:
    bus = FakeBus()
    backend = portal.PortalBackend(bus_factory=lambda: bus)
    statuses: list[HotkeyStatus] = []
    backend.status_changed.connect(statuses.append)
    yield backend, bus, statuses
    backend.close()


def unwrap(options: dict[str, tuple[str, Any]]) -> dict[str, Any]:
    assert all(isinstance(v, tuple) and v[0] == "s" for v in options.values())
    return {key: value for key, (_signature, value) in options.items()}


def test_the_full_conversation(rig: Any) -> None:
    backend, bus, statuses = rig
    status = backend.register(parse("Ctrl+Alt+Space"))
    assert status == HotkeyStatus(
        "portal", False, "Wayland: global shortcuts go through the desktop portal; asking it "
        "to bind Ctrl+Alt+Space…", "Ctrl+Alt+Space", pending=True)
    # the app id first, then listening, then the version probe
    register = bus.calls[0]
    assert (register["interface"], register["member"], register["signature"],
            register["body"]) == (portal.REGISTRY, "Register", "sa{sv}", ["hivetray", {}])
    assert bus.rules == [
        "interface='org.freedesktop.portal.Request',member='Response',type='signal'",
        "interface='org.freedesktop.portal.GlobalShortcuts',type='signal'"]
    get = bus.last("Get")
    assert (get["destination"], get["path"], get["body"]) == (
        "org.freedesktop.portal.Desktop", "/org/freedesktop/portal/desktop",
        ["org.freedesktop.portal.GlobalShortcuts", "version"])
    get["on_reply"]((("u", 1),))

    create = bus.last("CreateSession")
    assert create["interface"] == portal.SHORTCUTS and create["signature"] == "a{sv}"
    options = unwrap(create["body"][0])
    assert options == {"session_handle_token": "hivetray_session1", "handle_token": "hivetray1"}
    request = "/org/freedesktop/portal/desktop/request/1_42/hivetray1"
    create["on_reply"]((request,))
    session = "/org/freedesktop/portal/desktop/session/1_42/hivetray_session1"
    bus.signal(request, portal.REQUEST, "Response", "ua{sv}",
               (0, {"session_handle": ("o", session)}))

    bind = bus.last("BindShortcuts")
    assert bind["signature"] == "oa(sa{sv})sa{sv}"
    path, shortcuts, parent, options = bind["body"]
    assert path == session and bind["signature"][0] == "o" and parent == ""
    assert [(sid, unwrap(info)) for sid, info in shortcuts] == [
        ("toggle-chat", {"description": "Open or hide the Hivetray quick chat",
                         "preferred_trigger": "CTRL+ALT+space"})]
    assert unwrap(options) == {"handle_token": "hivetray2"}
    assert statuses == []
    bus.signal(request.replace("hivetray1", "hivetray2"), portal.REQUEST, "Response", "ua{sv}",
               (0, {"shortcuts": ("a(sa{sv})", [
                   ("toggle-chat", {"trigger_description": ("s", "Ctrl+Alt+Space")})])}))
    assert statuses == [HotkeyStatus("portal", True, "Wayland: the desktop portal bound "
                                     "Ctrl+Alt+Space", "Ctrl+Alt+Space")]

    fired: list[bool] = []
    backend.activated.connect(lambda: fired.append(True))
    activated = (portal.DESKTOP_PATH, portal.SHORTCUTS, "Activated", "osta{sv}")
    bus.signal(*activated, (session, "toggle-chat", 5, {}))
    bus.signal(*activated, (session, "other", 5, {}))
    bus.signal(*activated, ("/else", "toggle-chat", 5, {}))
    assert fired == [True]

    bus.signal(portal.DESKTOP_PATH, portal.SHORTCUTS, "ShortcutsChanged", "oa(sa{sv})",
               (session, [("toggle-chat", {"trigger_description": ("s", "Super+K")})]))
    assert statuses[-1].message == ("Wayland: the desktop portal bound Ctrl+Alt+Space (the "
                                    "desktop shows it as Super+K; change it in its settings)")
    backend.unregister()
    close = bus.last("Close")
    assert (close["path"], close["interface"]) == (session, "org.freedesktop.portal.Session")


@pytest.mark.parametrize(("error", "reason"), [
    ("org.freedesktop.DBus.Error.ServiceUnknown", "the desktop portal is not running"),
    ("org.freedesktop.DBus.Error.InvalidArgs", "this desktop's portal offers no global "
                                               "shortcuts (org.freedesktop.DBus.Error."
                                               "InvalidArgs)"),
])
def test_no_portal_falls_back_to_the_command(rig: Any, error: str, reason: str) -> None:
    backend, bus, statuses = rig
    backend.register(parse("Ctrl+Alt+Space"))
    bus.last("Get")["on_error"](DBusError(error, "nope"))
    assert statuses == [HotkeyStatus("command", False, f"Wayland: {reason}: {ADVICE}",
                                     "Ctrl+Alt+Space")]


@pytest.mark.parametrize(("code", "results", "reason"), [
    (1, {}, "the shortcut dialog was cancelled"),
    (2, {}, "the desktop portal did not bind the shortcut (failed)"),
    (0, {"shortcuts": ("a(sa{sv})", [])},
     "the desktop portal did not bind the shortcut (not in its answer)"),
])
def test_a_refusal_falls_back_to_the_command(rig: Any, code: int, results: dict[str, Any],
                                             reason: str) -> None:
    backend, bus, statuses = rig
    backend.register(parse("Ctrl+Alt+Space"))
    bus.last("Get")["on_reply"]((("u", 1),))
    base = "/org/freedesktop/portal/desktop/request/1_42/"
    bus.signal(base + "hivetray1", portal.REQUEST, "Response", "ua{sv}",
               (0, {"session_handle": ("o", "/s")}))
    bus.signal(base + "hivetray2", portal.REQUEST, "Response", "ua{sv}", (code, results))
    assert statuses == [HotkeyStatus("command", False, f"Wayland: {reason}: {ADVICE}",
                                     "Ctrl+Alt+Space")]


def test_answers_to_an_older_registration_are_ignored(rig: Any) -> None:
    backend, bus, statuses = rig
    backend.register(parse("Ctrl+Alt+Space"))
    stale = bus.last("Get")
    backend.register(parse("Meta+K"))
    stale["on_error"](DBusError("org.freedesktop.DBus.Error.ServiceUnknown"))
    stale["on_reply"]((("u", 1),))
    assert statuses == [] and not any(c["member"] == "CreateSession" for c in bus.calls)
    assert sum(c["member"] == "Register" for c in bus.calls) == 1  # one connection, one app id


def test_no_session_bus(qapp: QCoreApplication) -> None:
    def no_bus() -> FakeBus:
        raise OSError("no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is not set)")

    backend = portal.PortalBackend(bus_factory=no_bus)
    assert backend.register(parse("Ctrl+Alt+Space")) == HotkeyStatus(
        "command", False, f"Wayland: no D-Bus session bus, so no desktop portal: {ADVICE}",
        "Ctrl+Alt+Space")


# -- for real, over dbus-daemon --------------------------------------------------------------------
@pytest.fixture
def bus_address(tmp_path: Path) -> Iterator[str]:
    try:
        with private_bus(tmp_path) as address:
            yield address
    except FileNotFoundError:
        pytest.skip("dbus-daemon is not installed (Debian: dbus-daemon)")


@pytest.mark.real
def test_through_a_real_bus_with_a_fake_portal(qapp: QCoreApplication, qtbot: QtBot,
                                               bus_address: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakePortal(ServingConnection(bus_address), trigger_description="Ctrl+Alt+Space")
    fake.start()
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", bus_address)
    manager = HotkeyManager(platform_name="wayland")
    try:
        owner: list[Any] = []
        fake.conn.call(message_bus.GetNameOwner(portal.DESKTOP), on_reply=owner.extend)
        qtbot.waitUntil(lambda: bool(owner), timeout=5000)

        with qtbot.waitSignal(manager.status_changed, timeout=5000,
                              check_params_cb=lambda s: not s.pending) as blocker:
            first = manager.register("Ctrl+Alt+Space")
            assert first.pending and first.layer == "portal"
        final: HotkeyStatus = blocker.args[0]
        assert (final.layer, final.ok, final.message) == (
            "portal", True, "Wayland: the desktop portal bound Ctrl+Alt+Space")
        assert fake.registered == ["hivetray"]
        bind = fake.calls[-1]
        assert bind.member == "BindShortcuts" and bind.signature == "oa(sa{sv})sa{sv}"
        assert bind.body[1] == [("toggle-chat", {"description": ("s", portal.DESCRIPTION),
                                                 "preferred_trigger": ("s", "CTRL+ALT+space")})]
        with qtbot.waitSignal(manager.activated, timeout=5000):
            fake.press(fake.sessions[-1])

        manager.register("Meta+Shift+K")  # a new session; the old one is closed
        qtbot.waitUntil(lambda: manager.status.ok and manager.status.sequence == "Meta+Shift+K",
                        timeout=5000)
        assert fake.calls[-1].body[1][0][1]["preferred_trigger"] == ("s", "SHIFT+LOGO+k")
        qtbot.waitUntil(lambda: fake.closed == [fake.sessions[0]], timeout=5000)
    finally:
        manager.close()
        fake.conn.close()


@pytest.mark.real
def test_a_bus_without_a_portal(qapp: QCoreApplication, qtbot: QtBot, bus_address: str,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", bus_address)
    manager = HotkeyManager(platform_name="wayland")
    try:
        manager.register("Ctrl+Alt+Space")
        qtbot.waitUntil(lambda: manager.status.layer == "command", timeout=5000)
        assert manager.status.message == ("Wayland: the desktop portal is not running: "
                                          f"{ADVICE}")
    finally:
        manager.close()
