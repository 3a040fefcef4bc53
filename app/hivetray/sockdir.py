"""Is the instance socket private to this user? Folder checks and peer credentials.

The socket (or, in TCP mode, the endpoint file holding the port and token) lives in
``<runtime>/hivetray-<uid>/``. When ``XDG_RUNTIME_DIR`` is unset the runtime folder is the
shared temp folder, where any user can create ``hivetray-<uid>`` first (or a symlink there) and
so receive the prompts meant for our instance, and answer them. So both ends check the folder
before using it: a real directory (not a symlink), owned by us, with no group/other bits, in a
parent that other users cannot rename it out of. A folder that fails is refused with
:class:`~hivetray.errors.UnsafeRuntimeDir`, never "repaired": we cannot know what another user
already put inside.

Where the platform tells who is at the other end of an AF_UNIX connection (Linux
``SO_PEERCRED``, macOS/BSD ``getpeereid``), the server also drops peers of other users, which
covers a folder made reachable after the checks (by hand, or by a later mistake).

Windows has no uids here: the checks are skipped there and the TCP token does the work.
This module is imported by the launch probe, so it stays light: no asyncio, ctypes only when
needed, the error class imported only when raising.
"""

from __future__ import annotations

import os
import socket
import stat
import sys
from pathlib import Path

TYPE_CHECKING = False  # not ``typing.TYPE_CHECKING``: the launch probe skips importing typing
if TYPE_CHECKING:
    from typing import Any, NoReturn

#: the only mode the socket folder may have: owner-only
PRIVATE_DIR_MODE = 0o700


def current_uid() -> int | None:
    """The uid our files are created with, or None where there are no uids (Windows)."""
    return os.geteuid() if hasattr(os, "geteuid") else None


def ensure_private_dir(folder: Path) -> None:
    """Server side: create ``folder`` owner-only when missing, then check it like a client.

    ``os.mkdir(mode)`` is filtered by the umask (a umask of 0o777 would leave it unusable),
    hence the explicit chmod of a folder we have just created. An existing folder is only
    checked, never chmod-ed: if it is not already ours and private, someone else made it.
    """
    if current_uid() is None:
        folder.mkdir(parents=True, exist_ok=True)
        return
    if not os.path.lexists(folder):
        folder.parent.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
        try:
            os.mkdir(folder, PRIVATE_DIR_MODE)
        except FileExistsError:
            pass  # created meanwhile: checked below like any existing folder
        else:
            os.chmod(folder, PRIVATE_DIR_MODE)
    check_private_dir(folder)


def check_private_dir(folder: Path) -> bool:
    """True when ``folder`` exists and is private to us; False when it does not exist.

    Raises :class:`~hivetray.errors.UnsafeRuntimeDir` (saying what is wrong) when it exists
    but another user could have put or could reach something in it.
    """
    uid = current_uid()
    if uid is None:
        return folder.is_dir()
    try:
        info = os.lstat(folder)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(info.st_mode):
        _unsafe(folder, f"it is a symbolic link (to {os.readlink(folder)}), not a folder")
    if not stat.S_ISDIR(info.st_mode):
        _unsafe(folder, "it is not a folder")
    if info.st_uid != uid:
        _unsafe(folder, f"it belongs to {_user(info.st_uid)}, not to you ({_user(uid)})")
    if info.st_mode & 0o077:
        _unsafe(folder, f"its mode is {stat.S_IMODE(info.st_mode):o}, so other users can "
                        f"reach what is inside; it must be {PRIVATE_DIR_MODE:o}")
    _check_parent(folder, uid)
    return True


def _check_parent(folder: Path, uid: int) -> None:
    """Whoever may rename entries of the parent may swap our folder for theirs after the
    check: the parent must be ours or root's, and shared (like /tmp) only with the sticky bit."""
    parent = folder.parent
    info = os.stat(parent)
    if info.st_uid not in (uid, 0):
        _unsafe(folder, f"the folder containing it ({parent}) belongs to {_user(info.st_uid)}")
    if info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX:
        _unsafe(folder, f"other users can rename entries of the folder containing it ({parent}): "
                        "it is writable by them and has no sticky bit")


def check_endpoint(path: Path, *, want_socket: bool) -> bool:
    """Is ``path`` (the socket, or the TCP endpoint file) there, of the expected kind, ours?

    True when it is usable; False when it is missing or of the other kind (a leftover of the
    other transport: stale, to be replaced by a server). Raises
    :class:`~hivetray.errors.UnsafeRuntimeDir` for a symlink or a file of another user, which
    are never followed or trusted.
    """
    uid = current_uid()
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(info.st_mode):
        _unsafe(path, "it is a symbolic link, not the instance's own "
                      + ("socket" if want_socket else "endpoint file"))
    if uid is not None and info.st_uid != uid:
        _unsafe(path, f"it belongs to {_user(info.st_uid)}, not to you ({_user(uid)})")
    return stat.S_ISSOCK(info.st_mode) if want_socket else stat.S_ISREG(info.st_mode)


def peer_uid(sock: Any) -> int | None:
    """The uid of the process at the other end of a connected AF_UNIX socket, or None where
    the platform cannot tell (then the folder checks alone protect the socket).

    ``sock`` is a :class:`socket.socket` or asyncio's ``TransportSocket`` (same methods).
    """
    import struct  # only the server asks, not the launch probe

    try:
        if hasattr(socket, "SO_PEERCRED"):  # Linux: struct ucred {pid_t; uid_t; gid_t}
            size = struct.calcsize("3i")
            raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, size)
            _pid, uid, _gid = struct.unpack("3i", raw)
            return int(uid) if uid >= 0 else None  # -1: not an AF_UNIX peer
        if sys.platform == "darwin" or "bsd" in sys.platform:
            return _getpeereid(int(sock.fileno()))
    except (OSError, ValueError, struct.error):
        return None
    return None


def _getpeereid(fd: int) -> int | None:
    """macOS and the BSDs: ``int getpeereid(int, uid_t *, gid_t *)`` from libc."""
    import ctypes

    uid, gid = ctypes.c_uint32(), ctypes.c_uint32()
    if _libc().getpeereid(fd, ctypes.byref(uid), ctypes.byref(gid)) != 0:
        return None
    return int(uid.value)


def _libc() -> Any:
    import ctypes
    import ctypes.util

    return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def _user(uid: int) -> str:
    """'uid 1000 (alice)': the number always, the name when the system knows it.

    Windows has no ``pwd`` module: the platform check says so to the type checker (which
    otherwise reads ``pwd`` as empty there), the ImportError stays for any other system
    without it.
    """
    if sys.platform == "win32":
        return f"uid {uid}"
    try:
        import pwd

        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def _unsafe(path: Path, problem: str) -> NoReturn:
    from hivetray.errors import UnsafeRuntimeDir

    raise UnsafeRuntimeDir(str(path), problem)
