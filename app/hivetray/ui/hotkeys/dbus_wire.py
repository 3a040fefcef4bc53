"""A minimal D-Bus client in pure Python, read on the GUI thread through a ``QSocketNotifier``.

Why not QtDBus: the GlobalShortcuts portal takes ``a(sa{sv})`` (BindShortcuts), and PySide6 cannot
marshal an array of structs: ``QDBusArgument.beginArray`` needs an element type registered with
``qDBusRegisterMetaType``, which PySide6 does not expose (tried: "type 'QDBusArgument' is not
registered with D-Bus"). The wire format is small and stable, so this module speaks it directly:
EXTERNAL auth on the session bus socket, method calls with reply callbacks, signal
subscriptions, and (for tests' fake services) replies, errors and signals of its own.

Values: ``str`` → s, :class:`ObjectPath` → o, :class:`Signature` → g, ``bool``/``int``/``float``
per the signature, ``list`` → a, ``tuple`` → struct, ``dict`` → a{..}, :class:`Variant` → v
(received variants are unwrapped to their value).
"""

from __future__ import annotations

import logging
import os
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from PySide6.QtCore import QObject, QSocketNotifier

log = logging.getLogger(__name__)
METHOD_CALL, METHOD_RETURN, ERROR, SIGNAL = 1, 2, 3, 4
NO_REPLY_EXPECTED = 0x1
BUS = ("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus")
_FIXED = {"y": ("B", 1), "b": ("I", 4), "n": ("h", 2), "q": ("H", 2), "i": ("i", 4),
          "u": ("I", 4), "x": ("q", 8), "t": ("Q", 8), "d": ("d", 8), "h": ("I", 4)}
_HEADER_FIELDS = {1: ("path", "o"), 2: ("interface", "s"), 3: ("member", "s"),
                  4: ("error_name", "s"), 5: ("reply_serial", "u"), 6: ("destination", "s"),
                  7: ("sender", "s"), 8: ("signature", "g")}


class DBusError(Exception):
    def __init__(self, name: str, text: str = "") -> None:
        super().__init__(f"{name}: {text}" if text else name)
        self.name = name
        self.text = text


class ObjectPath(str):
    pass


class Signature(str):
    pass


@dataclass(frozen=True)
class Variant:
    signature: str
    value: Any


def split_types(signature: str) -> list[str]:
    """``"sa{sv}(ii)"`` → ``["s", "a{sv}", "(ii)"]``."""
    out, i = [], 0
    while i < len(signature):
        j = _type_end(signature, i)
        out.append(signature[i:j])
        i = j
    return out


def _type_end(sig: str, i: int) -> int:
    if sig[i] == "a":
        return _type_end(sig, i + 1)
    if sig[i] in "({":
        close, depth, j = {"(": ")", "{": "}"}[sig[i]], 0, i
        while True:
            if sig[j] in "({":
                depth += 1
            elif sig[j] in ")}":
                depth -= 1
                if depth == 0 and sig[j] == close:
                    return j + 1
            j += 1
    return i + 1


def _alignment(code: str) -> int:
    if code in "({":
        return 8
    if code in _FIXED:
        return _FIXED[code][1]
    return {"s": 4, "o": 4, "a": 4, "g": 1, "v": 1}[code]


class Writer:
    def __init__(self) -> None:
        self.buf = bytearray()

    def pad(self, n: int) -> None:
        self.buf.extend(b"\0" * (-len(self.buf) % n))

    def write(self, sig: str, value: Any) -> None:
        code = sig[0]
        self.pad(_alignment(code))
        if code in _FIXED:
            self.buf.extend(struct.pack("<" + _FIXED[code][0], value))
        elif code in "so":
            raw = str(value).encode()
            self.buf.extend(struct.pack("<I", len(raw)) + raw + b"\0")
        elif code == "g":
            raw = str(value).encode()
            self.buf.extend(bytes([len(raw)]) + raw + b"\0")
        elif code == "v":
            self.write("g", value.signature)
            self.write(value.signature, value.value)
        elif code == "(":
            for sub, item in zip(split_types(sig[1:-1]), value, strict=True):
                self.write(sub, item)
        elif code == "a":
            self.buf.extend(b"\0\0\0\0")
            at = len(self.buf)
            element = sig[1:]
            self.pad(_alignment(element[0]))
            start = len(self.buf)
            items = value.items() if element[0] == "{" else value
            for item in items:
                if element[0] == "{":
                    self.pad(8)
                    key_sig, value_sig = split_types(element[1:-1])
                    self.write(key_sig, item[0])
                    self.write(value_sig, item[1])
                else:
                    self.write(element, item)
            struct.pack_into("<I", self.buf, at - 4, len(self.buf) - start)
        else:
            raise ValueError(f"cannot marshal D-Bus type {sig!r}")


