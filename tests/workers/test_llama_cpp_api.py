"""A canary for the parts of llama-cpp-python the workers rely on.

The chat and vision workers generate through llama.cpp's C API as llama-cpp-python binds it
(workers/generate.py, workers/sampler.py, workers/vision.py); the embed/rerank batches do too.
Two private hooks remain, because nothing public does their job: the formatter inside a named
chat format's registered handler (workers/chat.py renders the built-in Gemma base model with
llama-cpp-python's "gemma" format, and the registry keeps only the handler wrapped around it),
and ``MTMDChatHandler._init_mtmd_context`` to load the vision projector at start-up so a wrong
one is a load error, not a failure of the first request (workers/vision.py). pyproject pins the
tested range; these tests fail loudly, naming what moved, on an upgrade that moves it.
"""

from __future__ import annotations

import inspect
from typing import Any

from llama_cpp import Llama
from llama_cpp.llama_chat_format import (
    Jinja2ChatFormatter,
    MTMDChatHandler,
    get_chat_completion_handler,
)


def test_a_named_chat_format_still_wraps_a_plain_formatter() -> None:
    handler: Any = get_chat_completion_handler("gemma")
    assert "chat_formatter" in handler.__code__.co_freevars, (
        "llama-cpp-python's registered chat handlers no longer close over `chat_formatter`: "
        "workers/chat.py takes the formatter of a named format from there")
    assert list(inspect.signature(Jinja2ChatFormatter).parameters)[:3] == [
        "template", "eos_token", "bos_token"]


def test_the_projector_can_still_be_loaded_before_the_first_request() -> None:
    init = getattr(MTMDChatHandler, "_init_mtmd_context", None)
    assert init is not None, (
        "MTMDChatHandler._init_mtmd_context is gone: workers/vision.py loads the projector "
        "at start-up through it")
    assert list(inspect.signature(init).parameters) == ["self", "llama_model"]
    assert "self.mtmd_ctx" in inspect.getsource(init), "workers/vision.py reads mtmd_ctx"


def test_the_public_names_the_workers_use_exist() -> None:
    import llama_cpp
    import llama_cpp.mtmd_cpp as mtmd

    for name in ("llama_batch_init", "llama_batch_free", "llama_decode", "llama_get_memory",
                 "llama_memory_clear", "llama_memory_seq_rm", "llama_memory_seq_pos_min",
                 "llama_get_embeddings_seq", "llama_model_n_cls_out", "llama_model_n_swa",
                 "llama_model_get_vocab", "llama_n_ctx", "llama_n_batch", "llama_vocab_n_tokens",
                 "llama_vocab_is_eog", "llama_vocab_get_text", "llama_tokenize",
                 "llama_token_to_piece", "llama_token", "llama_pos", "llama_logit_bias",
                 "llama_sampler_chain_default_params", "llama_sampler_chain_init",
                 "llama_sampler_chain_add", "llama_sampler_init_logit_bias",
                 "llama_sampler_init_penalties", "llama_sampler_init_greedy",
                 "llama_sampler_init_top_k", "llama_sampler_init_top_p",
                 "llama_sampler_init_min_p", "llama_sampler_init_temp",
                 "llama_sampler_init_dist", "llama_sampler_sample", "llama_sampler_accept",
                 "llama_sampler_free", "LLAMA_DEFAULT_SEED", "llama_log_set",
                 "llama_log_callback"):
        assert hasattr(llama_cpp, name), name
    for name in ("mtmd_helper_log_set", "mtmd_default_marker", "mtmd_helper_bitmap_init_from_buf",
                 "mtmd_bitmap_free", "mtmd_bitmap_p_ctypes", "mtmd_input_text",
                 "mtmd_input_chunks_init", "mtmd_input_chunks_free", "mtmd_input_chunks_size",
                 "mtmd_input_chunks_get", "mtmd_input_chunk_get_type",
                 "mtmd_input_chunk_get_tokens_text", "MTMD_INPUT_CHUNK_TYPE_TEXT",
                 "mtmd_tokenize", "mtmd_helper_get_n_tokens", "mtmd_helper_eval_chunks"):
        assert hasattr(mtmd, name), name
    assert isinstance(Llama.ctx, property) and isinstance(Llama.model, property)


def test_the_c_signatures_the_loop_calls_with_positional_arguments() -> None:
    """ctypes passes positional arguments blindly: a parameter added or dropped upstream
    (llama_sampler_init_penalties gained n_vocab once) would silently shift them."""
    import llama_cpp
    import llama_cpp.mtmd_cpp as mtmd

    arity = [
        (llama_cpp.llama_sampler_init_penalties, 5),  # n_vocab, last_n, repeat, freq, present
        (llama_cpp.llama_sampler_init_logit_bias, 3),
        (llama_cpp.llama_sampler_init_top_p, 2),
        (llama_cpp.llama_sampler_init_min_p, 2),
        (llama_cpp.llama_sampler_sample, 3),
        (llama_cpp.llama_token_to_piece, 6),  # vocab, token, buf, length, lstrip, special
        (llama_cpp.llama_tokenize, 7),
        (llama_cpp.llama_memory_seq_rm, 4),
        (mtmd.mtmd_helper_eval_chunks, 8),
        (mtmd.mtmd_tokenize, 5),
    ]
    for function, count in arity:
        assert len(function.argtypes) == count, function.__name__
