"""The instance socket: JSON lines over a local socket only this user can open.

A request is one line ``{"cmd": ..., ...}``; the reply is zero or more ``{"chunk": {...}}`` lines
then one ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": {"type", "message",
"fields"}}`` line. A client that closes the connection early (Ctrl-C) cancels its request.

Hostile input is expected: the socket folder is checked on both ends (:mod:`hivetray.sockdir`),
peers of other users are dropped where the platform says who they are, TCP peers must complete
the mutual token handshake (:mod:`hivetray.probe`) within a deadline and a small line limit,
connections are capped, every malformed request gets a one-line typed error, and no reply ever
carries a server traceback (a bug's traceback goes to the app log only).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from hivetray import probe, sockdir
from hivetray.config import write_atomic
from hivetray.errors import (
    AlreadyRunning,
    HivetrayError,
    InternalError,
    InvalidRequest,
    NoInstance,
    ReplyTooLarge,
    RequestCancelled,
    UnsafeRuntimeDir,
    error_from_wire,
    error_to_wire,
)
from hivetray.probe import instance_alive, read_endpoint, use_tcp

__all__ = ["AlreadyRunning", "NoInstance", "Reply", "Server", "UnsafeRuntimeDir", "call",
           "instance_alive", "read_endpoint", "request", "serve", "use_tcp"]

log = logging.getLogger(__name__)

#: longest request line the server reads (images travel base64-encoded inside it)
REQUEST_LIMIT = 64 * 2**20
#: longest reply line a client reads (a large embed batch can exceed it: ReplyTooLarge)
REPLY_LIMIT = 64 * 2**20
#: a TCP peer has this long to complete the handshake (both directions)
HANDSHAKE_TIMEOUT_S = 2.0
#: TCP connections still in their handshake; past it new ones are closed at once
MAX_PENDING = 16
#: every open connection, both transports
MAX_CONNECTIONS = 128
#: requests nest a few levels (chat messages with content parts); deeper is not ours
MAX_REQUEST_DEPTH = 32

Reply = Callable[[dict[str, Any]], Awaitable[None]]
Handler = Callable[[dict[str, Any], Reply], Awaitable[Any]]


def _encode(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, default=str) + "\n").encode()


def _error_line(exc: HivetrayError) -> bytes:
    """The reply line for an error; its traceback stays on this side."""
    wire = error_to_wire(exc)
    wire.pop("traceback", None)
    return _encode({"ok": False, "error": wire})


class Server:
    """The listening socket plus its live connections, so closing can let replies finish."""

    def __init__(self, path: Path, handler: Handler, token: str | None) -> None:
        self.path = path
        self.handler = handler
        self.token = token  # TCP only: the handshake's shared secret
        self.server: asyncio.AbstractServer | None = None
        self.connections: set[asyncio.Task[None]] = set()
        self.pending = 0  # connections still in their TCP handshake
        self._uid = sockdir.current_uid()

    async def close(self, timeout: float = 1.0) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        with contextlib.suppress(OSError):
            self.path.unlink()
        if self.connections:
            # let in-progress replies (the answer to `hivetray quit`) reach their clients
            _done, pending = await asyncio.wait(self.connections, timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def on_client(self, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self.connections) >= MAX_CONNECTIONS or (
                self.token is not None and self.pending >= MAX_PENDING):
            log.debug("connection refused: too many open connections")
            writer.close()
            return
        self.connections.add(task)
        try:
            if self._admitted(writer) and await self._handshake(reader, writer):
                await _serve_client(reader, writer, self.handler)
        except ConnectionError:
            pass  # the client went away mid-reply; its request was cancelled
        finally:
            self.connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await writer.wait_closed()

    def _admitted(self, writer: asyncio.StreamWriter) -> bool:
        """AF_UNIX: drop a peer of another user (possible only if the folder was opened up)."""
        if self.token is not None or self._uid is None:
            return True
        uid = sockdir.peer_uid(writer.get_extra_info("socket"))
        if uid is None or uid == self._uid:
            return True
        log.info("dropped a connection from uid %d: this instance serves only uid %d",
                 uid, self._uid)
        return False

    async def _handshake(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> bool:
        """TCP: the mutual challenge-response of :mod:`hivetray.probe`, within the deadline.
        Any failure means: close without a word (nothing to learn for a prober)."""
        if self.token is None:
            return True
        self.pending += 1
        try:
            async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
                ok = await self._challenge(reader, writer, self.token)
        except TimeoutError:
            ok = False
        finally:
            self.pending -= 1
        if not ok:
            log.debug("closed a TCP connection that failed the handshake")
        return ok

    @staticmethod
    async def _challenge(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                         token: str) -> bool:
        hello = probe.server_hello(token, await _read_short_line(reader))
        if hello is None:
            return False
        answer, client_nonce, server_nonce = hello
        writer.write(answer)
        await writer.drain()
        return probe.check_client_proof(token, client_nonce, server_nonce,
                                        await _read_short_line(reader))


async def serve(path: Path, handler: Handler) -> Server:
    """Listen on ``path`` (0700 folder, 0600 socket); a stale socket file is replaced.

    Raises UnsafeRuntimeDir when the folder (or a file at ``path``) is not private to us, and
    AlreadyRunning when a live instance answers there.
    """
    sockdir.ensure_private_dir(path.parent)
    tcp = use_tcp()
    if sockdir.check_endpoint(path, want_socket=not tcp) and await _answering(path):
        raise AlreadyRunning(f"another Hivetray instance is running (socket {path})")
    with contextlib.suppress(FileNotFoundError):
        path.unlink()

    handle = Server(path, handler, os.urandom(16).hex() if tcp else None)
    old_umask = os.umask(0o177)
    try:
        if handle.token is not None:
            server = await asyncio.start_server(handle.on_client, "127.0.0.1", 0,
                                                limit=REQUEST_LIMIT)
            port = server.sockets[0].getsockname()[1]
            write_atomic(path, json.dumps({"port": port, "token": handle.token,
                                           "pid": os.getpid()}))
        else:
            server = await asyncio.start_unix_server(handle.on_client, str(path),
                                                     limit=REQUEST_LIMIT)
    finally:
        os.umask(old_umask)
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    handle.server = server
    return handle


async def _answering(path: Path) -> bool:
    """``probe.instance_alive`` without blocking the loop: in TCP mode the instance that
    must answer the handshake may be served by this very loop (tests, a restart in-process)."""
    try:
        _reader, writer = await _connect(path)
    except NoInstance:
        return False
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    return True


async def _read_short_line(reader: asyncio.StreamReader) -> bytes | None:
    """One handshake line of at most HANDSHAKE_LINE_LIMIT bytes, or None (too long, EOF).

    Byte by byte, because the reader's own limit is the request's 64 MiB and the bytes after
    the newline (the request, once authenticated) must stay in the reader. The calls return at
    once from the buffer, so this costs ~100 cheap awaits per handshake.
    """
    line = bytearray()
    while len(line) <= probe.HANDSHAKE_LINE_LIMIT:
        byte = await reader.read(1)
        if not byte:
            return None
        if byte == b"\n":
            return bytes(line)
        line += byte
    return None


async def _serve_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        handler: Handler) -> None:
    try:
        line = await reader.readline()
    except ValueError:  # asyncio's LimitOverrunError, re-raised by readline
        writer.write(_error_line(InvalidRequest(
            f"the request is larger than {REQUEST_LIMIT / 2**20:.0f} MiB: send less at once")))
        await writer.drain()
        return
    if not line:
        return
    try:
        request = _parse_request(line)
    except InvalidRequest as exc:
        writer.write(_error_line(exc))
        await writer.drain()
        return

    async def reply(chunk: dict[str, Any]) -> None:
        writer.write(_encode({"chunk": chunk}))
        await writer.drain()

    work = asyncio.ensure_future(handler(request, reply))
    hangup = asyncio.ensure_future(_until_eof(reader))  # EOF = the client went away
    done, _ = await asyncio.wait({work, hangup}, return_when=asyncio.FIRST_COMPLETED)
    if work not in done:
        work.cancel()  # the client left (Ctrl-C): cancel its request in the worker
        with contextlib.suppress(BaseException):
            await work
        return
    hangup.cancel()
    writer.write(_result_line(request["cmd"], work))
    with contextlib.suppress(ConnectionError):
        await writer.drain()


async def _until_eof(reader: asyncio.StreamReader) -> None:
    """Wait for the client to hang up, discarding anything it sends meanwhile (unbounded
    ``read()`` would keep it all in memory)."""
    while await reader.read(65536):
        pass


def _result_line(cmd: str, work: asyncio.Future[Any]) -> bytes:
    """The final reply line of a finished request: its result or its typed error."""
    try:
        return _encode({"ok": True, "result": work.result()})
    except HivetrayError as exc:
        return _error_line(exc)
    except asyncio.CancelledError:  # cancelled inside the instance (pool shutting down)
        return _error_line(RequestCancelled("the request was cancelled by the instance"))
    except Exception as exc:  # a bug (in the handler, or an unencodable result)
        log.error("internal error in the %r command", cmd[:40], exc_info=exc)
        return _error_line(InternalError(
            f"internal error in Hivetray: {type(exc).__name__}; see the app log"))


def _parse_request(line: bytes) -> dict[str, Any]:
    """The request object, or InvalidRequest saying what is wrong with the line."""
    try:
        request = json.loads(line)
    except RecursionError:
        raise InvalidRequest(f"the request nests deeper than {MAX_REQUEST_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an over-long integer
        raise InvalidRequest(f"the request is not valid JSON ({exc})") from None
    if not isinstance(request, dict):
        raise InvalidRequest('a request must be a JSON object such as {"cmd": "status"}')
    if not isinstance(request.get("cmd"), str):
        raise InvalidRequest('a request needs "cmd": the command name, a string')
    if _deeper_than(request, MAX_REQUEST_DEPTH):
        raise InvalidRequest(f"the request nests deeper than {MAX_REQUEST_DEPTH} levels")
    return request


def _deeper_than(value: Any, limit: int) -> bool:
    """Iterative (a recursive walk is what fails on hostile input)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = (item.values() if isinstance(item, dict)
                    else item if isinstance(item, list) else ())
        for child in children:
            if isinstance(child, dict | list):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


