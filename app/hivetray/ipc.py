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
import sys
from collections.abc import Awaitable, Callable
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
    RequestCancelled,
    UnsafeRuntimeDir,
    error_to_wire,
)
from hivetray.ipc_client import call, connect, encode, read_short_line, request
from hivetray.probe import instance_alive, read_endpoint, use_tcp

__all__ = ["AlreadyRunning", "NoInstance", "Reply", "Server", "UnsafeRuntimeDir", "call",
           "instance_alive", "read_endpoint", "request", "serve", "use_tcp"]

log = logging.getLogger(__name__)

#: longest request line the server reads (images travel base64-encoded inside it)
REQUEST_LIMIT = 64 * 2**20
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


def _error_line(exc: HivetrayError) -> bytes:
    """The reply line for an error; its traceback stays on this side."""
    wire = error_to_wire(exc)
    wire.pop("traceback", None)
    return encode({"ok": False, "error": wire})


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
        hello = probe.server_hello(token, await read_short_line(reader))
        if hello is None:
            return False
        answer, client_nonce, server_nonce = hello
        writer.write(answer)
        await writer.drain()
        return probe.check_client_proof(token, client_nonce, server_nonce,
                                        await read_short_line(reader))


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
        # the token is always set on Windows (``use_tcp``); naming the platform as well lets
        # the type checker see that the unix-socket server never starts there (no AF_UNIX)
        if sys.platform == "win32" or handle.token is not None:
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
        _reader, writer = await connect(path)
    except NoInstance:
        return False
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    return True


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
        writer.write(encode({"chunk": chunk}))
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
        return encode({"ok": True, "result": work.result()})
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
    if deeper_than(request, MAX_REQUEST_DEPTH):
        raise InvalidRequest(f"the request nests deeper than {MAX_REQUEST_DEPTH} levels")
    return request


def deeper_than(value: Any, limit: int) -> bool:
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
