"""The text models: chat (llama arch, byte-level gpt2 vocabulary, ChatML), embed (mean
pooling), rerank (qwen3 with a classifier head and rank pooling) and the crash fixture."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np

from hivetray.devtools.tinymodels.common import (
    HEAD_DIM,
    N_EMBD,
    N_FF,
    N_HEAD,
    N_LAYER,
    StrPath,
    finish,
    normal,
    ones,
)

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
    embd = normal(rng, (n_vocab, N_EMBD), 0.1)
    embd[:, 0] = 1.0
    w.add_tensor("token_embd.weight", embd)
    for i in range(N_LAYER):
        blk = f"blk.{i}"
        w.add_tensor(f"{blk}.attn_norm.weight", ones(N_EMBD))
        for proj in ("attn_q", "attn_k", "attn_v"):
            w.add_tensor(f"{blk}.{proj}.weight", normal(rng, (N_EMBD, N_EMBD), 0.1))
        attn_out = normal(rng, (N_EMBD, N_EMBD), 0.02)
        attn_out[0, :] = 0.0
        w.add_tensor(f"{blk}.attn_output.weight", attn_out)
        if arch == "qwen3":
            w.add_tensor(f"{blk}.attn_q_norm.weight", ones(HEAD_DIM))
            w.add_tensor(f"{blk}.attn_k_norm.weight", ones(HEAD_DIM))
        w.add_tensor(f"{blk}.ffn_norm.weight", ones(N_EMBD))
        w.add_tensor(f"{blk}.ffn_gate.weight", normal(rng, (N_FF, N_EMBD), 0.1))
        w.add_tensor(f"{blk}.ffn_up.weight", normal(rng, (N_FF, N_EMBD), 0.1))
        ffn_down = normal(rng, (N_EMBD, N_FF), 0.02)
        ffn_down[0, :] = 0.0
        w.add_tensor(f"{blk}.ffn_down.weight", ffn_down)
    w.add_tensor("output_norm.weight", ones(N_EMBD))

    # After RMS norm the bias feature is ~+6, so column 0 is a per-token logit bias.
    head = normal(rng, (n_vocab, N_EMBD), 0.5)
    head[:, 0] = -3.0
    head[vocab.printable, 0] = 3.0
    head[vocab.control, 0] = -50.0
    w.add_tensor("output.weight", head)
    if labels:
        cls_head = normal(rng, (len(labels), N_EMBD), 0.1)
        cls_head[:, 0] = 0.0  # ignore the bias feature so scores spread around 0.5
        w.add_tensor("cls.output.weight", cls_head)
    return finish(w, out)


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


def write_crash_model(path: StrPath) -> Path:
    """Write a chat model with a duplicated vocab entry; loading it SIGABRTs the process.

    Why: crash-isolation tests need a file that kills a worker natively, not via Python.
    """
    return _write_text_model(
        path, arch="llama", name="hivetray-tiny-crash", seed=0, duplicate_token=True
    )