async def request(path: Path, cmd: str, **params: Any) -> AsyncIterator[dict[str, Any]]:
    """Send one command; yield its chunks, then ``{"result": ...}``; raise its error.

    Every failure is a HivetrayError with a one-line message: NoInstance when the instance
    goes away, ReplyTooLarge past REPLY_LIMIT, InternalError for a reply that is not ours.
    """
    reader, writer = await _connect(path)
    try:
        try:
            writer.write(_encode({"cmd": cmd, **params}))
            await writer.drain()
        except ConnectionError:
            raise _gone() from None
        while True:
            try:
                line = await reader.readline()
            except ValueError:  # asyncio's LimitOverrunError, re-raised by readline
                raise ReplyTooLarge(REPLY_LIMIT) from None
            except ConnectionError:
                raise _gone() from None
            if not line.endswith(b"\n"):  # EOF, possibly in the middle of a line
                raise _gone()
            message = _parse_reply(line)
            if "chunk" in message:
                yield message["chunk"]
            elif message.get("ok") is True:
                yield {"result": message.get("result")}
                return
            else:
                raise _wire_error(message.get("error"))
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


def _gone() -> NoInstance:
    return NoInstance("the Hivetray instance closed the connection before its reply was "
                      "complete (did it quit or crash?)")


def _malformed(what: str) -> InternalError:
    return InternalError(f"the Hivetray instance sent a malformed reply ({what}); if it is "
                         "another version of Hivetray, restart it with `hivetray quit`")


