"""One owner per Hivetray home: an advisory lock held by the running instance.

Why: the owner sweeps workers left by a crashed instance and records its own. A second
``hivetray daemon`` (or a tray app) for the same home must find out it is second *before* it
touches any worker — the socket alone cannot tell (it may not be up yet, or live in another
``XDG_RUNTIME_DIR``). The lock (``fcntl.flock`` on POSIX, ``msvcrt.locking`` on Windows) is
released by the kernel when the process dies, however it dies, so a crashed owner never blocks
the next launch.

Beside the lock, ``instance.json`` says who holds it (pid, process start time, socket path), so
a CLI whose ``XDG_RUNTIME_DIR`` differs from the desktop's can still find the instance, and a
refusal can name the owner. Readers never take the lock: probing it could make a starting
instance believe the home is taken.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from hivetray.config import write_atomic
from hivetray.errors import AlreadyRunning
from hivetray.paths import AppPaths, make_private
from hivetray.wording import Fix, Remedy


@dataclass(frozen=True)
class Owner:
    """The process holding a home's lock, as it described itself."""

    pid: int
    create_time: float | None
    socket: str | None


def lock_path(paths: AppPaths) -> Path:
    return paths.data_dir / "instance.lock"


def owner_path(paths: AppPaths) -> Path:
    return paths.data_dir / "instance.json"


class HomeLock:
    """The owner's lock on a home; ``acquire`` raises :class:`AlreadyRunning` when taken."""

    def __init__(self, paths: AppPaths) -> None:
        self.paths = paths
        self._handle: IO[bytes] | None = None

    @property
    def held(self) -> bool:
        return self._handle is not None

    def acquire(self, socket: Path | None = None) -> None:
        """Take the lock (idempotent) and say who we are; refuse if another process has it."""
        if self._handle is not None:
            return
        self.paths.ensure()
        handle = open(lock_path(self.paths), "a+b")  # held for our lifetime
        make_private(lock_path(self.paths))
        try:
            _lock(handle)
        except OSError:
            handle.close()
            owner = read_owner(self.paths)
            who = f" (pid {owner.pid})" if owner is not None else ""
            raise AlreadyRunning(f"another Hivetray instance{who} owns {self.paths.data_dir}",
                                 Remedy(Fix.USE_RUNNING_INSTANCE)) from None
        self._handle = handle
        self.describe(socket)

    def describe(self, socket: Path | None) -> None:
        """Record (or update) who owns the home and where its socket is."""
        from hivetray.pool.sweep import create_time

        write_atomic(owner_path(self.paths), json.dumps({
            "pid": os.getpid(), "create_time": create_time(os.getpid()),
            "socket": str(socket) if socket is not None else None}))

    def release(self) -> None:
        if self._handle is None:
            return
        with contextlib.suppress(OSError):
            owner_path(self.paths).unlink()
        handle, self._handle = self._handle, None
        handle.close()  # closing the file drops the lock


def read_owner(paths: AppPaths) -> Owner | None:
    """The live owner of ``paths``' home, or None (no owner, or it is gone)."""
    try:
        doc: Any = json.loads(owner_path(paths).read_text(encoding="utf-8"))
        owner = Owner(int(doc["pid"]), doc.get("create_time"), doc.get("socket"))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    from hivetray.pool.sweep import same_process

    if same_process(owner.pid, owner.create_time) is None:
        return None
    return owner


def _lock(handle: IO[bytes]) -> None:
    """Take an exclusive lock without waiting; OSError when another process holds it."""
    if sys.platform == "win32":
        import msvcrt

        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
    else:
        import fcntl

        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def find_instance(paths: AppPaths) -> Path | None:
    """The socket of this home's running instance, or None.

    First this user's usual socket; then the one the owner recorded, which differs when the
    instance was started with another ``XDG_RUNTIME_DIR`` (a desktop session vs. an ssh shell).
    """
    from hivetray.probe import instance_alive

    if instance_alive(paths.socket_path):
        return paths.socket_path
    owner = read_owner(paths)
    if owner is not None and owner.socket and Path(owner.socket) != paths.socket_path \
            and instance_alive(Path(owner.socket)):
        return Path(owner.socket)
    return None
