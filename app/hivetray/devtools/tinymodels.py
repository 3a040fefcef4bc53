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
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np
from numpy.typing import NDArray

__all__ = [
    "write_chat_model",
    "write_crash_model",
    "write_embed_model",
    "write_mmproj",
    "write_random_bytes",
    "write_rerank_model",
    "write_truncated",
    "write_unknown_arch_model",
]

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

_MERGES = (("Ġ", "t"), ("Ġ", "a"), ("h", "e"), ("i", "n"), ("t", "h"))
_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
_PRINTABLE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,!?'-")
_TOKEN_NORMAL = 1
_TOKEN_CONTROL = 3

# ChatML; `content` may be a string or a list of parts.  Explicit "\n" strings and "-" trims
# keep the output independent of the trim_blocks/lstrip_blocks settings of the renderer.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}"
    "{{- message['content'] -}}"
    "{%- elif message['content'] is not none -%}"
    "{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


@dataclass(frozen=True)
class _Vocab:
    tokens: list[str]
    types: list[int]
    merges: list[str]
    printable: list[int]
    control: list[int]

    def id(self, text: str) -> int:
        return self.tokens.index(text)


def _gpt2_byte_chars() -> list[str]:
    """GPT-2's reversible byte -> visible unicode character table, indexed by byte."""
    visible = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table: dict[int, str] = {b: chr(b) for b in visible}
    spare = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + spare)
            spare += 1
    return [table[b] for b in range(256)]


def _build_vocab(*, duplicate: bool = False) -> _Vocab:
    """Byte tokens + a few merges + ChatML control tokens (+ a duplicate if asked)."""
    tokens = _gpt2_byte_chars()
    types = [_TOKEN_NORMAL] * len(tokens)
    printable = [b for b in range(128) if chr(b) in _PRINTABLE]
    merges: list[str] = []
    for left, right in _MERGES:
        merges.append(f"{left} {right}")
        printable.append(len(tokens))
        tokens.append(left + right)
        types.append(_TOKEN_NORMAL)
    control: list[int] = []
    for special in _SPECIALS:
        control.append(len(tokens))
        tokens.append(special)
        types.append(_TOKEN_CONTROL)
    if duplicate:
        tokens.append(tokens[ord("a")])  # same string twice -> llama.cpp GGML_ASSERT abort
        types.append(_TOKEN_NORMAL)
    return _Vocab(tokens, types, merges, printable, control)


def _normal(rng: np.random.Generator, shape: tuple[int, ...], std: float) -> F32:
    return (rng.standard_normal(shape) * std).astype(np.float32)


def _ones(n: int) -> F32:
    return np.ones(n, dtype=np.float32)


def _zeros(n: int) -> F32:
    return np.zeros(n, dtype=np.float32)


