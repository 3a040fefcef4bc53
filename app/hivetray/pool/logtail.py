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
