"""A fake ``org.freedesktop.portal.Desktop`` with GlobalShortcuts, served on a private
``dbus-daemon``, and the daemon itself. The serving half of the connection (exported methods,
emitted signals) lives here because only tests need it; the app's client only calls.

The daemon checks every message against its signature, so a client that marshals
``a(sa{sv})`` wrongly is refused here exactly as by a real portal.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jeepney.bus_messages import message_bus
from jeepney.low_level import HeaderFields, Message
from jeepney.wrappers import DBusAddress, new_error, new_method_return, new_signal

from hivetray.ui.hotkeys import portal
from hivetray.ui.hotkeys.dbus_client import Connection, DBusError, wants_reply

#: a method's answer: (signature, body) of the reply, or None for an empty one
MethodHandler = Callable[[Message], tuple[str, tuple[Any, ...]] | None]


@contextlib.contextmanager
def private_bus(folder: Path) -> Iterator[str]:
    """A session-type ``dbus-daemon`` listening in ``folder``; yields its address."""
    if shutil.which("dbus-daemon") is None:
        raise FileNotFoundError("dbus-daemon")
    socket_path = folder / "bus"
    proc = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--nopidfile",
                             f"--address=unix:path={socket_path}", "--print-address=1"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        address = proc.stdout.readline().strip()  # printed once it listens
        assert address.startswith("unix:"), address
        yield address
    finally:
        proc.terminate()
        proc.wait(10)


class ServingConnection(Connection):
    """The app's connection plus methods served at object paths and signals sent."""

    def __init__(self, address: str) -> None:
        super().__init__(address)
        self._methods: dict[tuple[str, str], MethodHandler] = {}

    def export(self, path: str, member: str, handler: MethodHandler) -> None:
        """Serve ``member`` at ``path``; the handler may raise :class:`DBusError`."""
        self._methods[(path, member)] = handler

    def on_method_call(self, message: Message) -> None:
        fields = message.header.fields
        handler = self._methods.get((fields.get(HeaderFields.path, ""),
                                     fields.get(HeaderFields.member, "")))
        if handler is None:
            super().on_method_call(message)
            return
        try:
            signature, body = handler(message) or (None, ())
            reply = new_method_return(message, signature, body)
        except DBusError as exc:
            reply = new_error(message, exc.name, "s", (exc.text,))
        if wants_reply(message):
            self.send(reply)

    def emit_signal(self, path: str, interface: str, member: str, signature: str,
                    body: tuple[Any, ...], destination: str | None = None) -> None:
        message = new_signal(DBusAddress(path, interface=interface), member, signature, body)
        if destination is not None:
            message.header.fields[HeaderFields.destination] = destination
        self.send(message)


@dataclass(frozen=True)
class Call:
    """A method call as the fake received it (variants as jeepney's (signature, value))."""

    member: str
    signature: str
    body: tuple[Any, ...]


@dataclass
class FakePortal:
    """Answers CreateSession/BindShortcuts like xdg-desktop-portal; records what it got."""

    conn: ServingConnection
    bind_response: int = 0
    trigger_description: str = "Ctrl+Alt+Space"
    calls: list[Call] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)
    sessions: list[str] = field(default_factory=list)
    registered: list[str] = field(default_factory=list)

    def start(self) -> None:
        path = portal.DESKTOP_PATH
        self.conn.export(path, "Get", self._get)
        self.conn.export(path, "Register", self._register)
        self.conn.export(path, "CreateSession", self._create_session)
        self.conn.export(path, "BindShortcuts", self._bind)
        self.conn.call(message_bus.RequestName(portal.DESKTOP))

    def _record(self, message: Message) -> None:
        fields = message.header.fields
        self.calls.append(Call(fields[HeaderFields.member],
                               fields.get(HeaderFields.signature, ""), message.body))

    def _get(self, message: Message) -> tuple[str, tuple[Any, ...]]:
        if message.body != (portal.SHORTCUTS, "version"):
            raise DBusError("org.freedesktop.DBus.Error.InvalidArgs", "no such property")
        return "v", (("u", 1),)

    def _register(self, message: Message) -> None:
        self.registered.append(message.body[0])

    @staticmethod
    def _sender(message: Message) -> str:
        return str(message.header.fields[HeaderFields.sender])

    def _request_path(self, message: Message) -> str:
        _signature, token = message.body[-1]["handle_token"]
        return portal.request_path(self._sender(message), token)

    def _create_session(self, message: Message) -> tuple[str, tuple[Any, ...]]:
        self._record(message)
        handle = self._request_path(message)
        sender = self._sender(message).lstrip(":").replace(".", "_")
        _signature, token = message.body[0]["session_handle_token"]
        session = f"{portal.DESKTOP_PATH}/session/{sender}/{token}"
        self.sessions.append(session)
        self.conn.export(session, "Close", self._close)
        self._respond(handle, self._sender(message), 0, {"session_handle": ("o", session)})
        return "o", (handle,)

    def _close(self, message: Message) -> None:
        self.closed.append(message.header.fields[HeaderFields.path])

    def _bind(self, message: Message) -> tuple[str, tuple[Any, ...]]:
        self._record(message)
        handle = self._request_path(message)
        shortcuts = [(sid, {"description": info["description"],
                            "trigger_description": ("s", self.trigger_description)})
                     for sid, info in message.body[1]]
        results = {"shortcuts": ("a(sa{sv})", shortcuts)} if self.bind_response == 0 else {}
        self._respond(handle, self._sender(message), self.bind_response, results)
        return "o", (handle,)

    def _respond(self, handle: str, sender: str, code: int,
                 results: dict[str, tuple[str, Any]]) -> None:
        self.conn.emit_signal(handle, portal.REQUEST, "Response", "ua{sv}", (code, results),
                              destination=sender)

    def press(self, session: str, shortcut_id: str = portal.SHORTCUT_ID) -> None:
        self.conn.emit_signal(portal.DESKTOP_PATH, portal.SHORTCUTS, "Activated", "osta{sv}",
                              (session, shortcut_id, 123, {}))
