"""Wayland layer: the XDG desktop portal's GlobalShortcuts interface.

Wayland gives clients no global grab; the compositor owns shortcuts, and the portal lets an app
ask for one: ``CreateSession`` → ``BindShortcuts`` (with our preferred trigger, which the desktop
may show the user or change) → ``Activated`` signals. Each call answers at once with a request
handle and later with a ``Response`` signal on it (0 = done, 1 = the user cancelled, 2 = failed),
so ``register`` returns a *pending* status and the final word comes as ``status_changed``.

When there is no session bus, no portal, or a portal without GlobalShortcuts (GNOME before 48,
older KDE), or when the user or desktop refuses, the status falls back to the command layer and
says why. Messages are built with jeepney and sent on a private :mod:`dbus_client` connection:
the host Registry's ``Register`` (our app id) must precede every other portal call on a
connection, and Qt's own session-bus connection may already have talked to the portal (theme
settings).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from jeepney.bus_messages import MatchRule
from jeepney.low_level import HeaderFields, Message
from jeepney.wrappers import DBusAddress, new_method_call

from hivetray.autostart import APP_ID  # the basename of our .desktop file
from hivetray.ui.hotkeys.base import HotkeyBackend, HotkeyStatus, Layer, command_status
from hivetray.ui.hotkeys.dbus_client import (
    Connection,
    DBusError,
    ErrorHandler,
    ReplyHandler,
    SignalHandler,
)
from hivetray.ui.hotkeys.keys import Chord, portal_trigger

log = logging.getLogger(__name__)
DESKTOP = "org.freedesktop.portal.Desktop"
DESKTOP_PATH = "/org/freedesktop/portal/desktop"
SHORTCUTS = "org.freedesktop.portal.GlobalShortcuts"
REQUEST = "org.freedesktop.portal.Request"
SESSION = "org.freedesktop.portal.Session"
REGISTRY = "org.freedesktop.host.portal.Registry"
PROPERTIES = "org.freedesktop.DBus.Properties"
SHORTCUT_ID = "toggle-chat"
DESCRIPTION = "Open or hide the Hivetray quick chat"
RESPONSES = {1: "cancelled", 2: "failed"}
BIND_SIGNATURE = "oa(sa{sv})sa{sv}"


class PortalBus(Protocol):
    """What the portal needs of a bus connection (:class:`dbus_client.Connection`, or a fake)."""

    unique_name: str

    def call(self, message: Message, on_reply: ReplyHandler | None = None,
             on_error: ErrorHandler | None = None) -> None: ...

    def subscribe(self, rule: MatchRule, handler: SignalHandler) -> None: ...

    def close(self) -> None: ...


def request_path(unique_name: str, token: str) -> str:
    """Where the portal will put a request made with ``handle_token=token``: we listen there
    before calling, so a fast Response cannot be missed."""
    sender = unique_name.lstrip(":").replace(".", "_")
    return f"{DESKTOP_PATH}/request/{sender}/{token}"


def portal_call(interface: str, member: str, signature: str | None = None,
                body: tuple[Any, ...] = (), path: str = DESKTOP_PATH) -> Message:
    return new_method_call(DBusAddress(path, bus_name=DESKTOP, interface=interface), member,
                           signature, body)


def vardict(**values: str) -> dict[str, tuple[str, str]]:
    """An ``a{sv}`` of strings, as jeepney marshals it: each value a (signature, value) pair."""
    return {key: ("s", value) for key, value in values.items()}


def variant_value(entries: Any, key: str) -> Any:
    """One entry of a received ``a{sv}`` without its variant wrapper; None when absent."""
    entry = entries.get(key) if isinstance(entries, dict) else None
    return entry[1] if isinstance(entry, tuple) and len(entry) == 2 else None


def bind_shortcuts_body(session: str, trigger: str) -> tuple[Any, ...]:
    """BindShortcuts's arguments but the trailing options: our one shortcut, no parent window."""
    shortcut = (SHORTCUT_ID, vardict(description=DESCRIPTION, preferred_trigger=trigger))
    return (session, [shortcut], "")


