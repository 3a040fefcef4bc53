"""What a GGUF header says, as types: the file's metadata, its tensors, their sizes.

Kept apart from the reader (``models.gguf``) so the pool, ``hivetray models`` and Settings can
work with a parsed header without the parsing machinery, and so each stays a readable size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
