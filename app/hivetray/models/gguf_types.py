"""What a GGUF header says, as types: the file's metadata, its tensors, their sizes.

Kept apart from the reader (``models.gguf``) so the pool, ``hivetray models`` and Settings can
work with a parsed header without the parsing machinery, and so each stays a readable size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: bytes of one cached K or V value: llama.cpp's KV cache is f16 unless told otherwise
KV_VALUE_BYTES = 2

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
    def vocab_size(self) -> int | None:
        """Tokens in the vocabulary (``{arch}.vocab_size``, else the token list's length)."""
        tokens = self.metadata.get("tokenizer.ggml.tokens")
        if isinstance(tokens, list | ArrayInfo):
            return len(tokens)
        return _count(self.arch_value("vocab_size"))

    @property
    def block_count(self) -> int | None:
        """The number of transformer layers (``{arch}.block_count``)."""
        return _count(self.arch_value("block_count"))

    @property
    def head_count(self) -> int | list[int] | None:
        """Attention heads: one number, or one per layer (models that vary it by layer)."""
        return _heads(self.arch_value("attention.head_count"))

    @property
    def head_count_kv(self) -> int | list[int] | None:
        """Key/value heads (fewer than ``head_count`` with grouped-query attention); None when
        the header does not say (then every head has its own K and V)."""
        return _heads(self.arch_value("attention.head_count_kv"))

    @property
    def key_length(self) -> int | None:
        """One head's key width, when it is not ``embedding_length / head_count`` (Gemma)."""
        return _count(self.arch_value("attention.key_length"))

    @property
    def value_length(self) -> int | None:
        return _count(self.arch_value("attention.value_length"))

    @property
    def sliding_window(self) -> int | None:
        """Tokens a sliding-window attention layer sees (Gemma 3), None without such layers."""
        return _count(self.arch_value("attention.sliding_window")) or None

    @property
    def kv_bytes_per_token(self) -> int | None:
        """What one token of context costs in llama.cpp's KV cache (f16 K and V, every layer).

        Per layer: ``n_head_kv × (key_length + value_length) × 2`` bytes, the widths defaulting
        to ``embedding_length / head_count`` as llama.cpp does. ``None`` when the header lacks
        the attention shape (a projector, or a per-layer list too long to be decoded): the
        caller then knows nothing about the cache rather than a wrong number. Layers with no
        attention heads (recurrent ones) cost nothing. Sliding-window layers are counted at
        full context, so the figure errs on the high side.
        """
        layers, width = self.block_count, self.embedding_length
        heads = _per_layer(self.head_count, layers)
        kv_heads = _per_layer(self.head_count_kv, layers) if self.head_count_kv is not None \
            else heads
        if heads is None or kv_heads is None or width is None:
            return None
        total = 0
        for n_head, n_head_kv in zip(heads, kv_heads, strict=True):
            if n_head <= 0:
                continue
            key = self.key_length or width // n_head
            value = self.value_length or width // n_head
            total += n_head_kv * (key + value) * KV_VALUE_BYTES
        return total

    def kv_cache_bytes(self, n_ctx: int) -> int | None:
        """The KV cache for ``n_ctx`` tokens of context (None: the shape is unknown)."""
        per_token = self.kv_bytes_per_token
        return None if per_token is None else per_token * max(0, n_ctx)

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


def _count(value: Any) -> int | None:
    """A non-negative whole number from the metadata, or None (missing, or the wrong type)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def _heads(value: Any) -> int | list[int] | None:
    if isinstance(value, list):
        counts = [_count(item) for item in value]
        return None if any(c is None for c in counts) else [c for c in counts if c is not None]
    return _count(value)


def _per_layer(heads: int | list[int] | None, layers: int | None) -> list[int] | None:
    """A head count as one number per layer; None when it cannot be (a list of another length
    than the layers, or no layer count)."""
    if heads is None or layers is None:
        return None
    if isinstance(heads, int):
        return [heads] * layers
    return heads if len(heads) == layers else None


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
