"""Read a GGUF file's header without llama.cpp: magic, version, metadata, tensor table, sizes.

Why: a truncated download, a renamed text file or a projector picked as the chat model should be
reported at once, with the file's path and what is wrong, before a worker process is spawned —
and the model list (``hivetray models``) needs architecture and context length without loading
gigabytes. This module is pure Python (no Qt, no llama.cpp, no numpy) so the pool can call it.

The file is memory-mapped and parsed with ``struct.unpack_from``; large arrays (a 262k-token
vocabulary) are skipped, not decoded, so a header parses in tens of milliseconds. Every read is
bounds-checked: a file cut anywhere raises :class:`GGUFError` saying where it ends.

A model file is untrusted input, so the cost of a hostile or corrupt header is bounded too:
array nesting depth (no ``RecursionError``), each string's length, the memory kept for decoded
values, every declared count (never more items than the rest of the file can hold), the tensor
count and the parse's wall-clock time. Each bound is a :class:`GGUFError` far above real models.

Format (v2/v3, little-endian): ``b"GGUF"``, u32 version, u64 tensor count, u64 metadata count,
metadata ``(string key, u32 type, value)``, tensor infos ``(string name, u32 n_dims, u64 dims[],
u32 ggml type, u64 offset)``, padding to ``general.alignment`` (32), then tensor data.
"""

from __future__ import annotations

import errno
import mmap
import os
import stat
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hivetray.models.gguf_types import (
    GGML_TYPES,
    ArrayInfo,
    GGUFError,
    GGUFInfo,
    TensorInfo,
    tensor_nbytes,
)

__all__ = ["GGML_TYPES", "ArrayInfo", "GGUFError", "GGUFInfo", "TensorInfo", "read_header",
           "read_header_cached", "tensor_nbytes"]

class HeaderTimeout(GGUFError):
    """The header took longer than its deadline: a stalled disk, or not a model."""


MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
#: arrays longer than this are summarised as ArrayInfo instead of decoded
MAX_DECODED_ARRAY = 64
#: real files nest arrays 1 level deep (llama.cpp refuses arrays of arrays): this only stops
#: a hostile file from driving the reader's recursion into RecursionError
MAX_ARRAY_DEPTH = 8
#: one metadata string value: the largest real ones are chat templates, well under 1 MiB, so
#: 16 MiB leaves room for any future template while a hostile length costs no more than that
MAX_STRING_BYTES = 16 << 20
#: a metadata key or tensor name: real ones are under 100 bytes (llama.cpp caps tensor names
#: at 63); 64 KiB is generous and keeps a hostile name from costing more
MAX_NAME_BYTES = 64 << 10
#: real models have a few thousand tensors at most (Llama 3.1 405B: ~1140); 65536 leaves ample
#: headroom while a hostile count cannot make the tensor-table loop run for seconds
MAX_TENSORS = 1 << 16
#: rough Python memory kept for the decoded header (metadata, keys, tensor infos); a real model
#: needs a few MiB at most, since long arrays are summarised, not decoded
MAX_HEADER_MEMORY = 64 << 20
#: a real header parses in tens of milliseconds; past this the file is not a model (or the
#: disk is stalled), and the caller should not wait on it any longer
DEFAULT_DEADLINE_S = 10.0
#: items between two deadline checks in the tight loops (a 262k vocabulary: 4 checks)
_DEADLINE_STRIDE = 1 << 16
_MIN_ENTRY_BYTES = 8 + 4 + 1  # metadata entry: key length, value type, a 1-byte value
_MIN_TENSOR_BYTES = 8 + 4 + 4 + 8  # tensor info: name length, n_dims (0), type, offset
_MIN_ARRAY_BYTES = 4 + 8  # array value: item type, count
_OBJECT_COST = 64  # rough Python size of one decoded value, for the memory bound

# metadata value types
_SCALARS: dict[int, str] = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f",
                            7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
#: the fewest bytes one item of each value type takes in the file (for count bounds)
_MIN_ITEM_BYTES: dict[int, int] = {
    **{vtype: struct.calcsize(fmt) for vtype, fmt in _SCALARS.items()},
    _STRING: 8, _ARRAY: _MIN_ARRAY_BYTES,
}
_U64 = struct.Struct("<Q")