def _finish(writer: gguf.GGUFWriter, path: Path) -> Path:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _write_text_model(
    path: StrPath,
    *,
    arch: str,
    name: str,
    seed: int,
    n_ctx: int = 256,
    pooling_type: int | None = None,
    labels: Sequence[str] = (),
    duplicate_token: bool = False,
) -> Path:
    """Shared writer for every text fixture; see the module docstring for the recipe."""
    out = Path(path)
    vocab = _build_vocab(duplicate=duplicate_token)
    n_vocab = len(vocab.tokens)
    rng = np.random.default_rng(seed)

    w = gguf.GGUFWriter(str(out), arch)
    w.add_name(name)
    w.add_file_type(0)  # ALL_F32
    w.add_context_length(n_ctx)
    w.add_embedding_length(N_EMBD)
    w.add_block_count(N_LAYER)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(HEAD_DIM)
    w.add_rope_freq_base(10000.0)
    w.add_vocab_size(n_vocab)
    if pooling_type is not None:
        w.add_uint32(f"{arch}.pooling_type", pooling_type)
    if labels:
        w.add_array(f"{arch}.classifier.output_labels", list(labels))

    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(vocab.tokens)
    w.add_token_types(vocab.types)
    w.add_token_merges(vocab.merges)
    w.add_bos_token_id(vocab.id("<|endoftext|>"))
    w.add_eos_token_id(vocab.id("<|im_end|>"))
    w.add_eot_token_id(vocab.id("<|im_end|>"))
    w.add_pad_token_id(vocab.id("<|endoftext|>"))
    w.add_add_bos_token(False)
    w.add_chat_template(CHAT_TEMPLATE)

    # Dimension 0 of the residual stream is a constant 1.0 "bias feature": set in every token
    # embedding and never written by a block (row 0 of attn_output / ffn_down is zero).
    embd = _normal(rng, (n_vocab, N_EMBD), 0.1)
    embd[:, 0] = 1.0
    w.add_tensor("token_embd.weight", embd)
    for i in range(N_LAYER):
        blk = f"blk.{i}"
        w.add_tensor(f"{blk}.attn_norm.weight", _ones(N_EMBD))
        for proj in ("attn_q", "attn_k", "attn_v"):
            w.add_tensor(f"{blk}.{proj}.weight", _normal(rng, (N_EMBD, N_EMBD), 0.1))
        attn_out = _normal(rng, (N_EMBD, N_EMBD), 0.02)
        attn_out[0, :] = 0.0
        w.add_tensor(f"{blk}.attn_output.weight", attn_out)
        if arch == "qwen3":
            w.add_tensor(f"{blk}.attn_q_norm.weight", _ones(HEAD_DIM))
            w.add_tensor(f"{blk}.attn_k_norm.weight", _ones(HEAD_DIM))
        w.add_tensor(f"{blk}.ffn_norm.weight", _ones(N_EMBD))
        w.add_tensor(f"{blk}.ffn_gate.weight", _normal(rng, (N_FF, N_EMBD), 0.1))
        w.add_tensor(f"{blk}.ffn_up.weight", _normal(rng, (N_FF, N_EMBD), 0.1))
        ffn_down = _normal(rng, (N_EMBD, N_FF), 0.02)
        ffn_down[0, :] = 0.0
        w.add_tensor(f"{blk}.ffn_down.weight", ffn_down)
    w.add_tensor("output_norm.weight", _ones(N_EMBD))

    # After RMS norm the bias feature is ~+6, so column 0 is a per-token logit bias.
    head = _normal(rng, (n_vocab, N_EMBD), 0.5)
    head[:, 0] = -3.0
    head[vocab.printable, 0] = 3.0
    head[vocab.control, 0] = -50.0
    w.add_tensor("output.weight", head)
    if labels:
        cls_head = _normal(rng, (len(labels), N_EMBD), 0.1)
        cls_head[:, 0] = 0.0  # ignore the bias feature so scores spread around 0.5
        w.add_tensor("cls.output.weight", cls_head)
    return _finish(w, out)


def write_chat_model(path: StrPath, *, n_ctx: int = 256, seed: int = 0) -> Path:
    """Write a ~470 KB chat model whose generations always run exactly ``max_tokens``.

    Why: streaming, cancellation and timing tests need deterministic lengths and
    non-empty printable text from a model that loads in milliseconds.
    """
    return _write_text_model(path, arch="llama", name="hivetray-tiny-chat", seed=seed, n_ctx=n_ctx)


def write_embed_model(path: StrPath, *, seed: int = 0) -> Path:
    """Write the chat model with mean pooling, for ``Llama(..., embedding=True).embed``.

    Why: embedding endpoints need one fixed-size vector per input, not per token.
    """
    return _write_text_model(
        path, arch="llama", name="hivetray-tiny-embed", seed=seed, n_ctx=512, pooling_type=1
    )


def write_rerank_model(path: StrPath, *, seed: int = 0) -> Path:
    """Write a qwen3 reranker (rank pooling, 2-label head); element 0 of each result is the score.

    Why: rerank code paths need llama.cpp's real rank pooling, which only some archs support.
    """
    return _write_text_model(
        path,
        arch="qwen3",
        name="hivetray-tiny-rerank",
        seed=seed,
        n_ctx=512,
        pooling_type=4,
        labels=("yes", "no"),
    )


