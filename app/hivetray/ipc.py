"""The instance socket: JSON lines over a local socket only this user can open.

A request is one line ``{"cmd": ..., ...}``; the reply is zero or more ``{"chunk": {...}}`` lines
then one ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": {...}}`` line. A client that
closes the connection early (Ctrl-C) cancels its request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from hivetray.config import write_atomic
from hivetray.errors import HivetrayError, error_from_wire, error_to_wire
from hivetray.probe import instance_alive, read_endpoint, use_tcp

__all__ = ["AlreadyRunning", "NoInstance", "Server", "call", "instance_alive", "request", "serve"]

LINE_LIMIT = 64 * 2**20

Reply = Callable[[dict[str, Any]], Awaitable[None]]
Handler = Callable[[dict[str, Any], Reply], Awaitable[Any]]


class NoInstance(HivetrayError):
    """No running Hivetray answers on this user's socket."""


def _encode(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, default=str) + "\n").encode()


class AlreadyRunning(HivetrayError):
    pass


class Server:
    """The listening socket plus its live connections, so closing can let replies finish."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.server: asyncio.AbstractServer | None = None
        self.connections: set[asyncio.Task[None]] = set()

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


async def serve(path: Path, handler: Handler) -> Server:
    """Listen on ``path`` (0700 folder, 0600 socket); a stale socket file is replaced."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    if path.exists():
        if instance_alive(path):
            raise AlreadyRunning(f"another Hivetray instance is running (socket {path})")
        path.unlink()

    handle = Server(path)

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handle.connections.add(task)
        try:
            await _serve_client(reader, writer, handler)
        except ConnectionError:
            pass  # the client went away mid-reply; its request was cancelled
        finally:
            handle.connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await writer.wait_closed()

    old_umask = os.umask(0o177)
    try:
        if use_tcp():
            token = os.urandom(16).hex()
            server = await asyncio.start_server(_with_token(on_client, token), "127.0.0.1", 0,
                                                limit=LINE_LIMIT)
            port = server.sockets[0].getsockname()[1]
            write_atomic(path, json.dumps({"port": port, "token": token, "pid": os.getpid()}))
        else:
            server = await asyncio.start_unix_server(on_client, str(path), limit=LINE_LIMIT)
    finally:
        os.umask(old_umask)
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    handle.server = server
    return handle


ClientCallback = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _with_token(on_client: ClientCallback, token: str) -> ClientCallback:
    """TCP only: the first line must be the token from the user-only endpoint file."""
    async def checked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        import hmac

        line = await reader.readline()
        try:
            offered = str(json.loads(line).get("token", "")) if line else ""
        except (ValueError, AttributeError):
            offered = ""
        if not hmac.compare_digest(offered, token):
            writer.close()
            return
        await on_client(reader, writer)

    return checked


async def _serve_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        handler: Handler) -> None:
    line = await reader.readline()
    if not line:
        return
    try:
        request = json.loads(line)
        if not isinstance(request, dict):
            raise ValueError("request must be a JSON object")
    except ValueError as exc:
        writer.write(_encode({"ok": False, "error": {"type": "InvalidRequest",
                                                      "message": f"bad request line: {exc}"}}))
        return

    async def reply(chunk: dict[str, Any]) -> None:
        writer.write(_encode({"chunk": chunk}))
        await writer.drain()

    work = asyncio.ensure_future(handler(request, reply))
    hangup = asyncio.ensure_future(reader.read())  # EOF = the client went away
    done, _ = await asyncio.wait({work, hangup}, return_when=asyncio.FIRST_COMPLETED)
    if work not in done:
        work.cancel()  # the client left (Ctrl-C): cancel its request in the worker
        with contextlib.suppress(BaseException):
            await work
        return
    hangup.cancel()
    try:
        result = work.result()
        writer.write(_encode({"ok": True, "result": result}))
    except Exception as exc:
        writer.write(_encode({"ok": False, "error": error_to_wire(exc)}))
    with contextlib.suppress(ConnectionError):
        await writer.drain()


async def request(path: Path, cmd: str, **params: Any) -> AsyncIterator[dict[str, Any]]:
    """Send one command; yield its chunks, then ``{"result": ...}``; raise its error."""
    reader, writer = await _connect(path)
    try:
        writer.write(_encode({"cmd": cmd, **params}))
        await writer.drain()
        while line := await reader.readline():
            message = json.loads(line)
            if "chunk" in message:
                yield message["chunk"]
            elif message.get("ok"):
                yield {"result": message.get("result")}
                return
            else:
                raise error_from_wire(message.get("error") or {})
        raise NoInstance("the Hivetray instance closed the connection (did it quit?)")
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def _connect(path: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    try:
        if not use_tcp():
            return await asyncio.open_unix_connection(str(path), limit=LINE_LIMIT)
        endpoint = read_endpoint(path)
        if endpoint is None:
            raise FileNotFoundError(2, "no endpoint file", str(path))
        reader, writer = await asyncio.open_connection("127.0.0.1", endpoint.port,
                                                       limit=LINE_LIMIT)
        writer.write(_encode({"token": endpoint.token}))
        return reader, writer
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise NoInstance(f"no Hivetray instance is running ({exc.strerror}: {path})") from None


async def call(path: Path, cmd: str, **params: Any) -> Any:
    async for item in request(path, cmd, **params):
        if "result" in item:
            return item["result"]
    return None
