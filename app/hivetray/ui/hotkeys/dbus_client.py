"""A D-Bus client connection read on the GUI thread: jeepney speaks the protocol, this module
only moves bytes.

Why not QtDBus: the GlobalShortcuts portal takes ``a(sa{sv})`` (BindShortcuts), and PySide6 cannot
marshal an array of structs (``QDBusArgument.beginArray`` needs an element type registered with
``qDBusRegisterMetaType``, which PySide6 does not expose). Jeepney marshals any signature, and its
core does no I/O, so it needs neither a thread nor an event loop of its own: the socket is watched
by a ``QSocketNotifier`` and whatever it says is readable is fed to a ``jeepney.low_level.Parser``.
Replies reach their callbacks by serial, signals their handlers by :class:`MatchRule`, all on the
thread that owns the connection (the GUI thread). Reads never block that thread; sends stay
blocking with a short timeout, as they are a few small messages.

Values follow jeepney: a struct is a tuple, a variant a ``(signature, value)`` pair, an object
path a ``str`` that the signature says is one.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Callable
from typing import Any

from jeepney.auth import BEGIN, AuthenticationError, Authenticator
from jeepney.bus import get_connectable_addresses
from jeepney.bus_messages import MatchRule, message_bus
from jeepney.low_level import HeaderFields, Message, MessageFlag, MessageType, Parser
from jeepney.wrappers import new_error
from PySide6.QtCore import QObject, QSocketNotifier

__all__ = ["DISCONNECTED", "Connection", "DBusError", "ErrorHandler", "ReplyHandler",
           "SignalHandler", "error_of", "session_bus_address", "wants_reply"]
log = logging.getLogger(__name__)
DISCONNECTED = "org.freedesktop.DBus.Error.Disconnected"
UNKNOWN_METHOD = "org.freedesktop.DBus.Error.UnknownMethod"


class DBusError(Exception):
    """An error reply (or a lost connection), by its D-Bus error name."""

    def __init__(self, name: str, text: str = "") -> None:
        super().__init__(f"{name}: {text}" if text else name)
        self.name = name
        self.text = text


ReplyHandler = Callable[[tuple[Any, ...]], None]
ErrorHandler = Callable[[DBusError], None]
SignalHandler = Callable[[Message], None]


def session_bus_address() -> str:
    """The session bus from the environment, else the systemd user bus socket, which some
    sessions provide without exporting the variable."""
    address = os.environ.get("DBUS_SESSION_BUS_ADDRESS", "")
    if not address:
        runtime = os.environ.get("XDG_RUNTIME_DIR")
        if runtime and os.path.exists(os.path.join(runtime, "bus")):
            address = f"unix:path={os.path.join(runtime, 'bus')}"
    if not address:
        raise OSError("no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is not set)")
    return address


def _connect(address: str, timeout: float) -> socket.socket:
    """The first unix socket of ``address`` that accepts us; every failure is an OSError, which
    the portal reads as "no session bus".

    Windows is refused first: Python has no AF_UNIX there, and the platform check lets the type
    checker see that no :class:`Connection` (nor its unix-only socket calls) exists there.
    """
    if sys.platform == "win32":
        raise OSError("no D-Bus session bus on Windows (Python has no unix sockets there)")
    errors: list[str] = []
    try:
        for target in get_connectable_addresses(address):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(timeout)
                sock.connect(target)
                return sock
            except OSError as exc:
                sock.close()
                errors.append(str(exc))
    except (RuntimeError, ValueError) as exc:  # no unix transport, or a malformed address
        errors.append(str(exc))
    raise OSError(f"cannot connect to D-Bus at {address!r}: {'; '.join(errors)}")


def error_of(message: Message) -> DBusError:
    text = message.body[0] if message.body and isinstance(message.body[0], str) else ""
    return DBusError(str(message.header.fields.get(HeaderFields.error_name, "unknown")), text)


class Connection(QObject):
    """One private bus connection: EXTERNAL authentication and ``Hello`` at construction (raising
    OSError when they fail), then calls with reply callbacks and signal subscriptions."""

    def __init__(self, address: str | None = None, timeout: float = 5.0) -> None:
        super().__init__()
        self._sock = _connect(address or session_bus_address(), timeout)
        self._parser = Parser()
        self._serial = 0
        self._replies: dict[int, tuple[ReplyHandler | None, ErrorHandler | None]] = {}
        self._signals: list[tuple[MatchRule, SignalHandler]] = []
        self._notifier = QSocketNotifier(self._sock.fileno(), QSocketNotifier.Type.Read, self)
        self._notifier.setEnabled(False)  # until Hello: the handshake reads synchronously
        try:
            self._authenticate()
            self.unique_name: str = str(self._hello())
        except BaseException:
            self._sock.close()
            raise
        self._notifier.activated.connect(self._on_readable)
        self._notifier.setEnabled(True)

    def _authenticate(self) -> None:
        auth = Authenticator()
        try:
            for line in auth:
                self._sock.sendall(line)
                chunk = self._sock.recv(1024)
                if not chunk:
                    raise OSError("D-Bus closed the connection during authentication")
                auth.feed(chunk)
        except AuthenticationError as exc:
            raise OSError(f"D-Bus authentication failed: {exc}") from exc
        self._sock.sendall(BEGIN)

    def _hello(self) -> Any:
        """The bus's first answer is our unique name, which the portal's request paths use."""
        got: list[tuple[Any, ...]] = []
        failed: list[DBusError] = []
        self.call(message_bus.Hello(), on_reply=got.append, on_error=failed.append)
        serial = self._serial
        while serial in self._replies:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise OSError("D-Bus closed the connection before answering Hello")
            self._receive(chunk)
        if failed or not got or not got[0]:
            raise OSError(f"D-Bus refused Hello: {failed[0] if failed else 'empty answer'}")
        return got[0][0]

    # -- sending ----------------------------------------------------------------------------------
    def send(self, message: Message) -> int:
        """Send with the next serial and return it."""
        self._serial += 1
        self._sock.sendall(message.serialise(serial=self._serial))
        return self._serial

    def call(self, message: Message, on_reply: ReplyHandler | None = None,
             on_error: ErrorHandler | None = None) -> None:
        """Send a method call; its reply body goes to ``on_reply``, an error to ``on_error``."""
        self._replies[self.send(message)] = (on_reply, on_error)

    def subscribe(self, rule: MatchRule, handler: SignalHandler) -> None:
        """Ask the bus for the signals ``rule`` matches and pass each to ``handler``."""
        self._signals.append((rule, handler))
        self.call(message_bus.AddMatch(rule))

    def close(self) -> None:
        self._notifier.setEnabled(False)
        self._sock.close()

    # -- receiving --------------------------------------------------------------------------------
    def _on_readable(self) -> None:
        if sys.platform == "win32":  # unreachable: ``_connect`` refuses Windows (no AF_UNIX)
            return
        try:
            chunk = self._sock.recv(65536, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if chunk:
            self._receive(chunk)
        else:
            self._lost()

    def _receive(self, chunk: bytes) -> None:
        self._parser.add_data(chunk)
        while True:
            try:
                message = self._parser.get_next_message()
            except Exception:  # the stream cannot be resynchronised after a bad message
                log.exception("unreadable D-Bus message; dropping the connection")
                self._lost()
                return
            if message is None:
                return
            try:
                self._dispatch(message)
            except Exception:  # one bad message or handler must not stop the connection
                log.exception("D-Bus message handling failed")

    def _lost(self) -> None:
        """The bus went away: every call still waiting gets a Disconnected error."""
        self._notifier.setEnabled(False)
        waiting, self._replies = self._replies, {}
        for _on_reply, on_error in waiting.values():
            if on_error is not None:
                on_error(DBusError(DISCONNECTED))

    def _dispatch(self, message: Message) -> None:
        kind = message.header.message_type
        if kind in (MessageType.method_return, MessageType.error):
            serial = message.header.fields.get(HeaderFields.reply_serial, 0)
            on_reply, on_error = self._replies.pop(serial, (None, None))
            if kind is MessageType.method_return and on_reply is not None:
                on_reply(message.body)
            elif kind is MessageType.error and on_error is not None:
                on_error(error_of(message))
        elif kind is MessageType.signal:
            for rule, handler in list(self._signals):
                if rule.matches(message):
                    handler(message)
        elif kind is MessageType.method_call:
            self.on_method_call(message)

    def on_method_call(self, message: Message) -> None:
        """We export no objects: say so at once, so a caller (an introspecting tool) does not
        wait for its timeout. Tests' fake services override this to serve methods."""
        if wants_reply(message):
            member = message.header.fields.get(HeaderFields.member, "")
            self.send(new_error(message, UNKNOWN_METHOD, "s", (f"no method {member}",)))


def wants_reply(message: Message) -> bool:
    return not message.header.flags & MessageFlag.no_reply_expected