class PortalBackend(HotkeyBackend):
    layer: Layer = "portal"

    def __init__(self, bus_factory: Callable[[], PortalBus] = Connection,
                 app_id: str = APP_ID) -> None:
        super().__init__()
        self._bus_factory = bus_factory
        self._app_id = app_id
        self._bus: PortalBus | None = None
        self._generation = 0
        self._tokens = 0
        self._pending: dict[str, Callable[[int, dict[str, Any]], None]] = {}
        self._session: str | None = None
        self._name = ""

    # -- HotkeyBackend ----------------------------------------------------------------------------
    def register(self, chord: Chord) -> HotkeyStatus:
        self.unregister()
        self._generation += 1
        self._name = name = str(chord)
        bus = self._connect()
        if bus is None:
            return command_status(name, "Wayland: no D-Bus session bus, so no desktop portal")
        generation = self._generation
        bus.call(portal_call(PROPERTIES, "Get", "ss", (SHORTCUTS, "version")),
                 on_reply=lambda _body: self._create_session(generation, portal_trigger(chord)),
                 on_error=lambda err: self._portal_missing(generation, err))
        return HotkeyStatus("portal", False, "Wayland: global shortcuts go through the desktop "
                            f"portal; asking it to bind {name}…", name, pending=True)

    def unregister(self) -> None:
        if self._session is not None and self._bus is not None:
            self._bus.call(portal_call(SESSION, "Close", path=self._session))
        self._session = None
        self._pending.clear()
        self._generation += 1  # answers to older requests are ignored from now on

    def close(self) -> None:
        self.unregister()
        if self._bus is not None:
            self._bus.close()
            self._bus = None

    # -- the conversation -------------------------------------------------------------------------
    def _connect(self) -> PortalBus | None:
        if self._bus is None:
            try:
                bus = self._bus_factory()
            except OSError as exc:
                log.info("no session bus: %s", exc)
                return None
            # Register must be the first portal call on this connection; older portals lack
            # it, which is fine (they identify host apps another way)
            bus.call(portal_call(REGISTRY, "Register", "sa{sv}", (self._app_id, {})),
                     on_error=lambda err: log.info("portal Registry.Register: %s", err))
            bus.subscribe(MatchRule(type="signal", interface=REQUEST, member="Response"),
                          self._on_response)
            bus.subscribe(MatchRule(type="signal", interface=SHORTCUTS),
                          self._on_shortcuts_signal)
            self._bus = bus
        return self._bus

    def _request(self, generation: int, member: str, signature: str, body: tuple[Any, ...],
                 options: dict[str, tuple[str, str]],
                 then: Callable[[int, dict[str, Any]], None]) -> None:
        """Call a request-style method; ``then(response, results)`` gets its Response."""
        assert self._bus is not None
        self._tokens += 1
        token = f"hivetray{self._tokens}"
        expected = request_path(self._bus.unique_name, token)
        self._pending[expected] = then
        options["handle_token"] = ("s", token)

        def adopt(reply: tuple[Any, ...]) -> None:  # an old portal may choose another path
            handle = str(reply[0]) if reply else expected
            if handle != expected and expected in self._pending:
                self._pending[handle] = self._pending.pop(expected)

        self._bus.call(portal_call(SHORTCUTS, member, signature, (*body, options)),
                       on_reply=adopt,
                       on_error=lambda err: self._fail(generation, f"{member} failed ({err})"))

    def _create_session(self, generation: int, trigger: str) -> None:
        if generation != self._generation:
            return
        options = vardict(session_handle_token=f"hivetray_session{self._tokens + 1}")
        self._request(generation, "CreateSession", "a{sv}", (), options,
                      lambda code, results: self._on_session(generation, trigger, code, results))

    def _on_session(self, generation: int, trigger: str, code: int,
                    results: dict[str, Any]) -> None:
        if generation != self._generation:
            return
        session = variant_value(results, "session_handle")
        if code != 0 or session is None:
            self._fail(generation, "the desktop portal did not open a shortcuts session "
                       f"({RESPONSES.get(code, code)})")
            return
        self._session = str(session)
        self._request(generation, "BindShortcuts", BIND_SIGNATURE,
                      bind_shortcuts_body(self._session, trigger), {},
                      lambda code, results: self._on_bound(generation, code, results))

    def _on_bound(self, generation: int, code: int, results: dict[str, Any]) -> None:
        if generation != self._generation:
            return
        if code == 1:
            self._fail(generation, "the shortcut dialog was cancelled")
            return
        bound = dict(variant_value(results, "shortcuts") or [])
        if code != 0 or SHORTCUT_ID not in bound:
            self._fail(generation, "the desktop portal did not bind the shortcut "
                       f"({RESPONSES.get(code, 'not in its answer')})")
            return
        self.status_changed.emit(self._bound_status(bound[SHORTCUT_ID]))

    def _bound_status(self, info: dict[str, Any]) -> HotkeyStatus:
        shown = str(variant_value(info, "trigger_description") or "")
        message = f"Wayland: the desktop portal bound {self._name}"
        if shown and shown.replace(" ", "").lower() != self._name.replace(" ", "").lower():
            message += f" (the desktop shows it as {shown}; change it in its settings)"
        return HotkeyStatus("portal", True, message, self._name)

    def _portal_missing(self, generation: int, err: DBusError) -> None:
        if generation != self._generation:
            return
        if err.name in ("org.freedesktop.DBus.Error.ServiceUnknown",
                        "org.freedesktop.DBus.Error.NameHasNoOwner"):
            reason = "the desktop portal is not running"
        else:
            reason = f"this desktop's portal offers no global shortcuts ({err.name})"
        self.status_changed.emit(command_status(self._name, f"Wayland: {reason}"))

    def _fail(self, generation: int, reason: str) -> None:
        if generation != self._generation:
            return
        log.info("portal: %s", reason)
        self._pending.clear()
        self.status_changed.emit(command_status(self._name, f"Wayland: {reason}"))

    # -- signals ----------------------------------------------------------------------------------
    def _on_response(self, message: Message) -> None:
        then = self._pending.pop(message.header.fields.get(HeaderFields.path, ""), None)
        if then is not None and len(message.body) == 2:
            code, results = message.body
            then(int(code), dict(results))

    def _on_shortcuts_signal(self, message: Message) -> None:
        body = message.body
        if not body or str(body[0]) != self._session:
            return
        member = message.header.fields.get(HeaderFields.member)
        if member == "Activated" and len(body) >= 2 and body[1] == SHORTCUT_ID:
            self.activated.emit()
        elif member == "ShortcutsChanged" and len(body) == 2:
            bound = dict(body[1])
            if SHORTCUT_ID in bound:
                self.status_changed.emit(self._bound_status(bound[SHORTCUT_ID]))