def write_mmproj(path: StrPath, *, n_embd_text: int = 64, seed: int = 0) -> Path:
    """Write a ~120 KB LLaVA-style CLIP projector for ``MTMDChatHandler``.

    Why: vision chat tests need a real mtmd pipeline (image decode, encode, projection).
    ``n_embd_text`` must equal the text model's n_embd (64 for the fixtures here).
    """
    out = Path(path)
    rng = np.random.default_rng(seed)
    n_patches = (IMAGE_SIZE // PATCH_SIZE) ** 2

    w = gguf.GGUFWriter(str(out), "clip")
    w.add_name("hivetray-tiny-mmproj")
    w.add_file_type(0)
    w.add_bool("clip.has_vision_encoder", True)
    w.add_string("clip.projector_type", "mlp")
    w.add_bool("clip.use_gelu", True)
    w.add_uint32("clip.vision.embedding_length", V_EMBD)
    w.add_uint32("clip.vision.feed_forward_length", V_FF)
    w.add_uint32("clip.vision.block_count", V_LAYER)
    w.add_uint32("clip.vision.attention.head_count", V_HEAD)
    w.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-6)
    w.add_uint32("clip.vision.projection_dim", n_embd_text)
    w.add_uint32("clip.vision.image_size", IMAGE_SIZE)
    w.add_uint32("clip.vision.patch_size", PATCH_SIZE)
    w.add_array("clip.vision.image_mean", [0.5, 0.5, 0.5])
    w.add_array("clip.vision.image_std", [0.5, 0.5, 0.5])

    w.add_tensor("v.patch_embd.weight", _normal(rng, (V_EMBD, 3, PATCH_SIZE, PATCH_SIZE), 0.05))
    w.add_tensor("v.patch_embd.bias", _zeros(V_EMBD))
    w.add_tensor("v.position_embd.weight", _normal(rng, (n_patches, V_EMBD), 0.05))
    w.add_tensor("v.pre_ln.weight", _ones(V_EMBD))
    w.add_tensor("v.pre_ln.bias", _zeros(V_EMBD))
    for i in range(V_LAYER):
        blk = f"v.blk.{i}"
        for norm in ("ln1", "ln2"):
            w.add_tensor(f"{blk}.{norm}.weight", _ones(V_EMBD))
            w.add_tensor(f"{blk}.{norm}.bias", _zeros(V_EMBD))
        for proj in ("attn_q", "attn_k", "attn_v", "attn_out"):
            w.add_tensor(f"{blk}.{proj}.weight", _normal(rng, (V_EMBD, V_EMBD), 0.1))
            w.add_tensor(f"{blk}.{proj}.bias", _zeros(V_EMBD))
        w.add_tensor(f"{blk}.ffn_up.weight", _normal(rng, (V_FF, V_EMBD), 0.1))
        w.add_tensor(f"{blk}.ffn_up.bias", _zeros(V_FF))
        w.add_tensor(f"{blk}.ffn_down.weight", _normal(rng, (V_EMBD, V_FF), 0.1))
        w.add_tensor(f"{blk}.ffn_down.bias", _zeros(V_EMBD))

    w.add_tensor("mm.0.weight", _normal(rng, (PROJ_HIDDEN, V_EMBD), 0.1))
    w.add_tensor("mm.0.bias", _zeros(PROJ_HIDDEN))
    # Image embeddings keep the text model's constant bias feature in dimension 0.
    mm2 = _normal(rng, (n_embd_text, PROJ_HIDDEN), 0.02)
    mm2[0, :] = 0.0
    mm2_bias = _zeros(n_embd_text)
    mm2_bias[0] = 1.0
    w.add_tensor("mm.2.weight", mm2)
    w.add_tensor("mm.2.bias", mm2_bias)
    return _finish(w, out)


def write_crash_model(path: StrPath) -> Path:
    """Write a chat model with a duplicated vocab entry; loading it SIGABRTs the process.

    Why: crash-isolation tests need a file that kills a worker natively, not via Python.
    """
    return _write_text_model(
        path, arch="llama", name="hivetray-tiny-crash", seed=0, duplicate_token=True
    )


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
    w.add_tensor("token_embd.weight", _ones(8 * 4).reshape(4, 8))
    return _finish(w, out)


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


if __name__ == "__main__":
    sys.exit(main())
