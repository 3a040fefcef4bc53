"""Tiny random-weight GGUF files that real llama.cpp loads in milliseconds.

Why: tests and benchmarks need *real* llama.cpp behaviour (loading, tokenising, streaming,
embedding, reranking, vision, crashing) without downloading gigabyte models.  Every file is
generated deterministically from a seed with ``gguf.GGUFWriter`` and weighs a few hundred KB.

Recipes (checked against llama-cpp-python 0.3.36, ``n_threads=1``):

* ``write_chat_model`` -- arch ``llama`` (n_embd 64, 2 blocks, 4 heads, n_ff 128, F32), a
  byte-level ``gpt2`` vocabulary (256 GPT-2 byte tokens + 5 merges + ``<|endoftext|>``,
  ``<|im_start|>``, ``<|im_end|>``) and a ChatML Jinja template whose ``content`` may be a string
  or a list of ``{"type": "text", "text": ...}`` parts (other parts render as nothing).
  Residual dimension 0 is a constant "bias feature" (every token embedding has 1.0 there and no
  block writes to it), so ``output.weight[:, 0]`` acts as a per-token logit bias: control tokens
  get -50 (never sampled, so every generation runs exactly ``max_tokens`` and finishes with
  ``"length"``), printable ASCII (letters, digits, `` .,!?'-``, no ``<``) gets +3, everything
  else -3.  Streamed chunks therefore carry non-empty text, one chunk per token.
  Trained context is ``n_ctx`` (256): pass ``n_ctx<=256`` to ``Llama`` to avoid a warning.
* ``write_embed_model`` -- the chat model plus ``llama.pooling_type = 1`` (mean) and a 512
  context (llama-cpp-python's default ``n_ctx``):
  ``Llama(path, embedding=True).embed(["a", "b"])`` returns two 64-float vectors.
* ``write_rerank_model`` -- arch ``qwen3`` (adds ``attn_q_norm``/``attn_k_norm``), a 2-label
  ``cls.output.weight`` head, ``qwen3.classifier.output_labels`` and ``qwen3.pooling_type = 4``
  (rank).  llama.cpp pools the *last* token, applies the head and (qwen3 only) a softmax, so
  the two label scores of a sequence sum to 1.  ``Llama(path, embedding=True)`` picks rank
  pooling from the file; ``embed([f"{query}\\n{doc}" for doc in docs])`` returns one list per
  pair of which only element ``[0]`` (label "yes") is the score -- llama-cpp-python copies
  ``n_embd`` floats but llama.cpp filled only ``n_cls_out`` (2); the rest is junk.  For exact
  reads use ``llama_cpp.llama_get_embeddings_seq`` with ``llama_cpp.llama_model_n_cls_out``.
* ``write_mmproj`` -- a ~120 KB CLIP projector (``clip.projector_type = "mlp"``, 32 px images,
  8 px patches -> 16 image tokens, two 32-wide vision blocks, ``mm.0``/``mm.2`` projecting to
  the text n_embd).  Use ``llama_cpp.llama_chat_format.MTMDChatHandler(clip_model_path=...)``
  as ``Llama(chat_model, chat_handler=handler, n_ctx=256)``; an ``image_url`` part with a PNG
  data URL then works.  The handler swaps image parts for text parts holding the media marker,
  which is why the template concatenates text parts.
* ``write_crash_model`` -- a chat model with a duplicated token string: llama.cpp hits
  ``GGML_ASSERT(id_to_token.size() == token_to_id.size())`` and aborts the whole process
  (SIGABRT, no Python exception).  Only ever load it in a subprocess; set
  ``GGML_NO_BACKTRACE=1`` there, or ggml first attaches gdb (if installed) for ~0.7 s.
* ``write_truncated`` / ``write_random_bytes`` / ``write_unknown_arch_model`` -- damaged
  files that llama-cpp-python rejects with a plain ``ValueError`` (no crash).

Logging quirks of llama-cpp-python 0.3.36: its log callback uses a stale ggml level enum, so
with ``verbose=False`` llama.cpp *warnings* still reach stderr while *errors* are hidden, and
stderr is redirected during load (the crash model's assert message is lost).  mtmd logs every
tokenize/encode step to stderr regardless; silence it with
``llama_cpp.mtmd_cpp.mtmd_helper_log_set(llama_cpp._logger.llama_log_callback, None)``.

Run ``python -m hivetray.devtools.tinymodels OUTDIR`` to write the standard set.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from hivetray.devtools.tinymodels.damaged import (
    write_random_bytes,
    write_truncated,
    write_unknown_arch_model,
)
from hivetray.devtools.tinymodels.text import (
    CHAT_TEMPLATE,
    write_chat_model,
    write_crash_model,
    write_embed_model,
    write_rerank_model,
)
from hivetray.devtools.tinymodels.vision import write_mmproj

__all__ = [
    "CHAT_TEMPLATE",
    "write_chat_model",
    "write_crash_model",
    "write_embed_model",
    "write_mmproj",
    "write_random_bytes",
    "write_rerank_model",
    "write_truncated",
    "write_unknown_arch_model",
]


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: write chat/embed/rerank/mmproj/crash fixtures into OUTDIR and print their paths."""
    parser = argparse.ArgumentParser(
        prog="python -m hivetray.devtools.tinymodels", description=main.__doc__
    )
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    outdir: Path = args.outdir
    seed: int = args.seed
    outdir.mkdir(parents=True, exist_ok=True)
    written = [
        write_chat_model(outdir / "chat.gguf", seed=seed),
        write_embed_model(outdir / "embed.gguf", seed=seed),
        write_rerank_model(outdir / "rerank.gguf", seed=seed),
        write_mmproj(outdir / "mmproj.gguf", seed=seed),
        write_crash_model(outdir / "crash.gguf"),
    ]
    for p in written:
        print(p)
    return 0


