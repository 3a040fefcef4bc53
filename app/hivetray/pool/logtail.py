"""Reading the end of a worker log, for crash reports and the status window."""

from __future__ import annotations

import os
from pathlib import Path

CRASH_TAIL_BYTES = 4096


def log_size(path: Path) -> int:
    """The log's current size: where the next worker's lines will begin."""
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def read_tail(path: Path, max_bytes: int = CRASH_TAIL_BYTES, since: int = 0) -> str:
    """The last ``max_bytes`` of ``path`` written after offset ``since``, as text starting at a
    line boundary; '' if absent.

    ``since`` is the log's size when the worker was spawned, so a crash report quotes only
    that worker's lines, never an older worker's. A log that shrank since (rotated in place)
    is read from its start.
    """
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            floor = since if since <= size else 0
            start = max(floor, size - max_bytes)
            handle.seek(start)
            data = handle.read()
    except OSError:
        return ""
    text = data.decode("utf-8", "replace")
    if start > floor and "\n" in text:
        text = text.split("\n", 1)[1]
    return text.rstrip()


def telling_line(tail: str) -> str:
    """The log line that says why a load died (llama.cpp's assert or error), for last_error."""
    lines = [ln.strip() for ln in tail.splitlines() if ln.strip()]
    telling = [ln for ln in lines if any(w in ln.lower() for w in
                                         ("assert", "error", "abort", "fail", "terminate"))]
    pick = (telling or lines)[-1:] if lines else []
    return f" — last log line: {pick[0][:300]}" if pick else ""
