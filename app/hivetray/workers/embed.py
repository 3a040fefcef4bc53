"""The embed role: a batch of texts → one vector per text.

Why not ``Llama.embed``: it silently cuts every input to ``n_batch`` tokens (512 by default,
whatever the context). Here the batch size *is* the usable context (``n_batch = n_ubatch`` = the
role's n_ctx, capped at the model's trained length), texts are packed into as few decodes as
fit, and a text longer than the context is cut *and reported* in the result's ``truncated``
list, so a RAG pipeline knows which chunks lost their tail. Pooling comes from the model file;
a model that names none gets mean pooling (one vector per text is the contract).

The packing loop (:func:`encode_sequences`) is shared with the rerank role.
"""

from __future__ import annotations

import math
from typing import Any

from hivetray.errors import InvalidRequest, ModelLoadError
from hivetray.models.gguf import GGUFInfo, read_header
from hivetray.models.validate import POOLING_MEAN, POOLING_NONE, POOLING_RANK
from hivetray.workers.batch import SequenceBatch, clear_memory, pooled
from hivetray.workers.context import RequestContext
from hivetray.workers.loading import load_llama
from hivetray.workers.spec import WorkerSpec

#: a decode packs at most this many sequences (llama.cpp's own limit is also respected)
MAX_SEQS_PER_DECODE = 64


def usable_context(spec: WorkerSpec, info: GGUFInfo) -> int:
    """The role's n_ctx, but never beyond what the model was trained on."""
    trained = info.context_length
    wanted = spec.n_ctx or trained or 512
    return min(wanted, trained) if trained else wanted


def load_embedding_llama(spec: WorkerSpec, width: int, pooling: int | None) -> Any:
    """Load in embedding mode with one decode able to hold a whole context."""
    import llama_cpp

    extra: dict[str, Any] = {"embedding": True, "n_batch": width, "n_ubatch": width}
    extra["pooling_type"] = llama_cpp.LLAMA_POOLING_TYPE_UNSPECIFIED if pooling is None \
        else pooling
    return load_llama(WorkerSpec(spec.role, spec.model, spec.mmproj, width, spec.n_threads,
                                 spec.log_path, spec.faults), **extra)


def encode_sequences(llm: Any, sequences: list[list[int]], width: int, take: int,
                     ctx: RequestContext | None = None) -> list[list[float]] | None:
    """Decode token lists in packed batches; return the first ``take`` pooled floats of each.

    Each list must already fit ``width`` tokens. Returns None when the request was cancelled
    between batches.
    """
    n_seq_max = max(1, min(MAX_SEQS_PER_DECODE, int(llm.context_params.n_seq_max)))
    out: list[list[float]] = []
    pending: list[list[int]] = []
    used = 0
    batch = SequenceBatch(width, n_seq_max)

    def flush() -> None:
        clear_memory(llm.ctx)
        for seq_id, tokens in enumerate(pending):
            batch.add(tokens, seq_id)
        batch.decode(llm.ctx)
        out.extend(pooled(llm.ctx, seq_id, take) for seq_id in range(len(pending)))

    try:
        for tokens in sequences:
            if pending and (used + len(tokens) > width or len(pending) >= n_seq_max):
                flush()
                pending, used = [], 0
                if ctx is not None and ctx.is_cancelled():
                    return None
            pending.append(tokens)
            used += len(tokens)
        if pending:
            flush()
    finally:
        clear_memory(llm.ctx)
        batch.close()
    return out


def normalize(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector] if norm > 0 else vector


class EmbedHandler:
    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        info = read_header(spec.model)
        if info.pooling_type == POOLING_RANK:
            raise ModelLoadError(f"{spec.model} is a reranker (rank pooling), not an embedding "
                                 "model: set it for the rerank role instead", spec.model)
        # pooling from the file; none named (or "none") → mean, so each text gets one vector
        pooling = POOLING_MEAN if info.pooling_type in (None, POOLING_NONE) else None
        self.width = usable_context(spec, info)
        self.llm = load_embedding_llama(spec, self.width, pooling)
        self.pooling = int(self.llm.pooling_type())
        self.n_embd = int(self.llm.n_embd())

    def info(self) -> dict[str, Any]:
        return {"n_ctx": self.width, "n_embd": self.n_embd, "pooling": self.pooling,
                "model": self.spec.model}

    def handle(self, method: str, params: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        if method != "embed":
            raise InvalidRequest(f"the embed worker has no method {method!r}")
        texts = params.get("texts")
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise InvalidRequest("embed needs a non-empty 'texts' list of strings")
        sequences: list[list[int]] = []
        truncated: list[dict[str, int]] = []
        for i, text in enumerate(texts):
            tokens = self.llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
            if not tokens:
                raise InvalidRequest(f"text {i + 1} is empty: there is nothing to embed")
            if len(tokens) > self.width:
                truncated.append({"index": i, "tokens": len(tokens), "kept": self.width})
                tokens = tokens[:self.width]
            sequences.append(tokens)
        vectors = encode_sequences(self.llm, sequences, self.width, self.n_embd, ctx)
        if vectors is None:
            return {"embeddings": [], "truncated": truncated, "finish_reason": "cancelled"}
        if params.get("normalize", True):
            vectors = [normalize(v) for v in vectors]
        return {"embeddings": vectors, "truncated": truncated, "n_ctx": self.width,
                "usage": {"prompt_tokens": sum(len(s) for s in sequences),
                          "completion_tokens": 0}}
