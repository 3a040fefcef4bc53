"""Recognising image files by their first bytes, shared by the app and the vision worker.

Kept apart from the vision worker so the app process can refuse a non-image before any worker
runs, without importing worker code.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChatImage:
    """An image for the vision role: a file's name (for error messages) and its bytes."""

    name: str
    data: bytes


_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "png"), (b"\xff\xd8\xff", 0, "jpeg"), (b"GIF87a", 0, "gif"),
    (b"GIF89a", 0, "gif"), (b"BM", 0, "bmp"), (b"WEBP", 8, "webp"),
)


def sniff_image_type(data: bytes) -> str | None:
    """The image format from its first bytes (PNG, JPEG, GIF, BMP, WebP), else None.

    Cheap and dependency-free, so the instance can refuse a non-image before any worker runs.
    """
    for magic, offset, kind in _SIGNATURES:
        if data[offset:offset + len(magic)] == magic:
            if kind == "webp" and data[:4] != b"RIFF":
                continue
            return kind
    return None
