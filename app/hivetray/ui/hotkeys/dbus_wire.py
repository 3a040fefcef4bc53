"""A minimal D-Bus client in pure Python, read on the GUI thread through a ``QSocketNotifier``.

Why not QtDBus: the GlobalShortcuts portal takes ``a(sa{sv})`` (BindShortcuts), and PySide6 cannot
marshal an array of structs: ``QDBusArgument.beginArray`` needs an element type registered with
``qDBusRegisterMetaType``, which PySide6 does not expose (tried: "type 'QDBusArgument' is not
registered with D-Bus"). The wire format is small and stable, so this module speaks it directly:
EXTERNAL auth on the session bus socket, method calls with reply callbacks, signal
subscriptions, and (for tests' fake services) replies, errors and signals of its own. The byte
format lives in :mod:`hivetray.ui.hotkeys.dbus_marshal`.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from PySide6.QtCore import QObject, QSocketNotifier

from hivetray.ui.hotkeys.dbus_marshal import (
    ERROR,
    METHOD_CALL,
    METHOD_RETURN,
    NO_REPLY_EXPECTED,
    SIGNAL,
    DBusError,
    Message,
    ObjectPath,
    Signature,
    Variant,
    message_length,
)

__all__ = ["BUS", "Connection", "DBusError", "Message", "ObjectPath", "Signature", "Variant",
           "session_bus_address"]
log = logging.getLogger(__name__)
BUS = ("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus")


def session_bus_address() -> str:
    address = os.environ.get("DBUS_SESSION_BUS_ADDRESS", "")
    if not address:
        runtime = os.environ.get("XDG_RUNTIME_DIR")
        if runtime and os.path.exists(os.path.join(runtime, "bus")):
            address = f"unix:path={os.path.join(runtime, 'bus')}"
    if not address:
        raise OSError("no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is not set)")
    return address


def _connect(address: str) -> socket.socket:
    errors = []
    for entry in address.split(";"):
        transport, _, params = entry.partition(":")
        keys = dict(p.split("=", 1) for p in params.split(",") if "=" in p)
        if transport != "unix":
            continue
        target = (unquote(keys["path"]) if "path" in keys
                  else "\0" + unquote(keys["abstract"]) if "abstract" in keys else None)
        if target is None:
            continue
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(5)
            sock.connect(target)
            return sock
        except OSError as exc:
            sock.close()
            errors.append(str(exc))
    raise OSError(f"cannot connect to D-Bus at {address!r}: {'; '.join(errors) or 'no unix'}")


ReplyHandler = Callable[[list[Any]], None]
ErrorHandler = Callable[[DBusError], None]
SignalHandler = Callable[[Message], None]
MethodHandler = Callable[[Message], tuple[str, list[Any]] | None]


class Connection(QObject):
    """One private bus connection; callbacks run on the thread that owns it (the GUI thread)."""

    def __init__(self, address: str | None = None) -> None:
        super().__init__()
        self._sock = _connect(address or session_bus_address())
        self._serial = 0
        self._buffer = bytearray()
        self._replies: dict[int, tuple[ReplyHandler | None, ErrorHandler | None]] = {}
        self._signals: list[tuple[str | None, str | None, SignalHandler]] = []
        self._methods: dict[tuple[str, str], MethodHandler] = {}
        uid = str(os.getuid()).encode().hex().encode()
        self._sock.sendall(b"\0AUTH EXTERNAL " + uid + b"\r\n")
        line = self._read_line()
        if not line.startswith(b"OK "):
            raise OSError(f"D-Bus authentication failed: {line!r}")
        self._sock.sendall(b"BEGIN\r\n")
        self.unique_name: str = self.call_blocking(*BUS, "Hello")[0]
        self._notifier = QSocketNotifier(self._sock.fileno(), QSocketNotifier.Type.Read, self)
        self._notifier.activated.connect(self._on_readable)

    def _read_line(self) -> bytes:
        while b"\r\n" not in self._buffer:
            chunk = self._sock.recv(4096)
            if not chunk:
                raise OSError("D-Bus closed the connection during authentication")
            self._buffer.extend(chunk)
        line, _, rest = bytes(self._buffer).partition(b"\r\n")
        self._buffer[:] = rest
        return line

    def send(self, message: Message) -> int:
        self._serial += 1
        message.serial = self._serial
        self._sock.sendall(message.encode())
        return self._serial

    def call(self, destination: str, path: str, interface: str, member: str,
             signature: str = "", body: list[Any] | None = None, *,
             on_reply: ReplyHandler | None = None, on_error: ErrorHandler | None = None) -> None:
        serial = self.send(Message(METHOD_CALL, path=path, interface=interface, member=member,
                                   destination=destination, signature=signature,
                                   body=body or []))
        self._replies[serial] = (on_reply, on_error)

    def call_blocking(self, destination: str, path: str, interface: str, member: str,
                      signature: str = "", body: list[Any] | None = None) -> list[Any]:
        """Only for setup before the notifier exists (Hello); other messages are dispatched."""
        result: list[Any] = []
        failure: list[DBusError] = []
        self.call(destination, path, interface, member, signature, body,
                  on_reply=result.extend, on_error=failure.append)
        serial = self._serial
        while serial in self._replies:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise OSError("D-Bus closed the connection")
            self._buffer.extend(chunk)
            self._dispatch_buffer()
        if failure:
            raise failure[0]
        return result

    def subscribe(self, interface: str | None, member: str | None, handler: SignalHandler,
                  rule: str) -> None:
        """Call ``handler`` for signals matching interface/member; ``rule`` goes to AddMatch."""
        self._signals.append((interface, member, handler))
        self.call(*BUS, "AddMatch", "s", [rule])

    def export(self, path: str, member: str, handler: MethodHandler) -> None:
        """Serve method ``member`` at ``path``: the handler returns the reply's (signature, body)
        or None, or raises :class:`DBusError` (used by tests' fake services)."""
        self._methods[(path, member)] = handler

    def close(self) -> None:
        self._notifier.setEnabled(False)
        self._sock.close()

    def _on_readable(self) -> None:
        try:  # sends stay blocking (small messages); reads never block the GUI thread
            chunk = self._sock.recv(65536, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._notifier.setEnabled(False)
            for _on_reply, on_error in self._replies.values():
                if on_error is not None:
                    on_error(DBusError("org.freedesktop.DBus.Error.Disconnected"))
            self._replies.clear()
            return
        self._buffer.extend(chunk)
        self._dispatch_buffer()

    def _dispatch_buffer(self) -> None:
        while (length := message_length(self._buffer)) is not None \
                and len(self._buffer) >= length:
            data = bytes(self._buffer[:length])
            del self._buffer[:length]
            try:
                self._dispatch(Message.decode(data))
            except Exception:  # one bad message or handler must not stop the connection
                log.exception("D-Bus message handling failed")

    def _dispatch(self, message: Message) -> None:
        if message.kind in (METHOD_RETURN, ERROR):
            on_reply, on_error = self._replies.pop(message.reply_serial or 0, (None, None))
            if message.kind == METHOD_RETURN and on_reply is not None:
                on_reply(message.body)
            elif message.kind == ERROR and on_error is not None:
                text = message.body[0] if message.body and isinstance(message.body[0], str) \
                    else ""
                on_error(DBusError(message.error_name or "unknown", text))
        elif message.kind == SIGNAL:
            for interface, member, handler in list(self._signals):
                if interface in (None, message.interface) and member in (None, message.member):
                    handler(message)
        elif message.kind == METHOD_CALL:
            self._serve(message)

    def _serve(self, message: Message) -> None:
        handler = self._methods.get((message.path or "", message.member or ""))
        reply = Message(METHOD_RETURN, reply_serial=message.serial, destination=message.sender)
        try:
            if handler is None:
                raise DBusError("org.freedesktop.DBus.Error.UnknownMethod",
                                f"no method {message.member} at {message.path}")
            result = handler(message)
            if result is not None:
                reply.signature, reply.body = result
        except DBusError as exc:
            reply = Message(ERROR, reply_serial=message.serial, destination=message.sender,
                            error_name=exc.name, signature="s", body=[exc.text])
        if not message.flags & NO_REPLY_EXPECTED:
            self.send(reply)

    def emit_signal(self, path: str, interface: str, member: str, signature: str,
                    body: list[Any], destination: str | None = None) -> None:
        self.send(Message(SIGNAL, path=path, interface=interface, member=member,
                          destination=destination, signature=signature, body=body))
