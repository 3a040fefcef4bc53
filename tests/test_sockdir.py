"""The socket folder must be private to this user, and peers of other users are recognised.

Tests that need another user run as root here (as the suite does in CI containers): they
hand a file to uid 65534 (nobody) with chown, or fork a child that becomes nobody."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import socket
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hivetray import ipc, probe, sockdir
from hivetray.errors import UnsafeRuntimeDir

NOBODY = 65534
needs_root = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                                reason="needs root to act as another user")


@contextlib.contextmanager
def folder_others_can_reach() -> Iterator[Path]:
    """A fresh folder in the shared temp folder that other users can enter (pytest's own
    tmp_path sits in a 0700 folder of root's)."""
    folder = Path(tempfile.mkdtemp(prefix="hivetray-test-"))
    try:
        os.chmod(folder, 0o711)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def as_user(uid: int, action: Callable[[], bytes], timeout: float = 30.0) -> bytes:
    """Run ``action`` in a forked child that has become ``uid``; return what it returned.

    A fork, not a subprocess: the test's Python lives under /root, which nobody cannot read.
    The child exits with os._exit whatever happens, so it never runs pytest's own code.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        status = 1
        try:
            os.close(read_end)
            os.setgid(uid)
            os.setuid(uid)
            os.write(write_end, action())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    chunks = []
    with os.fdopen(read_end, "rb") as pipe:
        while chunk := pipe.read(65536):
            chunks.append(chunk)
    _pid, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the child acting as another user failed"
    return b"".join(chunks)


def test_a_missing_folder_is_no_error_and_a_private_one_passes(tmp_path: Path) -> None:
    folder = tmp_path / "hivetray-0"
    assert sockdir.check_private_dir(folder) is False
    folder.mkdir(mode=0o700)
    assert sockdir.check_private_dir(folder) is True


@pytest.mark.parametrize("umask", [0o777, 0o000, 0o022])
def test_the_server_creates_the_folder_0700_whatever_the_umask(tmp_path: Path,
                                                               umask: int) -> None:
    folder = tmp_path / "runtime" / "hivetray-0"
    old = os.umask(umask)
    try:
        sockdir.ensure_private_dir(folder)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.lstat(folder).st_mode) == 0o700


def make_symlink(folder: Path) -> None:
    real = folder.parent / "elsewhere"
    real.mkdir(mode=0o700)
    folder.symlink_to(real)


def make_foreign(folder: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to give the folder to another user")
    folder.mkdir(mode=0o700)
    os.chown(folder, NOBODY, NOBODY)


def make_open(folder: Path) -> None:
    folder.mkdir(mode=0o700)
    os.chmod(folder, 0o755)


def make_file(folder: Path) -> None:
    folder.write_text("")


UNSAFE = {"symlink": (make_symlink, "symbolic link"),
          "other owner": (make_foreign, f"belongs to uid {NOBODY}"),
          "mode 0755": (make_open, "its mode is 755"),
          "not a folder": (make_file, "not a folder")}


@pytest.mark.parametrize("case", list(UNSAFE))
def test_an_unsafe_folder_is_refused_and_left_as_it_is(tmp_path: Path, case: str) -> None:
    make, problem = UNSAFE[case]
    folder = tmp_path / "hivetray-0"
    make(folder)
    before = os.lstat(folder)
    with pytest.raises(UnsafeRuntimeDir) as check:
        sockdir.check_private_dir(folder)
    with pytest.raises(UnsafeRuntimeDir) as ensure:
        sockdir.ensure_private_dir(folder)
    for raised in (check.value, ensure.value):
        message = str(raised)
        assert problem in message and str(folder) in message and "\n" not in message
        assert "XDG_RUNTIME_DIR" in message  # says what to do
    after = os.lstat(folder)  # never "repaired": we cannot know what is already inside
    assert (after.st_mode, after.st_uid) == (before.st_mode, before.st_uid)


def test_a_parent_others_can_rename_in_is_refused_unless_sticky(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    folder = shared / "hivetray-0"
    folder.mkdir(mode=0o700)
    os.chmod(shared, 0o777)
    with pytest.raises(UnsafeRuntimeDir, match="sticky"):
        sockdir.check_private_dir(folder)
    os.chmod(shared, 0o1777)  # like /tmp: others cannot rename our entries
    assert sockdir.check_private_dir(folder) is True


@needs_root
def test_a_parent_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    folder = theirs / "hivetray-0"
    folder.mkdir(mode=0o700)
    os.chown(theirs, NOBODY, NOBODY)
    with pytest.raises(UnsafeRuntimeDir, match="containing it"):
        sockdir.check_private_dir(folder)


def test_endpoint_kinds(tmp_path: Path) -> None:
    endpoint = tmp_path / "key.sock"
    assert sockdir.check_endpoint(endpoint, want_socket=False) is False  # missing
    endpoint.write_text("{}")
    assert sockdir.check_endpoint(endpoint, want_socket=False) is True
    assert sockdir.check_endpoint(endpoint, want_socket=True) is False  # stale: other transport
    endpoint.unlink()
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(endpoint))
        assert sockdir.check_endpoint(endpoint, want_socket=True) is True


def test_a_symlinked_endpoint_is_refused(tmp_path: Path) -> None:
    planted = tmp_path / "planted.json"
    planted.write_text('{"port": 1, "token": "x"}')
    endpoint = tmp_path / "key.sock"
    endpoint.symlink_to(planted)
    with pytest.raises(UnsafeRuntimeDir, match="symbolic link"):
        sockdir.check_endpoint(endpoint, want_socket=False)


@needs_root
def test_an_endpoint_of_another_user_is_refused(tmp_path: Path) -> None:
    endpoint = tmp_path / "key.sock"
    endpoint.write_text('{"port": 1, "token": "x"}')
    os.chown(endpoint, NOBODY, NOBODY)
    with pytest.raises(UnsafeRuntimeDir, match=f"belongs to uid {NOBODY}"):
        sockdir.check_endpoint(endpoint, want_socket=False)


def test_peer_uid_of_our_own_connection() -> None:
    left, right = socket.socketpair(socket.AF_UNIX)
    with left, right:
        expected = os.geteuid() if sys_has_peer_credentials() else None
        assert sockdir.peer_uid(left) == expected


def test_peer_uid_of_a_tcp_socket_is_unknown() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server, \
            socket.create_connection(server.getsockname()) as client:
        assert sockdir.peer_uid(client) is None


@needs_root
def test_peer_uid_of_another_user() -> None:
    if not sys_has_peer_credentials():
        pytest.skip("this platform does not report peer credentials")
    with folder_others_can_reach() as folder:
        path = folder / "peer.sock"
        with socket.socket(socket.AF_UNIX) as listener:
            listener.bind(str(path))
            os.chmod(path, 0o777)
            listener.listen()

            def connect() -> bytes:
                with socket.socket(socket.AF_UNIX) as client:
                    client.connect(str(path))
                    client.sendall(b"x")
                return b"ok"

            assert as_user(NOBODY, connect) == b"ok"
            conn, _ = listener.accept()
            with conn:
                assert sockdir.peer_uid(conn) == NOBODY


def sys_has_peer_credentials() -> bool:
    return hasattr(socket, "SO_PEERCRED") or sys.platform == "darwin" or "bsd" in sys.platform


# -- the instance socket uses these checks on both ends ---------------------------------------
async def answered(request: dict[str, Any], reply: ipc.Reply) -> Any:
    CALLS.append(request)
    return "answered"


CALLS: list[dict[str, Any]] = []


@pytest.fixture(autouse=True)
def _no_calls_yet() -> None:
    CALLS.clear()


@pytest.mark.parametrize("transport", ["unix", "tcp"])
@pytest.mark.parametrize("case", ["symlink", "other owner", "mode 0755"])
def test_serve_refuses_an_unsafe_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        transport: str, case: str) -> None:
    if transport == "tcp":
        monkeypatch.setenv("HIVETRAY_IPC", "tcp")
    folder = tmp_path / "hivetray-0"
    UNSAFE[case][0](folder)
    with pytest.raises(UnsafeRuntimeDir, match=UNSAFE[case][1]):
        asyncio.run(ipc.serve(folder / "key.sock", answered))
    assert os.listdir(folder) == []  # nothing was created inside (for a symlink: its target)


def spoil(case: str, folder: Path) -> tuple[Path, Callable[[], None]]:
    """Make a served folder unsafe after the fact; the path a client would use, and an undo."""
    if case == "symlink":
        link = folder.parent / "link"
        link.symlink_to(folder)
        return link / "key.sock", lambda: None
    if case == "other owner":
        if os.geteuid() != 0:
            pytest.skip("needs root to give the folder to another user")
        os.chown(folder, NOBODY, NOBODY)
        return folder / "key.sock", lambda: os.chown(folder, 0, 0)
    os.chmod(folder, 0o755)
    return folder / "key.sock", lambda: os.chmod(folder, 0o700)


@pytest.mark.parametrize("transport", ["unix", "tcp"])
@pytest.mark.parametrize("case", ["symlink", "other owner", "mode 0755"])
def test_the_client_never_talks_through_an_unsafe_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, transport: str, case: str) -> None:
    if transport == "tcp":
        monkeypatch.setenv("HIVETRAY_IPC", "tcp")
    folder = tmp_path / "hivetray-0"

    async def scenario() -> None:
        server = await ipc.serve(folder / "key.sock", answered)
        client_path, undo = spoil(case, folder)
        try:
            with pytest.raises(UnsafeRuntimeDir, match=UNSAFE[case][1]):
                await ipc.call(client_path, "chat", prompt="private words")
            with pytest.raises(UnsafeRuntimeDir, match=UNSAFE[case][1]):
                await asyncio.to_thread(probe.instance_alive, client_path)
        finally:
            undo()
            await server.close()

    asyncio.run(scenario())
    assert CALLS == []


@pytest.mark.parametrize("transport", ["unix", "tcp"])
@pytest.mark.parametrize("case", ["symlink", "other owner"])
def test_the_client_never_trusts_an_endpoint_it_does_not_own(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, transport: str, case: str) -> None:
    if transport == "tcp":
        monkeypatch.setenv("HIVETRAY_IPC", "tcp")
    path = tmp_path / "hivetray-0" / "key.sock"

    async def scenario() -> None:
        server = await ipc.serve(path, answered)
        try:
            if case == "symlink":
                client_path = path.parent / "alias.sock"
                client_path.symlink_to(path)
            else:
                if os.geteuid() != 0:
                    pytest.skip("needs root to give the socket to another user")
                os.chown(path, NOBODY, NOBODY)
                client_path = path
            with pytest.raises(UnsafeRuntimeDir, match=UNSAFE[case][1]):
                await ipc.call(client_path, "chat", prompt="private words")
            with pytest.raises(UnsafeRuntimeDir, match=UNSAFE[case][1]):
                await asyncio.to_thread(probe.instance_alive, client_path)
        finally:
            await server.close()

    asyncio.run(scenario())
    assert CALLS == []


def exchange(path: Path, line: bytes) -> bytes:
    """Send one request line on a plain socket; everything received until the server closes."""
    received = b""
    with socket.socket(socket.AF_UNIX) as conn:
        conn.settimeout(10)
        conn.connect(str(path))
        with contextlib.suppress(ConnectionError):
            conn.sendall(line)
            while chunk := conn.recv(65536):
                received += chunk
    return received


@needs_root
def test_a_peer_of_another_user_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    if not sys_has_peer_credentials():
        pytest.skip("this platform does not report peer credentials")
    with folder_others_can_reach() as base:
        path = base / "hivetray-0" / "key.sock"
        line = (json.dumps({"cmd": "chat", "prompt": "private words"}) + "\n").encode()

        async def scenario() -> None:
            server = await ipc.serve(path, answered)
            try:
                os.chmod(path.parent, 0o755)  # opened up by mistake, after the server's check
                os.chmod(path, 0o666)
                assert await asyncio.to_thread(as_user, NOBODY, lambda: exchange(path, line)) \
                    == b""
                os.chmod(path.parent, 0o700)
                assert await ipc.call(path, "status") == "answered"  # still serving us
            finally:
                await server.close()

        asyncio.run(scenario())
    assert CALLS == [{"cmd": "status"}]
    dropped = [r for r in caplog.records if f"from uid {NOBODY}" in r.getMessage()]
    assert [(r.name, r.levelno, r.exc_info) for r in dropped] == [
        ("hivetray.ipc", logging.INFO, None)]


def test_peer_uid_through_getpeereid(monkeypatch: pytest.MonkeyPatch) -> None:
    """macOS/BSD path (glibc has no getpeereid, so its libc is faked here): the uid the call
    writes is returned, and a failing call means "unknown", not a crash."""
    class FakeLibc:
        result = 0

        def getpeereid(self, fd: int, uid_ref: Any, gid_ref: Any) -> int:
            assert fd >= 0
            uid_ref._obj.value, gid_ref._obj.value = 501, 20
            return self.result

    libc = FakeLibc()
    monkeypatch.delattr(socket, "SO_PEERCRED", raising=False)
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setattr(sockdir, "_libc", lambda: libc)
    left, right = socket.socketpair(socket.AF_UNIX)
    with left, right:
        assert sockdir.peer_uid(left) == 501
        libc.result = -1
        assert sockdir.peer_uid(left) is None