def _parse_reply(line: bytes) -> dict[str, Any]:
    try:
        message = json.loads(line)
    except (ValueError, RecursionError):
        raise _malformed("not JSON") from None
    if not isinstance(message, dict):
        raise _malformed("not a JSON object")
    if "chunk" in message and not isinstance(message["chunk"], dict):
        raise _malformed("a chunk that is not an object")
    return message


def _wire_error(error: object) -> HivetrayError:
    """The error of a reply, rebuilt from its type, message and fields only."""
    if not isinstance(error, dict):
        return _malformed("neither a result nor an error")
    fields = error.get("fields")
    return error_from_wire({"type": str(error.get("type", "RemoteError")),
                            "message": str(error.get("message", "")),
                            "fields": fields if isinstance(fields, dict) else {}})


async def _connect(path: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a connection, after checking the folder and the endpoint are private to us; in
    TCP mode, only once the listener has proved it knows the token."""
    tcp = use_tcp()
    if not (sockdir.check_private_dir(path.parent)
            and sockdir.check_endpoint(path, want_socket=not tcp)):
        raise NoInstance(f"no Hivetray instance is running (no socket at {path})")
    try:
        if not tcp:
            return await asyncio.open_unix_connection(str(path), limit=REPLY_LIMIT)
        endpoint = read_endpoint(path)
        if endpoint is None:
            raise NoInstance(f"no Hivetray instance is running (unreadable endpoint {path})")
        reader, writer = await asyncio.open_connection("127.0.0.1", endpoint.port,
                                                       limit=REPLY_LIMIT)
    except OSError as exc:  # refused, gone, reset
        reason = exc.strerror or type(exc).__name__
        raise NoInstance(f"no Hivetray instance is running ({reason}: {path})") from None
    try:
        if await _client_handshake(reader, writer, endpoint.token):
            return reader, writer
    except (ConnectionError, TimeoutError):
        pass
    writer.close()
    raise NoInstance(f"the process on port {endpoint.port} did not prove it is your Hivetray "
                     f"instance (the instance has probably exited and the port was reused)")


async def _client_handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                            token: str) -> bool:
    async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
        client_nonce = probe.new_nonce()
        writer.write(probe.encode_line({"hello": client_nonce}))
        await writer.drain()
        server_nonce = probe.check_server_hello(token, client_nonce,
                                                await _read_short_line(reader))
        if server_nonce is None:
            return False
        writer.write(probe.encode_line(probe.client_proof_message(token, client_nonce,
                                                                  server_nonce)))
        return True


async def call(path: Path, cmd: str, **params: Any) -> Any:
    async for item in request(path, cmd, **params):
        if "result" in item:
            return item["result"]
    return None
