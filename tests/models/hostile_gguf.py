"""Writers of hostile or corrupt GGUF files, byte by byte, for the reader's hardening tests.

Why raw ``struct`` and not ``gguf.GGUFWriter``: these files lie about their own sizes and
shapes, which a well-behaved writer refuses to produce. Where a lie must fit inside the file
(a string that really is 1 TiB long, a million tensor infos), the file is made sparse with
``truncate``: it claims its size without using the disk, and the zeros read back as empty
strings, zero-length arrays or 0-dimensional F32 tensors.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

U8, U32, U64, STRING, ARRAY = 0, 4, 10, 8, 9


def gguf_string(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def header(n_tensors: int, n_kv: int) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", 3, n_tensors, n_kv)


def kv_string(key: str, value: str) -> bytes:
    return gguf_string(key) + struct.pack("<I", STRING) + gguf_string(value)


ARCH = kv_string("general.architecture", "llama")


def padded(data: bytes) -> bytes:
    """``data`` padded to GGUF's default 32-byte alignment, where the (empty) data starts."""
    return data + b"\0" * (-len(data) % 32)


def write_sparse(path: Path, head: bytes, size: int) -> Path:
    """``head`` followed by zeros up to ``size`` bytes, without writing the zeros.

    ``size`` is rounded up to the 32-byte alignment, where an empty data section starts.
    Skips the test where the filesystem cannot hold such a file cheaply (no sparse files).
    """
    size += -size % 32
    with open(path, "wb") as handle:
        handle.write(head)
        try:
            handle.truncate(size)
        except OSError as exc:
            pytest.skip(f"this filesystem cannot make a sparse {size}-byte file: {exc}")
    blocks = getattr(path.stat(), "st_blocks", None)
    if blocks is None or blocks * 512 > 64 << 20:
        path.unlink()
        pytest.skip("this filesystem does not keep large zero-filled files sparse")
    return path


def write_nested_arrays(path: Path, depth: int = 5000) -> Path:
    """An entry ``deep`` that is an array of an array of ... (``depth`` levels) of one u8.

    12 bytes per level: 5000 levels make a ~60 KB file.
    """
    value = struct.pack("<I", ARRAY)  # the entry's value type
    value += struct.pack("<IQ", ARRAY, 1) * (depth - 1)  # each level: one item, an array
    value += struct.pack("<IQ", U8, 1) + b"\x07"
    path.write_bytes(padded(header(0, 2) + ARCH + gguf_string("deep") + value))
    return path


def write_huge_string(path: Path, declared: int = 1 << 40) -> Path:
    """A chat template that claims ``declared`` bytes, in a (sparse) file that long."""
    head = header(0, 2) + ARCH + gguf_string("tokenizer.chat_template")
    head += struct.pack("<IQ", STRING, declared)
    return write_sparse(path, head, len(head) + declared)


def write_huge_array(path: Path, count: int = 1 << 31) -> Path:
    """A u64 array that claims ``count`` items in a file of a few hundred bytes."""
    body = gguf_string("tokenizer.ggml.scores") + struct.pack("<IIQ", ARRAY, U64, count)
    path.write_bytes(header(0, 2) + ARCH + body + b"\0" * 256)
    return path


def write_many_tensors(path: Path, n_tensors: int = 1_000_000) -> Path:
    """``n_tensors`` tensor infos (24 zero bytes each: nameless 0-d F32), sparse, ~24 MB."""
    head = header(n_tensors, 1) + ARCH
    return write_sparse(path, head, len(head) + 24 * n_tensors + 64)


def write_long_string_array(path: Path, count: int) -> Path:
    """A vocabulary-like array of ``count`` empty strings (8 zero bytes each), sparse."""
    head = header(0, 2) + ARCH
    head += gguf_string("tokenizer.ggml.tokens") + struct.pack("<IIQ", ARRAY, STRING, count)
    return write_sparse(path, head, len(head) + 8 * count)


def write_string_array_with_huge_item(path: Path, item_bytes: int = 1 << 63) -> Path:
    """A 100-string array whose first string claims ``item_bytes`` bytes (past any offset)."""
    body = gguf_string("tokenizer.ggml.tokens") + struct.pack("<IIQ", ARRAY, STRING, 100)
    body += struct.pack("<Q", item_bytes) + b"\0" * 8 * 99
    path.write_bytes(padded(header(0, 2) + ARCH + body))
    return path


def write_many_big_strings(path: Path, n_strings: int, string_bytes: int) -> Path:
    """``n_strings`` metadata entries ``s0``, ``s1``... each a string of ``string_bytes`` NULs.

    Each string is under the per-string bound; together they exceed the header memory bound.
    The NULs are holes (sparse), so the file costs almost no disk.
    """
    with open(path, "wb") as handle:
        handle.write(header(0, n_strings + 1) + ARCH)
        for i in range(n_strings):
            handle.write(gguf_string(f"s{i}") + struct.pack("<IQ", STRING, string_bytes))
            handle.seek(string_bytes, 1)
        handle.truncate(handle.tell() + (-handle.tell() % 32))
    return path


def write_long_name(path: Path, where: str, name_bytes: int) -> Path:
    """A metadata key (``where="key"``) or a tensor name (``"tensor"``) of ``name_bytes``."""
    name = "k" * name_bytes
    if where == "key":
        data = header(0, 2) + ARCH + kv_string(name, "value")
    else:  # one 0-d F32 tensor at offset 0
        data = header(1, 1) + ARCH + gguf_string(name) + struct.pack("<IIQ", 0, 0, 0)
    path.write_bytes(padded(data) + b"\0" * 32)
    return path