class Reader:
    def __init__(self, data: bytes, endian: str) -> None:
        self.data, self.pos, self.endian = data, 0, endian

    def align(self, n: int) -> None:
        self.pos += -self.pos % n

    def read(self, sig: str) -> Any:
        code = sig[0]
        self.align(_alignment(code))
        if code in _FIXED:
            fmt, size = _FIXED[code]
            (value,) = struct.unpack_from(self.endian + fmt, self.data, self.pos)
            self.pos += size
            return bool(value) if code == "b" else value
        if code in "so":
            (length,) = struct.unpack_from(self.endian + "I", self.data, self.pos)
            text = self.data[self.pos + 4:self.pos + 4 + length].decode()
            self.pos += 5 + length
            return ObjectPath(text) if code == "o" else text
        if code == "g":
            length = self.data[self.pos]
            text = self.data[self.pos + 1:self.pos + 1 + length].decode()
            self.pos += 2 + length
            return Signature(text)
        if code == "v":
            return self.read(self.read("g"))
        if code == "(":
            return tuple(self.read(sub) for sub in split_types(sig[1:-1]))
        if code == "a":
            (length,) = struct.unpack_from(self.endian + "I", self.data, self.pos)
            self.pos += 4
            element = sig[1:]
            self.align(_alignment(element[0]))
            end = self.pos + length
            if element[0] == "{":
                key_sig, value_sig = split_types(element[1:-1])
                result: dict[Any, Any] = {}
                while self.pos < end:
                    self.align(8)
                    key = self.read(key_sig)
                    result[key] = self.read(value_sig)
                return result
            items = []
            while self.pos < end:
                items.append(self.read(element))
            return items
        raise ValueError(f"cannot read D-Bus type {sig!r}")


@dataclass
class Message:
    kind: int
    serial: int = 0
    flags: int = 0
    path: str | None = None
    interface: str | None = None
    member: str | None = None
    error_name: str | None = None
    reply_serial: int | None = None
    destination: str | None = None
    sender: str | None = None
    signature: str = ""
    body: list[Any] = field(default_factory=list)

    def encode(self) -> bytes:
        body = Writer()
        for sub, value in zip(split_types(self.signature), self.body, strict=True):
            body.write(sub, value)
        fields = []
        for code, (name, sig) in _HEADER_FIELDS.items():
            value = getattr(self, name)
            if value is not None and (name != "signature" or value):
                fields.append((code, Variant(sig, value)))
        head = Writer()
        head.buf.extend(b"l" + bytes([self.kind, self.flags, 1]))
        head.buf.extend(struct.pack("<II", len(body.buf), self.serial))
        head.write("a(yv)", fields)
        head.pad(8)
        return bytes(head.buf + body.buf)

    @classmethod
    def decode(cls, data: bytes) -> Message:
        endian = "<" if data[0:1] == b"l" else ">"
        reader = Reader(data, endian)
        reader.pos = 4
        body_length, serial = reader.read("u"), reader.read("u")
        message = cls(kind=data[1], flags=data[2], serial=serial)
        for code, value in reader.read("a(yv)"):
            if code in _HEADER_FIELDS:
                setattr(message, _HEADER_FIELDS[code][0], value)
        reader.align(8)
        body = Reader(data[reader.pos:reader.pos + body_length], endian)
        message.body = [body.read(sub) for sub in split_types(message.signature)]
        return message


def message_length(data: bytes | bytearray) -> int | None:
    """Total length of the message at the start of ``data`` once its fixed header is in."""
    if len(data) < 16:
        return None
    endian = "<" if data[0:1] == b"l" else ">"
    body, _serial, fields = struct.unpack_from(endian + "III", data, 4)
    header = 16 + int(fields)
    return header + (-header % 8) + int(body)


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
