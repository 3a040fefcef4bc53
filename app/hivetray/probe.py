"""Is an instance already running? A bare socket probe, importable in a few milliseconds, so a
second launch can hand over to the first without loading asyncio, Qt or the pool.

Two transports share one "endpoint path" in the user's runtime folder:
- POSIX: the path *is* an AF_UNIX socket (folder 0700, socket 0600: only this user can open it);
- Windows (no AF_UNIX in Python there), or ``HIVETRAY_IPC=tcp``: the path is a small file
  holding a loopback port and a random token; only this user can read the file.

TCP handshake (any local user can connect to a loopback port, and after our instance dies
someone else may listen on its old port, so each side proves it knows the token before the
other says anything that matters; nonces make every proof single-use):

1. client -> ``{"hello": client_nonce}``
2. server -> ``{"proof": HMAC(token, "server" + client_nonce + server_nonce),
   "nonce": server_nonce}``
3. client checks the proof (else it closes without sending its request), then
   -> ``{"proof": HMAC(token, "client" + server_nonce + client_nonce)}``
4. server checks it (else it closes without an answer); the request line follows.

``hmac``/``hashlib`` are imported only on this path: the tray app on POSIX keeps OpenSSL out of
its process, and HMAC-SHA256 works on hashlib's builtin sha256 when ``_hashlib`` is missing.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from hivetray import sockdir

TYPE_CHECKING = False  # not ``typing.TYPE_CHECKING``: importing typing costs ~3 ms here
if TYPE_CHECKING:
    from typing import Any

#: the whole probe (connect, and the TCP handshake) must finish within this many seconds
PROBE_TIMEOUT_S = 2.0
#: a handshake line is ~100 bytes; anything longer is not from a Hivetray peer
HANDSHAKE_LINE_LIMIT = 1024
NONCE_HEX_LEN = 32


def use_tcp() -> bool:
    return sys.platform == "win32" or os.environ.get("HIVETRAY_IPC") == "tcp"


@dataclass(frozen=True)
class TcpEndpoint:
    port: int
    token: str


def read_endpoint(path: Path) -> TcpEndpoint | None:
    """The port and token of the TCP endpoint file, or None when it is missing or unreadable.

    Raises :class:`~hivetray.errors.UnsafeRuntimeDir` when the file is a symlink or belongs to
    another user: a token planted by someone else would make us talk to their listener.
    """
    if not sockdir.check_endpoint(path, want_socket=False):
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return TcpEndpoint(int(doc["port"]), str(doc["token"]))
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None


def instance_alive(path: Path) -> bool:
    """True when a Hivetray instance answers on this endpoint (TCP: and proves its token).

    Raises :class:`~hivetray.errors.UnsafeRuntimeDir` when the socket folder or the endpoint
    exists but is not private to this user. Raising, not returning False, is deliberate: a
    caller that fell back to a private pool or started a second instance would hide the
    problem; the CLI prints the error's one line and exits 1.
    """
    if not sockdir.check_private_dir(path.parent):
        return False
    tcp = use_tcp()
    if not sockdir.check_endpoint(path, want_socket=not tcp):
        return False
    # ``tcp`` is always true on Windows; naming the platform as well lets the type checker see
    # that the AF_UNIX code below never runs there (Python has no AF_UNIX on Windows)
    if sys.platform == "win32" or tcp:
        endpoint = read_endpoint(path)
        return endpoint is not None and _tcp_alive(endpoint)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(PROBE_TIMEOUT_S)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def _tcp_alive(endpoint: TcpEndpoint) -> bool:
    deadline = time.monotonic() + PROBE_TIMEOUT_S
    try:
        with socket.create_connection(("127.0.0.1", endpoint.port),
                                      timeout=PROBE_TIMEOUT_S) as conn:
            client_nonce = new_nonce()
            conn.sendall(encode_line({"hello": client_nonce}))
            server_nonce = check_server_hello(endpoint.token, client_nonce,
                                              _recv_line(conn, deadline))
            if server_nonce is None:
                return False
            conn.sendall(encode_line(client_proof_message(endpoint.token, client_nonce,
                                                          server_nonce)))
            return True
    except OSError:  # refused, reset, or the deadline passed (socket.timeout is an OSError)
        return False


def _recv_line(conn: socket.socket, deadline: float) -> bytes | None:
    """One handshake line from a plain socket; None when it is too long or the peer closed.

    Reading past the newline is harmless: the server sends nothing more until our proof.
    """
    data = b""
    while b"\n" not in data:
        if len(data) > HANDSHAKE_LINE_LIMIT:
            return None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        conn.settimeout(remaining)
        chunk = conn.recv(HANDSHAKE_LINE_LIMIT)
        if not chunk:
            return None
        data += chunk
    line = data.split(b"\n", 1)[0]
    return line if len(line) <= HANDSHAKE_LINE_LIMIT else None


# -- the handshake's pieces, shared with the asyncio side (hivetray.ipc) ---------------------
def encode_line(message: dict[str, Any]) -> bytes:
    return (json.dumps(message) + "\n").encode()


def decode_handshake(line: bytes | None) -> dict[str, Any]:
    """A handshake line as a dict; {} for anything else (not JSON, too deep, not an object)."""
    if not line:
        return {}
    try:
        message = json.loads(line)
    except (ValueError, RecursionError):
        return {}
    return message if isinstance(message, dict) else {}


def new_nonce() -> str:
    return os.urandom(NONCE_HEX_LEN // 2).hex()


def is_nonce(value: object) -> bool:
    return (isinstance(value, str) and len(value) == NONCE_HEX_LEN and value.isascii()
            and all(c in "0123456789abcdef" for c in value))


def proof(token: str, side: str, first_nonce: str, second_nonce: str) -> str:
    import hmac

    message = (side + first_nonce + second_nonce).encode()
    return hmac.digest(token.encode(), message, "sha256").hex()


def proof_matches(expected: str, offered: object) -> bool:
    """Constant-time check of a proof from the wire. Compared as bytes: ``compare_digest``
    raises TypeError on a str with non-ASCII characters."""
    import hmac

    if not isinstance(offered, str) or not offered.isascii():
        return False
    return hmac.compare_digest(expected.encode(), offered.encode())


def server_hello(token: str, client_line: bytes | None) -> tuple[bytes, str, str] | None:
    """Server, step 2: the answer to a client's hello line, the client's nonce and ours;
    None when the hello is not one."""
    client_nonce = decode_handshake(client_line).get("hello")
    if not is_nonce(client_nonce):
        return None
    assert isinstance(client_nonce, str)
    server_nonce = new_nonce()
    answer = {"proof": proof(token, "server", client_nonce, server_nonce), "nonce": server_nonce}
    return encode_line(answer), client_nonce, server_nonce


def check_server_hello(token: str, client_nonce: str, line: bytes | None) -> str | None:
    """Client, step 3: the server's nonce when its proof is right, else None."""
    message = decode_handshake(line)
    server_nonce = message.get("nonce")
    if not is_nonce(server_nonce):
        return None
    assert isinstance(server_nonce, str)
    if not proof_matches(proof(token, "server", client_nonce, server_nonce),
                         message.get("proof")):
        return None
    return server_nonce


def client_proof_message(token: str, client_nonce: str, server_nonce: str) -> dict[str, str]:
    return {"proof": proof(token, "client", server_nonce, client_nonce)}


def check_client_proof(token: str, client_nonce: str, server_nonce: str,
                       line: bytes | None) -> bool:
    """Server, step 4."""
    expected = client_proof_message(token, client_nonce, server_nonce)["proof"]
    return proof_matches(expected, decode_handshake(line).get("proof"))
