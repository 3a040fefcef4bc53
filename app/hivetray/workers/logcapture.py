"""Send everything the worker prints, Python or native, to ``logs/worker-<role>.log``.

fd 1 and 2 are pointed at the log file itself (O_APPEND), not at a pipe read by a thread: when
llama.cpp aborts the process, its last message is already in the file, which is what the crash
report shows. A small thread rotates the file when it grows past its bound.
"""

from __future__ import annotations

import os
import sys
import threading
from collections import deque
from pathlib import Path

#: the last lines llama.cpp logged, to explain a load failure in the error message itself
recent_native_lines: deque[str] = deque(maxlen=40)


def _open_append(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)


def _rotate(path: Path) -> None:
    backup = path.with_name(path.name + ".1")
    os.replace(path, backup)


def redirect_output(path: Path, max_bytes: int) -> None:
    """Point fd 1/2 and ``sys.stdout``/``sys.stderr`` at ``path``; rotate it past ``max_bytes``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.stat().st_size > max_bytes:
        _rotate(path)
    _point_fds_at(path)
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
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
                _rotate(path)
                _point_fds_at(path)
        except OSError:
            continue


def install_llama_log_callback() -> None:
    """Route llama.cpp's log callback to fd 2 (the worker log), unfiltered.

    llama-cpp-python's own callback drops messages unless ``verbose``; the real reason a model
    failed to load only appears there, so we want every line.
    """
    import ctypes

    import llama_cpp

    @llama_cpp.llama_log_callback  # type: ignore[misc,untyped-decorator]
    def _callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        try:
            os.write(2, text)
        except OSError:
            pass
        line = text.decode("utf-8", "replace").strip()
        if line:
            recent_native_lines.append(line)

    # keep a reference: ctypes callbacks are freed when collected
    globals()["_llama_log_callback_ref"] = _callback
    llama_cpp.llama_log_set(_callback, ctypes.c_void_p(0))


def native_failure_reason() -> str:
    """The most telling recent llama.cpp lines: errors first, else the last few lines."""
    lines = list(recent_native_lines)
    telling = [ln for ln in lines if any(w in ln.lower() for w in ("error", "fail", "invalid"))]
    return "; ".join((telling or lines)[-3:])
