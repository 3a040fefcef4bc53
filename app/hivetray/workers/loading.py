"""Loading a model in a worker: llama.cpp's own reason when it refuses one.

Shared by every role (chat, vision, embed, rerank): llama-cpp-python raises a bare
"Failed to load model from file"; the reason is only in llama.cpp's log, which
``logcapture`` keeps, so the error the user sees carries it.
"""

from __future__ import annotations

from typing import Any

from hivetray.errors import ModelLoadError
from hivetray.workers.logcapture import install_llama_log_callback, native_failure_reason
from hivetray.workers.spec import WorkerSpec

#: Generating roles (chat, vision) run attention through llama.cpp's flash-attention kernels, as
#: llama-server does by default on CPU ("auto"): measured here ~3% more tokens/s on SmolLM2 135M
#: and Gemma 3 270M, and a smaller compute buffer. (llama-cpp-python's bool can only say
#: "enabled", not "auto"; CPU builds support it for every model llama.cpp loads.)
GENERATION_FLASH_ATTN = True


def load_llama(spec: WorkerSpec, **extra: Any) -> Any:
    """Load the model, turning llama.cpp's terse failure into an error that says why."""
    install_llama_log_callback()
    from llama_cpp import Llama

    try:
        return Llama(model_path=spec.model, n_ctx=spec.n_ctx, n_threads=spec.n_threads or None,
                     verbose=True, **extra)
    except ValueError as exc:
        reason = native_failure_reason() or str(exc)
        raise ModelLoadError(f"llama.cpp could not load {spec.model}: {reason}",
                             spec.model) from exc
