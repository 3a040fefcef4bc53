"""The instance socket on both transports: AF_UNIX (POSIX) and loopback TCP with a token
(Windows; forced here with HIVETRAY_IPC=tcp), and what it does with hostile input: the TCP
handshake, connection caps, malformed requests and replies. The folder and peer checks are in
test_sockdir.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import select
import socket
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from hivetray import ipc, ipc_client, probe
from hivetray.errors import (
    ContextOverflow,
    InternalError,
    InvalidRequest,
    RemoteError,
    ReplyTooLarge,
)
from hivetray.probe import read_endpoint
from tests.helpers.waiting import until, wait_until


async def echo(request: dict[str, Any], reply: ipc.Reply) -> Any:
    await reply({"text": "chunk"})
    return {"echo": request.get("value")}


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_round_trip_and_single_owner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     transport: str) -> None:
    if transport == "tcp":
        monkeypatch.setenv("HIVETRAY_IPC", "tcp")
    path = tmp_path / "run" / "instance.sock"

    async def scenario() -> None:
        server = await ipc.serve(path, echo)
        try:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
            # the bare probe blocks; in TCP mode this loop must answer its handshake
            assert await asyncio.to_thread(ipc.instance_alive, path)
            items = [item async for item in ipc.request(path, "anything", value=7)]
            assert items == [{"text": "chunk"}, {"result": {"echo": 7}}]
            with pytest.raises(ipc.AlreadyRunning):
                await ipc.serve(path, echo)
        finally:
            await server.close()
        assert not ipc.instance_alive(path)
        with pytest.raises(ipc.NoInstance):
            await ipc.call(path, "anything")

    asyncio.run(scenario())


def test_tcp_refuses_a_connection_without_the_token(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIVETRAY_IPC", "tcp")
    path = tmp_path / "instance.sock"

    async def scenario() -> None:
        server = await ipc.serve(path, echo)
        try:
            endpoint = read_endpoint(path)
            assert endpoint is not None and len(endpoint.token) == 32
            reader, writer, _ = await tcp_hello(endpoint.port)
            writer.write(json.dumps({"proof": "guess"}).encode() + b"\n")
            writer.write(json.dumps({"cmd": "anything", "value": 1}).encode() + b"\n")
            await writer.drain()
            assert await reader.read() == b""  # closed without an answer
            writer.close()
        finally:
            await server.close()

    asyncio.run(scenario())


# -- TCP: the mutual handshake, hostile peers, caps ------------------------------------------
async def tcp_hello(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str]:
    """Open a connection and send a valid hello; the server must answer with its proof."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    client_nonce = probe.new_nonce()
    writer.write(probe.encode_line({"hello": client_nonce}))
    await writer.drain()
    answer = json.loads(await asyncio.wait_for(reader.readline(), 10))
    assert set(answer) == {"proof", "nonce"}
    return reader, writer, client_nonce


def raw_exchange(address: str | tuple[str, int], payload: bytes, *,
                 hello: bool = False) -> tuple[bytes, bytes]:
    """On a plain socket: (the server's answer to a valid hello, if sent; everything received
    after ``payload`` until the server closes). Fails if the server does not close in 10 s."""
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    greeting, rest = b"", b""
    with socket.socket(family) as conn:
        conn.settimeout(10)
        conn.connect(address)
        if hello:
            conn.sendall(probe.encode_line({"hello": probe.new_nonce()}))
            while not greeting.endswith(b"\n"):
                greeting += conn.recv(1)
        with contextlib.suppress(ConnectionError):  # the server may close before reading all
            conn.sendall(payload)
            while chunk := conn.recv(65536):
                rest += chunk
    return greeting, rest


