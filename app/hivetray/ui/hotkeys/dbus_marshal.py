"""D-Bus wire format: marshalling values and messages (the specification's "Message Protocol").

Pure functions and small classes, no I/O, so the byte layout is unit-tested directly; the
connection that sends these messages is :mod:`hivetray.ui.hotkeys.dbus_wire`.

Values: ``str`` → s, :class:`ObjectPath` → o, :class:`Signature` → g, ``bool``/``int``/``float``
per the signature, ``list`` → a, ``tuple`` → struct, ``dict`` → a{..}, :class:`Variant` → v
(received variants are unwrapped to their value).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

METHOD_CALL, METHOD_RETURN, ERROR, SIGNAL = 1, 2, 3, 4
NO_REPLY_EXPECTED = 0x1
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
