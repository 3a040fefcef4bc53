"""Send everything the worker prints, Python or native, to ``logs/worker-<role>.log``.

fd 1 and 2 are pointed at the log file itself (O_APPEND), not at a pipe read by a thread: when
llama.cpp aborts the process, its last message is already in the file, which is what the crash
report shows. A small thread bounds the file: it copies it to ``.1`` and truncates it in place,
which works on every OS (renaming a file another process holds open never succeeds on
Windows) and keeps every writer appending to the same file.

Privacy: while a request is served, Python-level output of the serving thread is dropped.
llama-cpp-python prints whole rendered prompts when verbose (its multimodal handler does), and
whatever reaches the log also reaches crash reports, the app log and events. llama.cpp's own
native diagnostics (fd 2, and its log callback) are kept: they never carry the conversation.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import threading
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

#: the last lines llama.cpp logged, to explain a load failure in the error message itself
recent_native_lines: deque[str] = deque(maxlen=40)
#: the thread serving a request right now: its Python-level prints are not logged
_private_thread: int | None = None
#: the ctypes callback handed to llama.cpp (must stay alive while native code may call it)
_callback_ref: Any = None


class _GuardedStream:
    """``sys.stdout``/``sys.stderr`` of a worker: the log, minus what a request's thread
    prints while it serves (see the module docstring)."""

    def __init__(self, inner: TextIO) -> None:
        self._inner = inner

    def write(self, text: str) -> int:
        if _private_thread is not None and threading.get_ident() == _private_thread:
            return len(text)
        return self._inner.write(text)

    def __getattr__(self, name: str) -> Any:  # flush, fileno, isatty, encoding, ...
        return getattr(self._inner, name)


@contextlib.contextmanager
def private_output() -> Iterator[None]:
    """Around serving one request: nothing this thread prints in Python reaches the log."""
    global _private_thread
    _private_thread = threading.get_ident()
    try:
        yield
    finally:
        _private_thread = None


def _open_append(path: Path) -> int:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    if hasattr(os, "fchmod"):
        os.fchmod(fd, 0o600)  # a log made by an older version, or under a loose umask
    return fd


def rotate_in_place(path: Path, fd: int) -> None:
    """Keep the log's current content as ``<log>.1``, then empty the log through ``fd``."""
    shutil.copyfile(path, path.with_name(path.name + ".1"))
    os.ftruncate(fd, 0)


def redirect_output(path: Path, max_bytes: int) -> None:
    """Point fd 1/2 and ``sys.stdout``/``sys.stderr`` at ``path``; bound it to ``max_bytes``."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _point_fds_at(path)
    if os.fstat(2).st_size > max_bytes:
        rotate_in_place(path, 2)
    sys.stdout = _GuardedStream(open(1, "w", buffering=1, encoding="utf-8",  # type: ignore[assignment]
                                     errors="replace", closefd=False))
    sys.stderr = _GuardedStream(open(2, "w", buffering=1, encoding="utf-8",  # type: ignore[assignment]
                                     errors="replace", closefd=False))
    threading.Thread(target=_rotator, args=(path, max_bytes), name="log-rotator",
                     daemon=True).start()


def _point_fds_at(path: Path) -> None:
    fd = _open_append(path)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _rotator(path: Path, max_bytes: int) -> None:
    while True:
        threading.Event().wait(1.0)
        try:
            if os.fstat(2).st_size > max_bytes:
                rotate_in_place(path, 2)
        except OSError:
            continue


#: ggml's log levels (ggml.h): DEBUG messages of a request may quote its text (mtmd logs
#: ``add_text: <the whole prompt>``); CONT continues the previous message
GGML_LOG_LEVEL_DEBUG, GGML_LOG_LEVEL_CONT = 1, 5


class NativeLogFilter:
    """Which native log messages reach the worker log.

    Everything while a model loads (the reason a load failed is only there); while a request is
    served, not the DEBUG messages (nor their continuations): those are per-token and per-chunk
    traces, one of which prints the prompt. INFO, WARN and ERROR are kept always.
    """

    def __init__(self) -> None:
        self._dropping = False

    def keep(self, level: int) -> bool:
        if level == GGML_LOG_LEVEL_CONT:
            return not self._dropping
        self._dropping = level == GGML_LOG_LEVEL_DEBUG and _private_thread is not None
        return not self._dropping


def install_llama_log_callback() -> None:
    """Route llama.cpp's log callback to fd 2 (the worker log), filtered for privacy only.

    llama-cpp-python's own callback drops messages unless ``verbose``; the real reason a model
    failed to load only appears there, so we want every line but a request's DEBUG traces
    (:class:`NativeLogFilter`).
    """
    import ctypes

    import llama_cpp

    log_filter = NativeLogFilter()

    @llama_cpp.llama_log_callback  # type: ignore[misc,untyped-decorator]
    def _callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        if not log_filter.keep(level):
            return
        try:
            os.write(2, text)
        except OSError:
            pass
        line = text.decode("utf-8", "replace").strip()
        if line:
            recent_native_lines.append(line)

    # keep a reference for the process's lifetime: ctypes callbacks are freed when collected,
    # and llama.cpp (and mtmd, see vision) call it until the worker exits
    global _callback_ref
    _callback_ref = _callback
    llama_cpp.llama_log_set(_callback, ctypes.c_void_p(0))


def llama_log_callback() -> Any:
    """The installed llama.cpp log callback (to route other native loggers, like mtmd's,
    through the same filter), or None before the first model load."""
    return _callback_ref


def native_failure_reason() -> str:
    """The most telling recent llama.cpp lines: errors first, else the last few lines."""
    lines = list(recent_native_lines)
    telling = [ln for ln in lines if any(w in ln.lower() for w in ("error", "fail", "invalid"))]
    return "; ".join((telling or lines)[-3:])