REQUEST_LINE = b'{"cmd": "anything", "value": 1}\n'
HOSTILE = {  # name: (after a valid hello?, bytes sent)
    "wrong proof": (True, b'{"proof": "' + b"0" * 64 + b'"}\n' + REQUEST_LINE),
    "non-ASCII proof": (True, '{"proof": "\u00e9\u00e9"}\n'.encode() + REQUEST_LINE),
    "non-ASCII hello": (False, '{"hello": "\u00e9\u00e9"}\n'.encode() + REQUEST_LINE),
    "non-ASCII token (old client)": (False, '{"token": "\u00e9"}\n'.encode() + REQUEST_LINE),
    "oversized first line": (False, b"a" * 8192),
    "deeply nested first line": (False, b"[" * 100_000 + b"\n"),
    "silent": (False, b""),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_tcp_hostile_peers_are_closed_without_an_answer(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        case: str) -> None:
    monkeypatch.setenv("HIVETRAY_IPC", "tcp")
    # only the silent peer may be ended by the deadline; the others must be closed at once
    monkeypatch.setattr(ipc, "HANDSHAKE_TIMEOUT_S", 0.3 if case == "silent" else 60.0)
    after_hello, payload = HOSTILE[case]
    path = tmp_path / "run" / "instance.sock"

    async def scenario() -> None:
        server = await ipc.serve(path, echo)
        try:
            endpoint = read_endpoint(path)
            assert endpoint is not None
            greeting, rest = await asyncio.to_thread(
                raw_exchange, ("127.0.0.1", endpoint.port), payload, hello=after_hello)
            assert rest == b""  # closed, and nothing but the server's proof was said
            assert bool(greeting) == after_hello
            assert await ipc.call(path, "anything", value=3) == {"echo": 3}  # still serving
        finally:
            await server.close()

    asyncio.run(scenario())
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


async def finish_tcp_handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                               token: str) -> None:
    client_nonce = probe.new_nonce()
    writer.write(probe.encode_line({"hello": client_nonce}))
    server_nonce = probe.check_server_hello(token, client_nonce, await reader.readline())
    assert server_nonce is not None
    writer.write(probe.encode_line(probe.client_proof_message(token, client_nonce,
                                                              server_nonce)))


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_connections_are_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                transport: str) -> None:
    cap = 3
    if transport == "tcp":
        monkeypatch.setenv("HIVETRAY_IPC", "tcp")
        monkeypatch.setattr(ipc, "MAX_PENDING", cap)  # not yet authenticated
        monkeypatch.setattr(ipc, "HANDSHAKE_TIMEOUT_S", 60.0)
    else:
        monkeypatch.setattr(ipc, "MAX_CONNECTIONS", cap)
    path = tmp_path / "run" / "instance.sock"

    async def scenario() -> None:
        server = await ipc.serve(path, echo)
        endpoint = read_endpoint(path) if transport == "tcp" else None
        address: str | tuple[str, int] = (
            str(path) if endpoint is None else ("127.0.0.1", endpoint.port))

        async def open_idle() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            if endpoint is None:
                return await asyncio.open_unix_connection(str(path))
            return await asyncio.open_connection("127.0.0.1", endpoint.port)

        try:
            idle = [await open_idle() for _ in range(cap)]
            await until(lambda: len(server.connections) == cap, 10, what="idle connections")
            _, extra = await asyncio.to_thread(raw_exchange, address, b"")
            assert extra == b""  # the one over the cap was closed at once
            reader, writer = idle[0]  # the idle ones were kept: the first still works
            if endpoint is not None:
                await finish_tcp_handshake(reader, writer, endpoint.token)
            writer.write(REQUEST_LINE)
            assert json.loads(await reader.readline()) == {"chunk": {"text": "chunk"}}
            assert json.loads(await reader.readline()) == {"ok": True, "result": {"echo": 1}}
            for _, idle_writer in idle:
                idle_writer.close()
            await until(lambda: not server.connections, 10, what="idle connections closed")
            assert await ipc.call(path, "anything", value=2) == {"echo": 2}
        finally:
            await server.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("impostor", ["wrong proof", "silent"])
def test_a_listener_without_the_token_is_not_our_instance(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, impostor: str) -> None:
    """Our instance died and someone else now listens on its port: nothing is sent to them
    beyond a random nonce (no token, no request), and no instance is reported."""
    monkeypatch.setenv("HIVETRAY_IPC", "tcp")
    monkeypatch.setattr(ipc_client, "HANDSHAKE_TIMEOUT_S", 0.5)
    monkeypatch.setattr(probe, "PROBE_TIMEOUT_S", 0.5)
    folder = tmp_path / "run"
    folder.mkdir(mode=0o700)
    path = folder / "instance.sock"
    token = "7" * 32
    received: list[bytes] = []

    async def impostor_server(reader: asyncio.StreamReader,
                              writer: asyncio.StreamWriter) -> None:
        try:
            received.append(await reader.readline())
            if impostor == "wrong proof":
                writer.write(probe.encode_line({"proof": "ab" * 32, "nonce": probe.new_nonce()}))
            received.append(await reader.read())  # all the client says until it hangs up
        finally:
            received.append(b"<closed>")
            writer.close()

    async def scenario() -> None:
        fake = await asyncio.start_server(impostor_server, "127.0.0.1", 0)
        port = fake.sockets[0].getsockname()[1]
        path.write_text(json.dumps({"port": port, "token": token, "pid": os.getpid()}))
        os.chmod(path, 0o600)
        try:
            assert not await asyncio.to_thread(probe.instance_alive, path)
            with pytest.raises(ipc.NoInstance, match="did not prove"):
                await ipc.call(path, "chat", prompt="private words")
            await until(lambda: received.count(b"<closed>") == 2, 10, what="both hung up")
            server = await ipc.serve(path, echo)  # the stale endpoint is replaced, not obeyed
            try:
                assert await ipc.call(path, "anything", value=4) == {"echo": 4}
            finally:
                await server.close()
        finally:
            fake.close()

    asyncio.run(scenario())
    said = b"".join(received)
    assert b"hello" in said
    assert token.encode() not in said and b"cmd" not in said and b"private" not in said


