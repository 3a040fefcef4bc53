"""Reading the end of a worker log, for crash reports and the status window."""

from __future__ import annotations

import os
from pathlib import Path

CRASH_TAIL_BYTES = 4096


def read_tail(path: Path, max_bytes: int = CRASH_TAIL_BYTES) -> str:
    """The last ``max_bytes`` of ``path`` as text, starting at a line boundary; '' if absent."""
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            start = max(0, size - max_bytes)
            handle.seek(start)
            data = handle.read()
    except OSError:
        return ""
    text = data.decode("utf-8", "replace")
    if start > 0 and "\n" in text:
        text = text.split("\n", 1)[1]
    return text.rstrip()


def telling_line(tail: str) -> str:
    """The log line that says why a load died (llama.cpp's assert or error), for last_error."""
    lines = [ln.strip() for ln in tail.splitlines() if ln.strip()]
    telling = [ln for ln in lines if any(w in ln.lower() for w in
                                         ("assert", "error", "abort", "fail", "terminate"))]
    pick = (telling or lines)[-1:] if lines else []
    return f" — last log line: {pick[0][:300]}" if pick else ""
