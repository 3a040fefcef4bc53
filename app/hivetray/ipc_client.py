"""The instance socket's client side: connect (checking the folder, and in TCP mode that the
listener proves it knows the token), send one command, read its chunks and result.

Every failure is a one-line HivetrayError: NoInstance when the instance goes away,
ReplyTooLarge past ``REPLY_LIMIT``, InternalError for a reply that is not ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from hivetray import probe, sockdir
from hivetray.errors import (
    HivetrayError,
    InternalError,
    NoInstance,
    ReplyTooLarge,
    error_from_wire,
)
from hivetray.probe import read_endpoint, use_tcp

#: longest reply line a client reads (a large embed batch can exceed it: ReplyTooLarge)
REPLY_LIMIT = 64 * 2**20
#: the listener has this long to prove it knows the token (TCP mode)
HANDSHAKE_TIMEOUT_S = 2.0


def encode(obj: dict[str, Any]) -> bytes:
    """One JSON line of the protocol (both directions)."""
    return (json.dumps(obj, default=str) + "\n").encode()


async def read_short_line(reader: asyncio.StreamReader) -> bytes | None:
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



async def request(path: Path, cmd: str, **params: Any) -> AsyncIterator[dict[str, Any]]:
    """Send one command; yield its chunks, then ``{"result": ...}``; raise its error.

    Every failure is a HivetrayError with a one-line message: NoInstance when the instance
    goes away, ReplyTooLarge past REPLY_LIMIT, InternalError for a reply that is not ours.
    """
    reader, writer = await connect(path)
    try:
        try:
            writer.write(encode({"cmd": cmd, **params}))
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


async def connect(path: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a connection, after checking the folder and the endpoint are private to us; in
    TCP mode, only once the listener has proved it knows the token."""
    tcp = use_tcp()
    if not (sockdir.check_private_dir(path.parent)
            and sockdir.check_endpoint(path, want_socket=not tcp)):
        raise NoInstance(f"no Hivetray instance is running (no socket at {path})")
    try:
        # ``tcp`` is always true on Windows; naming the platform as well lets the type checker
        # see that the unix-socket call never runs there (Python has no AF_UNIX on Windows)
        if sys.platform != "win32" and not tcp:
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
                                                await read_short_line(reader))
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