class _Reader:
    """Bounds-checked little-endian reads from a buffer; every overrun is a GGUFError.

    It also keeps the budgets that make a hostile header cheap to reject: the deadline
    (checked between items of every long loop), the memory kept for decoded values, counts.
    """

    def __init__(self, buf: Any, size: int, *, deadline_s: float = DEFAULT_DEADLINE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.buf = buf
        self.size = size
        self.pos = 0
        self.clock = clock
        self.deadline_s = deadline_s
        self.deadline = clock() + deadline_s
        self.memory_left = MAX_HEADER_MEMORY

    def _need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise GGUFError(f"truncated: the file ends at byte {self.size} inside {what} "
                            f"(needs {self.pos + n} bytes); an interrupted download? "
                            "download it again")

    def check_time(self, what: str) -> None:
        if self.clock() > self.deadline:
            raise HeaderTimeout(f"the header took longer than {self.deadline_s:g} s to read "
                            f"(stopped at {what}); is it really a model?")

    def charge(self, nbytes: int, what: str) -> None:
        """Count ``nbytes`` of kept memory against the header's budget."""
        self.memory_left -= nbytes
        if self.memory_left < 0:
            raise GGUFError(f"corrupt: the header holds more than {MAX_HEADER_MEMORY >> 20} MiB "
                            f"of metadata (at {what}); real models need a few MiB at most")

    def unpack(self, fmt: str, what: str) -> Any:
        n = struct.calcsize(fmt)
        self._need(n, what)
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += n
        return value

    def u32(self, what: str) -> int:
        return int(self.unpack("<I", what))

    def u64(self, what: str) -> int:
        return int(self.unpack("<Q", what))

    def string(self, what: str, limit: int = MAX_STRING_BYTES) -> str:
        n = self.u64(what)
        if n > limit:
            raise GGUFError(f"corrupt: {what} claims a string of {n} bytes, more than the "
                            f"{_human(limit)} any real model uses")
        self._need(n, what)
        self.charge(_OBJECT_COST + n, what)
        text = str(self.buf[self.pos:self.pos + n], "utf-8", "replace")
        self.pos += n
        return text

    def count(self, what: str, item_bytes: int, limit: int | None = None,
              items: str = "entries") -> int:
        """Read a u64 count that the rest of the file can hold, each item taking at least
        ``item_bytes``: a loop over it never runs more times than the file has bytes."""
        n = self.u64(what)
        if limit is not None and n > limit:
            raise GGUFError(f"corrupt: {what} is {n}; real models have at most a few "
                            f"thousand (the limit is {limit})")
        left = self.size - self.pos
        if n * item_bytes > left:
            raise GGUFError(f"truncated or corrupt: {what} claims {n} {items} (at least "
                            f"{n * item_bytes} bytes) but only {left} bytes of the file are "
                            "left; an interrupted download? download it again")
        return n

    def array_header(self, what: str, depth: int) -> tuple[int, int]:
        """Read an array's item type and count; ``depth`` counts the arrays around it."""
        if depth >= MAX_ARRAY_DEPTH:
            raise GGUFError(f"corrupt: {what} nests arrays deeper than {MAX_ARRAY_DEPTH} "
                            "levels")
        item_type = self.u32(what)
        count = self.count(what, _MIN_ITEM_BYTES.get(item_type, 1), items="items")
        return item_type, count

    def value(self, vtype: int, what: str, depth: int = 0) -> Any:
        if vtype in _SCALARS:
            self.charge(_OBJECT_COST, what)
            return self.unpack(_SCALARS[vtype], what)
        if vtype == _STRING:
            return self.string(what)
        if vtype == _ARRAY:
            item_type, count = self.array_header(what, depth)
            self.charge(_OBJECT_COST + 8 * min(count, MAX_DECODED_ARRAY), what)
            if count <= MAX_DECODED_ARRAY:
                return [self.value(item_type, what, depth + 1) for _ in range(count)]
            self.skip_array(item_type, count, what, depth + 1)
            return ArrayInfo(item_type, count)
        raise GGUFError(f"corrupt: {what} has unknown value type {vtype}")

    def skip_array(self, item_type: int, count: int, what: str, depth: int) -> None:
        """Move past ``count`` items without decoding them (a vocabulary: 262k strings)."""
        if item_type in _SCALARS:
            n = struct.calcsize(_SCALARS[item_type]) * count
            self._need(n, what)
            self.pos += n
        elif item_type == _STRING:
            # the hot loop of a big vocabulary: locals only, one bounds check per chunk
            pos, unpack, buf = self.pos, _U64.unpack_from, self.buf
            for first in range(0, count, _DEADLINE_STRIDE):
                self.check_time(what)
                try:
                    for _ in range(min(_DEADLINE_STRIDE, count - first)):
                        pos += 8 + unpack(buf, pos)[0]
                except (struct.error, OverflowError):  # ran past the end (or past 2**63)
                    pos = self.size + 1
                if pos > self.size:
                    self._need(pos - self.pos, what)
            self.pos = pos
        elif item_type == _ARRAY:  # arrays of arrays: llama.cpp refuses them; skip one by one
            for i in range(count):
                if not i % _DEADLINE_STRIDE:
                    self.check_time(what)
                inner_type, inner_count = self.array_header(what, depth)
                self.skip_array(inner_type, inner_count, what, depth + 1)
        elif count:
            raise GGUFError(f"corrupt: {what} has unknown value type {item_type}")


def _human(nbytes: int) -> str:
    return f"{nbytes >> 20} MiB" if nbytes >= 1 << 20 else f"{nbytes >> 10} KiB"


def _shown(name: str) -> str:
    """A key or tensor name for a one-line message: quoted, and cut if a file made it long."""
    return repr(name if len(name) <= 80 else name[:77] + "...")


def read_header(path: str | os.PathLike[str], *, deadline_s: float = DEFAULT_DEADLINE_S,
                clock: Callable[[], float] = time.monotonic) -> GGUFInfo:
    """Parse ``path``'s header and check the data section is all there.

    Raises ``FileNotFoundError``/``IsADirectoryError``/``PermissionError`` for unreadable
    paths and :class:`GGUFError` for content problems, including a parse that takes longer
    than ``deadline_s`` by ``clock`` (a parameter so tests can make time jump).
    """
    p = Path(path)
    # O_NONBLOCK: opening a FIFO named like a model must not wait for a writer for ever
    fd = os.open(p, os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0))
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(p))
        if not stat.S_ISREG(st.st_mode):
            raise GGUFError("not a GGUF file: it is not a regular file (a device, pipe or "
                            "socket); pick the .gguf file itself")
        size = st.st_size
        if size < 4:
            raise GGUFError(f"not a GGUF file: it is only {size} bytes long"
                            + (" (empty)" if size == 0 else ""))
        with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as buf:
            return _parse(str(p), _Reader(buf, size, deadline_s=deadline_s, clock=clock))
    finally:
        os.close(fd)


