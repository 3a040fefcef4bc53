"""A canary for the few private parts of llama-cpp-python the workers rely on.

Public API is used wherever one exists (the embed/rerank batches drive llama.cpp's C API). Two
private hooks remain, because nothing public does their job: ``Llama.sample`` wrapped per
request to count prompt and completion tokens of a streamed chat without a per-token numpy
view (workers/chat.py), and ``MTMDChatHandler._init_mtmd_context`` to load the vision projector
at start-up so a wrong one is a load error, not a failure of the first request
(workers/vision.py). pyproject pins the tested range; these tests fail loudly, naming the hook,
on an upgrade that moves them.
"""

from __future__ import annotations

import inspect

from llama_cpp import Llama
from llama_cpp.llama_chat_format import MTMDChatHandler


def test_generate_still_samples_through_the_instance_method_once_per_token() -> None:
    source = inspect.getsource(Llama.generate)
    assert "self.sample(" in source, (
        "llama-cpp-python no longer calls Llama.sample from generate(): workers/chat.py "
        "counts tokens by wrapping it; find the new per-token hook")
    assert list(inspect.signature(Llama.sample).parameters)[:1] == ["self"]


def test_the_projector_can_still_be_loaded_before_the_first_request() -> None:
    init = getattr(MTMDChatHandler, "_init_mtmd_context", None)
    assert init is not None, (
        "MTMDChatHandler._init_mtmd_context is gone: workers/vision.py loads the projector "
        "at start-up through it")
    assert list(inspect.signature(init).parameters) == ["self", "llama_model"]


def test_the_public_names_the_workers_use_exist() -> None:
    import llama_cpp
    import llama_cpp.mtmd_cpp as mtmd

    for name in ("llama_batch_init", "llama_batch_free", "llama_decode", "llama_get_memory",
                 "llama_memory_clear", "llama_get_embeddings_seq", "llama_model_n_cls_out",
                 "llama_model_get_vocab", "llama_log_set", "llama_log_callback"):
        assert hasattr(llama_cpp, name), name
    assert hasattr(mtmd, "mtmd_helper_log_set")
    assert isinstance(Llama.ctx, property) and isinstance(Llama.model, property)
