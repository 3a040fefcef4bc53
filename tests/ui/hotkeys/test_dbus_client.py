"""The I/O the portal's D-Bus client still owns now that jeepney marshals: finding the bus,
the handshake, feeding the parser from the socket notifier, routing replies and signals, and a
lost bus. The peer here is a bare socket played by the test (jeepney builds its messages); the
real ``dbus-daemon`` round trip is in test_portal.py."""

from __future__ import annotations

import select
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from jeepney.bus_messages import MatchRule
from jeepney.low_level import HeaderFields, Message, MessageType, Parser
from jeepney.wrappers import (
    DBusAddress,
    new_error,
    new_method_call,
    new_method_return,
    new_signal,
)
from PySide6.QtCore import QCoreApplication
from pytestqt.qtbot import QtBot

from hivetray.ui.hotkeys import portal
from hivetray.ui.hotkeys.dbus_client import Connection, DBusError, session_bus_address

PEER = DBusAddress("/org/example/Thing", bus_name="org.example.Peer",
                   interface="org.example.Thing")


class Peer:
    """The bus end of one connection: the handshake runs in a helper thread (the client's
    constructor waits for it), everything after on the test's thread."""

    def __init__(self, listener: socket.socket, answer_auth: bytes = b"OK 1234deadbeef\r\n"):
        self.sock, _ = listener.accept()
        self.sock.settimeout(10)
        self.parser = Parser()
        data = bytearray()
        while b"\r\n" not in data:  # "\0AUTH EXTERNAL <uid>\r\n"
            data += self.sock.recv(1024)
        assert data.startswith(b"\0AUTH EXTERNAL ")
        self.sock.sendall(answer_auth)
        if not answer_auth.startswith(b"OK"):
            return
        while b"BEGIN\r\n" not in data:
            data += self.sock.recv(1024)
        self.parser.add_data(bytes(data.partition(b"BEGIN\r\n")[2]))
        hello = self.receive()
        self.send(new_method_return(hello, "s", (":1.7",)))

    def receive(self) -> Message:
        while (message := self.parser.get_next_message()) is None:
            self.parser.add_data(self.sock.recv(4096))
        return message

    def poll(self) -> Message | None:
        """Whatever has arrived, without blocking (the client answers from the event loop)."""
        if select.select([self.sock], [], [], 0)[0]:
            self.parser.add_data(self.sock.recv(4096))
        return self.parser.get_next_message()

    def send(self, message: Message, serial: int = 1) -> None:
        self.sock.sendall(message.serialise(serial=serial))


@pytest.fixture
def pair(qapp: QCoreApplication, tmp_path: Path) -> Iterator[tuple[Connection, Peer]]:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(tmp_path / "bus"))
    listener.listen(1)
    with ThreadPoolExecutor(1) as pool:
        peer = pool.submit(Peer, listener)
        conn = Connection(f"unix:path={tmp_path / 'bus'}")
        yield conn, peer.result(timeout=10)
    conn.close()
    peer.result().sock.close()
    listener.close()


def test_the_handshake_gives_the_unique_name(pair: tuple[Connection, Peer]) -> None:
    conn, _peer = pair
    assert conn.unique_name == ":1.7"


def test_a_message_split_across_reads_is_dispatched_whole(qtbot: QtBot,
                                                          pair: tuple[Connection, Peer]) -> None:
    conn, peer = pair
    seen: list[tuple[Any, ...]] = []
    conn.subscribe(MatchRule(type="signal", interface="org.example.Thing", member="Changed"),
                   lambda message: seen.append(message.body))
    assert "member='Changed'" in peer.receive().body[0]  # the AddMatch
    first = new_signal(PEER, "Changed", "sa{sv}", ("one", {"k": ("s", "v")})).serialise(2)
    second = new_signal(PEER, "Changed", "a(sa{sv})", ([("id", {})],)).serialise(3)
    other = new_signal(PEER, "Unrelated", "s", ("no",)).serialise(4)
    peer.sock.sendall(other + first + second[:20])
    qtbot.waitUntil(lambda: len(seen) == 1, timeout=5000)
    assert seen == [("one", {"k": ("s", "v")})]
    peer.sock.sendall(second[20:])
    qtbot.waitUntil(lambda: len(seen) == 2, timeout=5000)
    assert seen[1] == ([("id", {})],)


