"""Is an instance already running? A bare socket probe, importable in a few milliseconds, so a
second launch can hand over to the first without loading asyncio, Qt or the pool.

Two transports share one "endpoint path" in the user's runtime folder:
- POSIX: the path *is* an AF_UNIX socket (folder 0700, socket 0600: only this user can open it);
- Windows (no AF_UNIX in Python there), or ``HIVETRAY_IPC=tcp``: the path is a small file
  holding a loopback port and a random token; only this user can read the file, and the server
  refuses any connection whose first line is not that token.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path


def use_tcp() -> bool:
    return sys.platform == "win32" or os.environ.get("HIVETRAY_IPC") == "tcp"


@dataclass(frozen=True)
class TcpEndpoint:
    port: int
    token: str


def read_endpoint(path: Path) -> TcpEndpoint | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return TcpEndpoint(int(doc["port"]), str(doc["token"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def instance_alive(path: Path) -> bool:
    """True when something accepts connections on this endpoint."""
    if not path.exists():
        return False
    if use_tcp():
        endpoint = read_endpoint(path)
        if endpoint is None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", endpoint.port), timeout=1.0):
                return True
        except OSError:
            return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True
