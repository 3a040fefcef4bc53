"""Is an instance already running? A bare socket probe, importable in a few milliseconds, so a
second launch can hand over to the first without loading asyncio, Qt or the pool."""

from __future__ import annotations

import socket
from pathlib import Path


def instance_alive(path: Path) -> bool:
    """True when something accepts connections on ``path``."""
    if not path.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True