def _parse(path: str, r: _Reader) -> GGUFInfo:
    buf, size = r.buf, r.size
    magic = bytes(buf[:4])
    if magic != MAGIC:
        raise GGUFError(f"not a GGUF file (invalid magic {magic!r}, expected b'GGUF'); "
                        "is it the right file, or a web page saved instead of the model?")
    r.pos = 4
    version = r.u32("the version")
    if version not in SUPPORTED_VERSIONS:
        hint = ("it is GGUF v1, too old for llama.cpp: convert it again" if version == 1 else
                "made for a newer llama.cpp? update Hivetray, or the file is corrupt")
        raise GGUFError(f"unknown GGUF version {version} ({hint})")
    n_tensors = r.count("the tensor count", _MIN_TENSOR_BYTES, MAX_TENSORS, "tensors")
    n_kv = r.count("the metadata count", _MIN_ENTRY_BYTES)
    metadata: dict[str, Any] = {}
    for i in range(n_kv):
        r.check_time(f"metadata entry {i}")
        key = r.string(f"metadata entry {i}", MAX_NAME_BYTES)
        vtype = r.u32(f"metadata {_shown(key)}")
        metadata[key] = r.value(vtype, f"metadata {_shown(key)}")
    tensors: list[TensorInfo] = []
    for i in range(n_tensors):
        r.check_time(f"tensor info {i}")
        name = r.string(f"tensor info {i}", MAX_NAME_BYTES)
        what = f"tensor {_shown(name)}"
        n_dims = r.u32(what)
        if n_dims > 8:
            raise GGUFError(f"corrupt: {what} claims {n_dims} dimensions")
        shape = tuple(r.u64(what) for _ in range(n_dims))
        ggml_type = r.u32(what)
        offset = r.u64(what)
        r.charge(_OBJECT_COST * (2 + n_dims), what)
        tensors.append(TensorInfo(name, shape, ggml_type, offset, tensor_nbytes(shape, ggml_type)))
    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0:
        raise GGUFError(f"corrupt: general.alignment is {alignment!r}")
    data_offset = -(-r.pos // alignment) * alignment
    data_size: int | None = 0
    for t in tensors:
        if t.nbytes is None:
            data_size = None
            break
        data_size = max(data_size or 0, t.offset + t.nbytes)
    if data_size is not None and data_offset + data_size > size:
        missing = data_offset + data_size - size
        share = 100 * size / (data_offset + data_size)
        raise GGUFError(f"truncated: the tensors need {data_offset + data_size} bytes but the "
                        f"file has {size} ({missing} missing, {share:.0f}% there); an "
                        "interrupted download? download it again")
    if not isinstance(metadata.get("general.architecture"), str):
        raise GGUFError("corrupt: the file names no architecture (general.architecture)")
    return GGUFInfo(path, size, version, metadata, tensors, data_offset, data_size)


# -- a small cache, so the pool can validate before every spawn without re-reading --------------
#: a bad file's reason is kept as text: re-raising one shared exception object from several
#: threads would keep growing its traceback
_cache: dict[tuple[str, int, int], GGUFInfo | str] = {}


def read_header_cached(path: str | os.PathLike[str]) -> GGUFInfo:
    """``read_header`` memoised on (path, size, mtime): a changed file is read again.

    Content errors are cached too (a hostile file costs its parse, once); unreadable paths
    and reads past the deadline are not, since permissions, a mount or a stalled disk may come
    back (a retry then reads the file again).
    """
    st = os.stat(path)
    key = (os.fspath(path), st.st_size, st.st_mtime_ns)
    hit = _cache.get(key)
    if hit is None:
        try:
            hit = read_header(path)
        except HeaderTimeout:
            raise
        except GGUFError as exc:
            hit = str(exc)
        if len(_cache) > 64:
            _cache.clear()
        _cache[key] = hit
    if isinstance(hit, str):
        raise GGUFError(hit)
    return hit
