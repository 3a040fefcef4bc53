"""Shapes and small helpers shared by the tiny model writers."""

from __future__ import annotations

import os
from pathlib import Path

import gguf
import numpy as np
from numpy.typing import NDArray

StrPath = str | os.PathLike[str]
F32 = NDArray[np.float32]

# Text model shape (shared by chat, embed, rerank and crash fixtures).
N_EMBD = 64
N_HEAD = 4
N_LAYER = 2
N_FF = 128
HEAD_DIM = N_EMBD // N_HEAD

# Vision tower shape: 32x32 images, 8x8 patches -> 16 patches -> 16 image tokens.
V_EMBD = 32
V_HEAD = 4
V_LAYER = 2
V_FF = 64  # must differ from V_EMBD, or clip.cpp "fixes" the ffn up/down order
IMAGE_SIZE = 32
PATCH_SIZE = 8
PROJ_HIDDEN = 64

def normal(rng: np.random.Generator, shape: tuple[int, ...], std: float) -> F32:
    return (rng.standard_normal(shape) * std).astype(np.float32)


def ones(n: int) -> F32:
    return np.ones(n, dtype=np.float32)


def zeros(n: int) -> F32:
    return np.zeros(n, dtype=np.float32)


def finish(writer: gguf.GGUFWriter, path: Path) -> Path:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