def test_replies_and_errors_reach_their_own_call(qtbot: QtBot,
                                                 pair: tuple[Connection, Peer]) -> None:
    conn, peer = pair
    results: list[object] = []
    conn.call(new_method_call(PEER, "Good"), on_reply=results.append, on_error=results.append)
    conn.call(new_method_call(PEER, "Bad"), on_reply=results.append, on_error=results.append)
    good, bad = peer.receive(), peer.receive()
    peer.send(new_error(bad, "org.example.Error.Nope", "s", ("not today",)), serial=5)
    peer.send(new_method_return(good, "u", (42,)), serial=6)
    qtbot.waitUntil(lambda: len(results) == 2, timeout=5000)
    error, reply = results
    assert isinstance(error, DBusError)
    assert (error.name, error.text) == ("org.example.Error.Nope", "not today")
    assert reply == (42,)


def test_a_method_called_on_us_is_answered_unknown(qtbot: QtBot,
                                                   pair: tuple[Connection, Peer]) -> None:
    _conn, peer = pair
    peer.send(new_method_call(DBusAddress("/", bus_name=":1.7", interface="org.example.X"),
                              "Ping"), serial=9)
    answers: list[Message] = []

    def answered() -> bool:
        message = peer.poll()
        if message is not None:
            answers.append(message)
        return bool(answers)

    qtbot.waitUntil(answered, timeout=5000)
    answer = answers[0]
    assert answer.header.message_type is MessageType.error
    assert answer.header.fields[HeaderFields.reply_serial] == 9
    assert answer.header.fields[HeaderFields.error_name] == \
        "org.freedesktop.DBus.Error.UnknownMethod"


def test_a_lost_bus_fails_the_calls_still_waiting(qtbot: QtBot,
                                                  pair: tuple[Connection, Peer]) -> None:
    conn, peer = pair
    errors: list[DBusError] = []
    conn.call(new_method_call(PEER, "Slow"), on_error=errors.append)
    peer.receive()
    peer.sock.shutdown(socket.SHUT_RDWR)
    qtbot.waitUntil(lambda: bool(errors), timeout=5000)
    assert [e.name for e in errors] == ["org.freedesktop.DBus.Error.Disconnected"]


def test_a_refused_handshake_is_no_bus(qapp: QCoreApplication, tmp_path: Path) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(tmp_path / "bus"))
    listener.listen(1)
    with ThreadPoolExecutor(1) as pool:
        peer = pool.submit(Peer, listener, b"REJECTED EXTERNAL\r\n")
        with pytest.raises(OSError, match="D-Bus authentication failed"):
            Connection(f"unix:path={tmp_path / 'bus'}")
        peer.result(timeout=10).sock.close()
    listener.close()


@pytest.mark.parametrize("address", ["tcp:host=localhost,port=1", "unix:path=/nonexistent/bus",
                                     "nonsense"])
def test_an_unusable_address_is_no_bus(qapp: QCoreApplication, address: str) -> None:
    with pytest.raises(OSError, match="cannot connect to D-Bus"):
        Connection(address)


def test_session_bus_address(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path=/run/user/1/bus")
    assert session_bus_address() == "unix:path=/run/user/1/bus"
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS")
    (tmp_path / "bus").touch()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert session_bus_address() == f"unix:path={tmp_path / 'bus'}"
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/nonexistent")
    with pytest.raises(OSError, match="no D-Bus session bus"):
        session_bus_address()


def test_bind_shortcuts_marshals_as_the_portal_documents() -> None:
    """What we still build by hand: the BindShortcuts arguments, in jeepney's value shapes."""
    body = (*portal.bind_shortcuts_body("/s/1", "CTRL+ALT+space"), {"handle_token": ("s", "t")})
    message = portal.portal_call(portal.SHORTCUTS, "BindShortcuts", portal.BIND_SIGNATURE, body)
    back = Message.from_buffer(message.serialise(serial=1))
    assert back.header.fields[HeaderFields.signature] == "oa(sa{sv})sa{sv}"
    assert back.body == ("/s/1", [("toggle-chat", {
        "description": ("s", "Open or hide the Hivetray quick chat"),
        "preferred_trigger": ("s", "CTRL+ALT+space")})], "", {"handle_token": ("s", "t")})
