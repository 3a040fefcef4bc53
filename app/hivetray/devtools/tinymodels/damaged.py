"""Damaged files that llama-cpp-python rejects with a plain ValueError (no crash)."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

from hivetray.devtools.tinymodels.common import StrPath, finish, ones


def write_truncated(src: StrPath, dst: StrPath, *, fraction: float = 0.5) -> Path:
    """Copy the first ``fraction`` of ``src`` to ``dst``, like an interrupted download.

    Why: loaders must report a clean error (llama-cpp-python raises ``ValueError``).
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    data = Path(src).read_bytes()
    out = Path(dst)
    out.write_bytes(data[: int(len(data) * fraction)])
    return out


def write_random_bytes(path: StrPath, *, size: int = 4096, seed: int = 0) -> Path:
    """Write ``size`` seeded random bytes (never starting with the GGUF magic).

    Why: a non-GGUF file renamed to ``.gguf`` must be rejected, not crash the loader.
    """
    data = bytearray(np.random.default_rng(seed).bytes(size))
    if data[:4] == b"GGUF":
        data[0] ^= 0xFF
    out = Path(path)
    out.write_bytes(bytes(data))
    return out


def write_unknown_arch_model(path: StrPath) -> Path:
    """Write a well-formed GGUF whose ``general.architecture`` llama.cpp does not know.

    Why: valid container, unsupported model -> must surface as a load error (``ValueError``).
    """
    out = Path(path)
    arch = "hivetray-unknown"
    w = gguf.GGUFWriter(str(out), arch)
    w.add_name("hivetray-unknown-arch")
    w.add_file_type(0)
    w.add_context_length(64)
    w.add_embedding_length(8)
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", ones(8 * 4).reshape(4, 8))
    return finish(w, out)
