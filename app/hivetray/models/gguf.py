"""Read a GGUF file's header without llama.cpp: magic, version, metadata, tensor table, sizes.

Why: a truncated download, a renamed text file or a projector picked as the chat model should be
reported at once, with the file's path and what is wrong, before a worker process is spawned —
and the model list (``hivetray models``) needs architecture and context length without loading
gigabytes. This module is pure Python (no Qt, no llama.cpp, no numpy) so the pool can call it.

The file is memory-mapped and parsed with ``struct.unpack_from``; large arrays (a 262k-token
vocabulary) are skipped, not decoded, so a header parses in tens of milliseconds. Every read is
bounds-checked: a file cut anywhere raises :class:`GGUFError` saying where it ends.

Format (v2/v3, little-endian): ``b"GGUF"``, u32 version, u64 tensor count, u64 metadata count,
metadata ``(string key, u32 type, value)``, tensor infos ``(string name, u32 n_dims, u64 dims[],
u32 ggml type, u64 offset)``, padding to ``general.alignment`` (32), then tensor data.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
#: arrays longer than this are summarised as ArrayInfo instead of decoded
MAX_DECODED_ARRAY = 64
_MAX_COUNT = 1 << 32  # more keys/tensors/dims than this is corruption, not a model

#: ggml tensor type id → (block size in elements, bytes per block); as in ggml.h / gguf-py
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 40),
    10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74), 18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50), 20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82), 23: ("IQ4_XS", 256, 136), 24: ("I8", 1, 1), 25: ("I16", 1, 2),
    26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8), 29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2), 34: ("TQ1_0", 256, 54), 35: ("TQ2_0", 256, 66), 39: ("MXFP4", 32, 17),
}

# metadata value types
_SCALARS: dict[int, str] = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f",
                            7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
_U64 = struct.Struct("<Q")


class GGUFError(ValueError):
    """The file is not a usable GGUF file; ``str()`` says why (the caller adds the path)."""


@dataclass(frozen=True)
class ArrayInfo:
    """A long metadata array, summarised: its element type and length."""

    item_type: int
    count: int

    def __len__(self) -> int:
        return self.count


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int
    nbytes: int | None  # None: a type this table does not know (a newer llama.cpp's)


@dataclass(frozen=True)
class GGUFInfo:
    path: str
    file_size: int
    version: int
    metadata: dict[str, Any]
    tensors: list[TensorInfo] = field(repr=False)
    data_offset: int
    #: bytes the tensor table says the data section needs (None if a tensor type is unknown)
    data_size: int | None

    @property
    def architecture(self) -> str | None:
        arch = self.metadata.get("general.architecture")
        return arch if isinstance(arch, str) else None

    def arch_value(self, key: str) -> Any:
        """``{arch}.{key}`` from the metadata (e.g. ``context_length``)."""
        return self.metadata.get(f"{self.architecture}.{key}")

    @property
    def name(self) -> str | None:
        value = self.metadata.get("general.name")
        return value if isinstance(value, str) else None

    @property
    def context_length(self) -> int | None:
        value = self.arch_value("context_length")
        return int(value) if isinstance(value, int) else None

    @property
    def embedding_length(self) -> int | None:
        value = self.arch_value("embedding_length")
        return int(value) if isinstance(value, int) else None

    @property
    def pooling_type(self) -> int | None:
        value = self.arch_value("pooling_type")
        return int(value) if isinstance(value, int) else None

    @property
    def classifier_labels(self) -> int:
        labels = self.arch_value("classifier.output_labels")
        return len(labels) if isinstance(labels, list | ArrayInfo) else 0

    @property
    def has_classifier_head(self) -> bool:
        return any(t.name in ("cls.weight", "cls.output.weight") for t in self.tensors)

    @property
    def is_projector(self) -> bool:
        return self.architecture == "clip"

    @property
    def projection_dim(self) -> int | None:
        value = self.metadata.get("clip.vision.projection_dim")
        return int(value) if isinstance(value, int) else None

    @property
    def has_chat_template(self) -> bool:
        return isinstance(self.metadata.get("tokenizer.chat_template"), str)


class _Reader:
    """Bounds-checked little-endian reads from a buffer; every overrun is a GGUFError."""

    def __init__(self, buf: Any, size: int) -> None:
        self.buf = buf
        self.size = size
        self.pos = 0

    def _need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise GGUFError(f"truncated: the file ends at byte {self.size} inside {what} "
                            f"(needs {self.pos + n} bytes); an interrupted download? "
                            "download it again")

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

    def string(self, what: str) -> str:
        n = self.u64(what)
        self._need(n, what)
        raw = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return raw.decode("utf-8", errors="replace")

    def skip_string(self, what: str) -> None:
        n = self.u64(what)
        self._need(n, what)
        self.pos += n

    def count(self, what: str) -> int:
        n = self.u64(what)
        if n > _MAX_COUNT:
            raise GGUFError(f"corrupt: {what} claims {n} entries")
        return n

    def value(self, vtype: int, what: str) -> Any:
        if vtype in _SCALARS:
            return self.unpack(_SCALARS[vtype], what)
        if vtype == _STRING:
            return self.string(what)
        if vtype == _ARRAY:
            item_type = self.u32(what)
            count = self.count(what)
            if count <= MAX_DECODED_ARRAY:
                return [self.value(item_type, what) for _ in range(count)]
            self.skip_array(item_type, count, what)
            return ArrayInfo(item_type, count)
        raise GGUFError(f"corrupt: {what} has unknown value type {vtype}")

    def skip_array(self, item_type: int, count: int, what: str) -> None:
        if item_type in _SCALARS:
            n = struct.calcsize(_SCALARS[item_type]) * count
            self._need(n, what)
            self.pos += n
        elif item_type == _STRING:
            # the hot loop of a big vocabulary: locals only, one bounds check at the end
            pos, unpack = self.pos, _U64.unpack_from
            try:
                for _ in range(count):
                    pos += 8 + unpack(self.buf, pos)[0]
            except struct.error:
                pos = self.size + 1
            if pos > self.size:
                self._need(pos - self.pos, what)
            self.pos = pos
        else:  # arrays of arrays: rare, decode element by element
            for _ in range(count):
                self.value(item_type, what)


def tensor_nbytes(shape: tuple[int, ...], ggml_type: int) -> int | None:
    known = GGML_TYPES.get(ggml_type)
    if known is None:
        return None
    _name, block, type_size = known
    elements = 1
    for dim in shape:
        elements *= dim
    if shape and shape[0] % block:
        raise GGUFError(f"corrupt: a {known[0]} tensor's first dimension {shape[0]} is not a "
                        f"multiple of its block size {block}")
    return elements // block * type_size


def read_header(path: str | os.PathLike[str]) -> GGUFInfo:
    """Parse ``path``'s header and check the data section is all there.

    Raises ``FileNotFoundError``/``IsADirectoryError``/``PermissionError`` for unreadable
    paths and :class:`GGUFError` for content problems.
    """
    p = Path(path)
    with open(p, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size < 4:
            raise GGUFError(f"not a GGUF file: it is only {size} bytes long"
                            + (" (empty)" if size == 0 else ""))
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            return _parse(str(p), buf, size)


def _parse(path: str, buf: Any, size: int) -> GGUFInfo:
    r = _Reader(buf, size)
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
    n_tensors = r.count("the tensor count")
    n_kv = r.count("the metadata count")
    metadata: dict[str, Any] = {}
    for i in range(n_kv):
        key = r.string(f"metadata entry {i}")
        vtype = r.u32(f"metadata {key!r}")
        metadata[key] = r.value(vtype, f"metadata {key!r}")
    tensors: list[TensorInfo] = []
    for i in range(n_tensors):
        name = r.string(f"tensor info {i}")
        n_dims = r.u32(f"tensor {name!r}")
        if n_dims > 8:
            raise GGUFError(f"corrupt: tensor {name!r} claims {n_dims} dimensions")
        shape = tuple(r.u64(f"tensor {name!r}") for _ in range(n_dims))
        ggml_type = r.u32(f"tensor {name!r}")
        offset = r.u64(f"tensor {name!r}")
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
_cache: dict[tuple[str, int, int], GGUFInfo | GGUFError] = {}


def read_header_cached(path: str | os.PathLike[str]) -> GGUFInfo:
    """``read_header`` memoised on (path, size, mtime): a changed file is read again."""
    st = os.stat(path)
    key = (os.fspath(path), st.st_size, st.st_mtime_ns)
    hit = _cache.get(key)
    if hit is None:
        try:
            hit = read_header(path)
        except GGUFError as exc:
            hit = exc
        if len(_cache) > 64:
            _cache.clear()
        _cache[key] = hit
    if isinstance(hit, GGUFError):
        raise hit
    return hit
