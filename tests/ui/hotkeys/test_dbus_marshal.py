"""The pure-Python D-Bus marshalling the portal layer speaks (the real-bus round trip is in
test_portal.py)."""

from __future__ import annotations

import pytest

from hivetray.ui.hotkeys.dbus_marshal import (
    METHOD_CALL,
    Message,
    ObjectPath,
    Reader,
    Variant,
    Writer,
    message_length,
    split_types,
)
from hivetray.ui.hotkeys.dbus_wire import session_bus_address


def test_split_types() -> None:
    assert split_types("oa(sa{sv})sa{sv}") == ["o", "a(sa{sv})", "s", "a{sv}"]
    assert split_types("ua{sv}") == ["u", "a{sv}"]
    assert split_types("(i(ii))aai") == ["(i(ii))", "aai"]
    assert split_types("") == []


def test_vardict_bytes_follow_the_alignment_rules() -> None:
    writer = Writer()
    writer.write("a{sv}", {"a": Variant("s", "b")})
    assert bytes(writer.buf) == (
        b"\x12\0\0\0"            # array length 18, counted from the first entry
        b"\0\0\0\0"              # dict entries align to 8
        b"\x01\0\0\0a\0"          # key "a"
        b"\x01s\0"               # variant signature "s"
        b"\0\0\0"                # string aligns to 4
        b"\x01\0\0\0b\0")         # "b"


def test_empty_array_of_structs_still_pads_to_the_element() -> None:
    writer = Writer()
    writer.write("u", 7)
    writer.write("a(sa{sv})", [])
    assert bytes(writer.buf) == b"\x07\0\0\0" + b"\0\0\0\0"  # length 0, already 8-aligned


@pytest.mark.parametrize(("signature", "body"), [
    ("oa(sa{sv})sa{sv}", [ObjectPath("/a/b"),
                          [("toggle-chat", {"description": Variant("s", "Open"),
                                            "preferred_trigger": Variant("s", "CTRL+space")}),
                           ("x", {})], "", {"handle_token": Variant("s", "t1")}]),
    ("osta{sv}", [ObjectPath("/s"), "toggle-chat", 2**40, {"n": Variant("u", 3)}]),
    ("ybnqixtd", [255, True, -2, 65535, -(2**31), -(2**63), 2**64 - 1, 0.5]),
    ("av", [[Variant("s", "x"), Variant("a(ii)", [(1, 2)]), Variant("b", False)]]),
])
def test_round_trip(signature: str, body: list[object]) -> None:
    message = Message(METHOD_CALL, serial=9, path="/p", interface="i.f", member="M",
                      destination="d.e", signature=signature, body=body)
    data = message.encode()
    assert message_length(data) == len(data)
    back = Message.decode(data)
    assert (back.kind, back.serial, back.path, back.interface, back.member, back.destination,
            back.signature) == (METHOD_CALL, 9, "/p", "i.f", "M", "d.e", signature)
    assert back.body == _unwrap(body)


def _unwrap(value: object) -> object:
    if isinstance(value, Variant):
        return _unwrap(value.value)
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_unwrap(v) for v in value)
    return value


def test_big_endian_is_read_too() -> None:
    reader = Reader(b"\0\0\0\x05" + b"\0\0\0\x02hi\0", ">")
    assert reader.read("u") == 5 and reader.read("s") == "hi"


def test_partial_messages_wait_for_more() -> None:
    data = Message(METHOD_CALL, serial=1, path="/", member="Hello").encode()
    assert message_length(data[:10]) is None
    assert message_length(data[:16]) == len(data)


def test_session_bus_address(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path=/run/user/1/bus")
    assert session_bus_address() == "unix:path=/run/user/1/bus"
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS")
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/nonexistent")
    with pytest.raises(OSError, match="no D-Bus session bus"):
        session_bus_address()
