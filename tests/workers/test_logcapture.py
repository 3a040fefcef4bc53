"""The worker log: bounded by copy-and-truncate in place (every writer keeps appending to the
same file, on every OS), private, and deaf to what a request's thread prints."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

from hivetray.workers import logcapture


def test_rotation_keeps_the_old_lines_aside_and_writers_append_to_the_same_file(
        tmp_path: Path) -> None:
    log = tmp_path / "worker-chat.log"
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    other = os.open(log, os.O_WRONLY | os.O_APPEND)  # a second writer (another worker)
    try:
        os.write(fd, b"old line\n")
        inode = os.fstat(fd).st_ino
        logcapture.rotate_in_place(log, fd)
        os.write(fd, b"new line\n")
        os.write(other, b"from the other writer\n")
        assert (tmp_path / "worker-chat.log.1").read_bytes() == b"old line\n"
        assert log.read_bytes() == b"new line\nfrom the other writer\n"
        assert os.stat(log).st_ino == inode  # the same file: nothing was renamed under it
    finally:
        os.close(fd)
        os.close(other)


def test_a_log_made_readable_by_others_is_made_private(tmp_path: Path) -> None:
    log = tmp_path / "worker-chat.log"
    log.write_text("x")
    log.chmod(0o644)
    os.close(logcapture._open_append(log))
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


def test_what_a_request_thread_prints_is_not_logged(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    with open(out, "w", encoding="utf-8") as handle:
        stream = logcapture._GuardedStream(handle)
        stream.write("before\n")
        with logcapture.private_output():
            stream.write("the user's prompt\n")  # e.g. a verbose chat handler's print
            seen: list[int] = []
            other = threading.Thread(target=lambda: seen.append(stream.write("watchdog\n")))
            other.start()
            other.join()
        stream.write("after\n")
    assert out.read_text(encoding="utf-8") == "before\nwatchdog\nafter\n"


def test_native_debug_messages_are_dropped_only_while_a_request_is_served() -> None:
    keep = logcapture.NativeLogFilter()
    debug, info, cont = logcapture.GGML_LOG_LEVEL_DEBUG, 2, logcapture.GGML_LOG_LEVEL_CONT
    assert keep.keep(debug) and keep.keep(cont)  # loading: every diagnostic is kept
    with logcapture.private_output():
        assert not keep.keep(debug)  # "add_text: <the prompt>"
        assert not keep.keep(cont)  # ... and its continuation
        assert keep.keep(info) and keep.keep(cont)  # warnings/info and theirs stay