# -- malformed requests and replies: one typed line, never a traceback ------------------------
def nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


MALFORMED = {
    "deeply nested": b"[" * 100_000,
    "past the depth limit": json.dumps({"cmd": "x", "a": nested(40)}).encode(),
    "not JSON": b"hello there",
    "not UTF-8": b"\xff\xfe{}",
    "not an object": b"[1, 2]",
    "no command": b'{"value": 1}',
    "command not a string": b'{"cmd": 5}',
    "over-long integer": b'{"cmd": "x", "n": ' + b"1" * 5000 + b"}",
    "over the request limit": b'{"cmd": "x", "pad": "' + b"a" * 4096 + b'"}',
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_request_gets_one_typed_line(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 case: str) -> None:
    monkeypatch.setattr(ipc, "REQUEST_LIMIT", 2048, raising=False)
    path = tmp_path / "run" / "instance.sock"
    calls: list[dict[str, Any]] = []

    async def handler(request: dict[str, Any], reply: ipc.Reply) -> Any:
        calls.append(request)

    async def scenario() -> bytes:
        server = await ipc.serve(path, handler)
        try:
            _, rest = await asyncio.to_thread(raw_exchange, str(path), MALFORMED[case] + b"\n")
            return rest
        finally:
            await server.close()

    lines = asyncio.run(scenario()).splitlines()
    assert len(lines) == 1
    error = json.loads(lines[0])["error"]
    assert json.loads(lines[0])["ok"] is False
    assert set(error) == {"type", "message", "fields"} and error["type"] == "InvalidRequest"
    assert "\n" not in error["message"] and "Traceback" not in error["message"]
    assert calls == []


async def failing(request: dict[str, Any], reply: ipc.Reply) -> Any:
    if request["cmd"] == "unknown":
        raise InvalidRequest("unknown command 'unknown'")
    if request["cmd"] == "worker":  # an error from a worker, with the worker's traceback
        err = RemoteError("ValueError", "bad input")
        err.remote_traceback = "Traceback (most recent call last):\n  in the worker"
        raise err
    raise KeyError("a detail of the bug")  # a bug in a handler


@pytest.mark.parametrize(("cmd", "error_type", "message"), [
    ("unknown", InvalidRequest, "unknown command 'unknown'"),
    ("worker", RemoteError, "ValueError: bad input"),
    ("bug", InternalError, "internal error in Hivetray: KeyError; see the app log"),
])
def test_handler_errors_reach_the_client_without_a_traceback(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, cmd: str,
        error_type: type[Exception], message: str) -> None:
    path = tmp_path / "run" / "instance.sock"

    async def scenario() -> bytes:
        server = await ipc.serve(path, failing)
        try:
            with pytest.raises(error_type) as raised:
                await ipc.call(path, cmd)
            assert str(raised.value) == message
            assert getattr(raised.value, "remote_traceback", None) is None
            line = json.dumps({"cmd": cmd}).encode() + b"\n"
            return (await asyncio.to_thread(raw_exchange, str(path), line))[1]
        finally:
            await server.close()

    wire = asyncio.run(scenario())
    assert b"traceback" not in wire.lower() and b"a detail of the bug" not in wire
    logged = [r for r in caplog.records if r.levelno >= logging.WARNING]
    if cmd == "bug":  # the bug's traceback goes to the app log, once per request
        assert [(r.name, r.levelno) for r in logged] == [("hivetray.ipc", logging.ERROR)] * 2
        assert all(r.exc_info and r.exc_info[0] is KeyError for r in logged)
        caplog.clear()  # expected: keep the suite's no-warnings rule for everything else
    else:
        assert logged == []


def test_a_reply_over_the_client_limit_is_a_typed_error(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ipc_client, "REPLY_LIMIT", 1024)
    path = tmp_path / "run" / "instance.sock"

    async def big(request: dict[str, Any], reply: ipc.Reply) -> Any:
        return "x" * request["size"]

    async def scenario() -> None:
        server = await ipc.serve(path, big)
        try:
            with pytest.raises(ReplyTooLarge) as raised:
                await ipc.call(path, "embed", size=5000)
            assert raised.value.limit == 1024 and "\n" not in str(raised.value)
            assert await ipc.call(path, "embed", size=10) == "x" * 10
        finally:
            await server.close()

    asyncio.run(scenario())


BROKEN_REPLIES = {  # what a (wrong) server sends: the client's error
    "not JSON": (b"garbage\n", InternalError),
    "not an object": (b"[1]\n", InternalError),
    "chunk not an object": (b'{"chunk": 3}\n', InternalError),
    "error not an object": (b'{"ok": false, "error": "oops"}\n', InternalError),
    "fields not an object": (b'{"ok": false, "error": {"type": "ContextOverflow", '
                             b'"message": "too long", "fields": 7}}\n', ContextOverflow),
    "cut mid-line": (b'{"chunk": {"text": "a"}}\n{"ok": tr', ipc.NoInstance),
    "closed after a chunk": (b'{"chunk": {"text": "a"}}\n', ipc.NoInstance),
}


@pytest.mark.parametrize("case", list(BROKEN_REPLIES))
def test_a_broken_reply_is_a_one_line_error(tmp_path: Path, case: str) -> None:
    sent, error_type = BROKEN_REPLIES[case]
    folder = tmp_path / "run"
    folder.mkdir(mode=0o700)
    path = folder / "instance.sock"

    async def wrong_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(sent)
        await writer.drain()
        writer.close()

    async def scenario() -> None:
        fake = await asyncio.start_unix_server(wrong_server, str(path))
        try:
            with pytest.raises(error_type) as raised:
                await ipc.call(path, "chat", prompt="hi")
            assert "\n" not in str(raised.value)
        finally:
            fake.close()

    asyncio.run(scenario())


def test_a_connection_reset_mid_reply_is_no_instance(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir(mode=0o700)
    path = folder / "instance.sock"

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        with socket.socket(socket.AF_UNIX) as listener:
            listener.bind(str(path))
            listener.listen()
            listener.setblocking(False)
            call = asyncio.ensure_future(ipc.call(path, "chat", prompt="hi"))
            conn, _ = await loop.sock_accept(listener)
            # the request stays unread in the kernel: closing now resets the client's side
            await until(lambda: select.select([conn], [], [], 0)[0], 10, what="request sent")
            await loop.sock_sendall(conn, b'{"chunk": {"text": "a"}}\n')
            conn.close()
            with pytest.raises(ipc.NoInstance, match="before its reply was complete"):
                await call

    asyncio.run(scenario())


def test_the_tcp_handshake_works_without_openssl(tmp_path: Path) -> None:
    """The tray app imports with ``_hashlib`` blocked (see lean_imports.without_openssl): the HMAC
    handshake must then run on hashlib's builtin sha256, and not load OpenSSL itself."""
    code = textwrap.dedent("""
        import sys
        for name in ("_hashlib", "_ssl", "ssl"):
            sys.modules[name] = None
        import asyncio, pathlib
        from hivetray import ipc

        async def echo(request, reply):
            return request["value"]

        async def main():
            path = pathlib.Path(sys.argv[1]) / "run" / "instance.sock"
            server = await ipc.serve(path, echo)
            try:
                alive = await asyncio.to_thread(ipc.instance_alive, path)
                print(alive, await ipc.call(path, "x", value=5), sys.modules["_hashlib"])
            finally:
                await server.close()

        asyncio.run(main())
    """)
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                          env={**os.environ, "HIVETRAY_IPC": "tcp"}, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "5", "None"]


@pytest.mark.real
def test_daemon_and_cli_over_tcp(home: Any, write_config: Any, tiny_models: dict[str, Path],
                                 tmp_path: Path) -> None:
    from tests.conftest import make_config

    write_config(make_config(tiny_models["chat"]))
    env = {**os.environ, "HIVETRAY_IPC": "tcp", "HIVETRAY_NO_BUILTIN_MODEL": "1"}
    log = open(tmp_path / "daemon.log", "wb")
    daemon = subprocess.Popen([sys.executable, "-m", "hivetray", "daemon"], env=env,
                              stdout=log, stderr=log)
    try:
        def status() -> dict[str, Any] | None:
            done = subprocess.run([sys.executable, "-m", "hivetray", "status", "--json"],
                                  env=env, capture_output=True, text=True, check=False)
            doc = json.loads(done.stdout) if done.returncode == 0 else None
            return doc if doc and doc["pid"] == daemon.pid else None

        doc = wait_until(status, 30, what="status from the daemon over TCP")
        assert [r["role"] for r in doc["roles"]] == ["chat", "vision", "embed", "rerank"]
        chat = subprocess.run([sys.executable, "-m", "hivetray", "chat", "hi", "--max-tokens",
                               "4", "--json"], env=env, capture_output=True, text=True,
                              timeout=60, check=False)
        assert chat.returncode == 0, chat.stderr
        assert json.loads(chat.stdout.splitlines()[-1])["usage"]["completion_tokens"] == 4
        quit_ = subprocess.run([sys.executable, "-m", "hivetray", "quit"], env=env,
                               capture_output=True, text=True, timeout=30, check=False)
        assert quit_.returncode == 0, quit_.stderr
        assert daemon.wait(15) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(10)
        log.close()
