"""A fake ``org.freedesktop.portal.Desktop`` with GlobalShortcuts, served on a private
``dbus-daemon`` through :mod:`hivetray.ui.hotkeys.dbus_wire`, and the daemon itself.

The daemon checks every message against its signature, so a client that marshals
``a(sa{sv})`` wrongly is refused here exactly as by a real portal.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hivetray.ui.hotkeys import portal
from hivetray.ui.hotkeys.dbus_wire import Connection, DBusError, Message, ObjectPath, Variant


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


@dataclass
class FakePortal:
    """Answers CreateSession/BindShortcuts like xdg-desktop-portal; records what it got."""

    conn: Connection
    bind_response: int = 0
    trigger_description: str = "Ctrl+Alt+Space"
    calls: list[Message] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)
    sessions: list[str] = field(default_factory=list)
    registered: list[str] = field(default_factory=list)

    def start(self) -> None:
        path = portal.DESKTOP_PATH
        self.conn.export(path, "Get", self._get)
        self.conn.export(path, "Register", self._register)
        self.conn.export(path, "CreateSession", self._create_session)
        self.conn.export(path, "BindShortcuts", self._bind)
        self.conn.call(*_BUS, "RequestName", "su", [portal.DESKTOP, 0])

    def _get(self, message: Message) -> tuple[str, list[Any]]:
        if message.body != [portal.SHORTCUTS, "version"]:
            raise DBusError("org.freedesktop.DBus.Error.InvalidArgs", "no such property")
        return "v", [Variant("u", 1)]

    def _register(self, message: Message) -> None:
        self.registered.append(message.body[0])

    def _request_path(self, message: Message) -> str:
        assert message.sender is not None
        return portal.request_path(message.sender, message.body[-1]["handle_token"])

    def _create_session(self, message: Message) -> tuple[str, list[Any]]:
        self.calls.append(message)
        handle = self._request_path(message)
        sender = (message.sender or "").lstrip(":").replace(".", "_")
        session = (f"{portal.DESKTOP_PATH}/session/{sender}/"
                   f"{message.body[0]['session_handle_token']}")
        self.sessions.append(session)
        self.conn.export(session, "Close", self._close)
        self._respond(handle, message.sender, 0, {"session_handle": ("s", session)})
        return "o", [ObjectPath(handle)]

    def _close(self, message: Message) -> None:
        self.closed.append(message.path or "")

    def _bind(self, message: Message) -> tuple[str, list[Any]]:
        self.calls.append(message)
        handle = self._request_path(message)
        shortcuts = [(sid, {"description": Variant("s", info["description"]),
                            "trigger_description": Variant("s", self.trigger_description)})
                     for sid, info in message.body[1]]
        results = {"shortcuts": ("a(sa{sv})", shortcuts)} if self.bind_response == 0 else {}
        self._respond(handle, message.sender, self.bind_response, results)
        return "o", [ObjectPath(handle)]

    def _respond(self, handle: str, sender: str | None, code: int,
                 results: dict[str, tuple[str, Any]]) -> None:
        body = {key: Variant(sig, value) for key, (sig, value) in results.items()}
        self.conn.emit_signal(handle, portal.REQUEST, "Response", "ua{sv}", [code, body],
                              destination=sender)

    def press(self, session: str, shortcut_id: str = portal.SHORTCUT_ID) -> None:
        self.conn.emit_signal(portal.DESKTOP_PATH, portal.SHORTCUTS, "Activated", "osta{sv}",
                              [ObjectPath(session), shortcut_id, 123, {}])


_BUS = ("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus")
