"""Packing whole token sequences into one llama.cpp decode, through its public C API.

The embed and rerank roles decode many short sequences at once and read one pooled vector per
sequence. llama-cpp-python's ``Llama`` has no public call for that (its batch helpers are
private), so this drives the C API it binds — ``llama_batch_init``/``llama_decode``/
``llama_get_embeddings_seq``/``llama_memory_clear`` — which is stable across its releases.
"""

from __future__ import annotations

from typing import Any


class SequenceBatch:
    """A reusable ``llama_batch`` for up to ``capacity`` tokens in ``n_seq_max`` sequences."""

    def __init__(self, capacity: int, n_seq_max: int) -> None:
        import llama_cpp

        self._api = llama_cpp
        self.capacity = capacity
        self.batch = llama_cpp.llama_batch_init(capacity, 0, n_seq_max)
        self.batch.n_tokens = 0

    def add(self, tokens: list[int], seq_id: int) -> None:
        """Append a whole sequence (positions from 0); every token's output is kept, which is
        what pooling over the sequence needs."""
        start = self.batch.n_tokens
        if start + len(tokens) > self.capacity:
            raise ValueError(f"{start + len(tokens)} tokens do not fit a batch of "
                             f"{self.capacity}")
        for i, token in enumerate(tokens):
            j = start + i
            self.batch.token[j] = token
            self.batch.pos[j] = i
            self.batch.n_seq_id[j] = 1
            self.batch.seq_id[j][0] = seq_id
            self.batch.logits[j] = True
        self.batch.n_tokens = start + len(tokens)

    def decode(self, ctx: Any) -> None:
        code = self._api.llama_decode(ctx, self.batch)
        if code != 0:
            raise RuntimeError(f"llama_decode returned {code}")
        self.batch.n_tokens = 0

    def close(self) -> None:
        self._api.llama_batch_free(self.batch)


def clear_memory(ctx: Any) -> None:
    """Forget every sequence in the context (its KV cache), so ids can be reused."""
    import llama_cpp

    llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)


def pooled(ctx: Any, seq_id: int, take: int) -> list[float]:
    """The first ``take`` floats llama.cpp pooled for ``seq_id`` in the last decode."""
    import llama_cpp

    ptr = llama_cpp.llama_get_embeddings_seq(ctx, seq_id)
    return [float(x) for x in ptr[:take]]
