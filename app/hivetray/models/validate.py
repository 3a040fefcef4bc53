"""Check a role's model (and projector) files before a worker is spawned for them.

Why: spawning a process and loading llama.cpp to learn that a download was cut short wastes
seconds and reports it late; a header check finds it in milliseconds and names the file. Role
rules sit here too (a projector is not a chat model; rerank needs rank pooling; the projector
must project to the model's width) so the pool, ``hivetray models`` and the Settings page agree.
Pure Python; no llama.cpp.
"""

from __future__ import annotations

from hivetray.errors import (
    InvalidModelFile,
    ModelLoadError,
    NotARerankModel,
    ProjectorMismatch,
    ProjectorMissing,
)
from hivetray.models.gguf import GGUFError, GGUFInfo, read_header_cached
from hivetray.wording import Fix, Remedy

POOLING_NONE, POOLING_MEAN, POOLING_CLS, POOLING_LAST, POOLING_RANK = 0, 1, 2, 3, 4


def open_model(path: str, what: str = "model") -> GGUFInfo:
    """Read ``path``'s header or raise :class:`InvalidModelFile` naming it and the fix.

    Any failure of the read becomes that error, whatever its type: the file is untrusted
    input, and a check that escapes with a RecursionError or MemoryError would leave the role
    stuck in ``starting`` instead of showing ``error`` with the file's name. Only
    ``KeyboardInterrupt``/``SystemExit`` (not ``Exception``s) go through.
    """
    try:
        return read_header_cached(path)
    except FileNotFoundError:
        raise InvalidModelFile(f"{what} file not found: {path}", path,
                               Remedy(Fix.RELOCATE_FILE)) from None
    except IsADirectoryError:
        raise InvalidModelFile(f"{what} path is a folder, not a .gguf file: {path}",
                               path) from None
    except PermissionError:
        raise InvalidModelFile(f"{what} file cannot be read (permission denied): {path}",
                               path) from None
    except (GGUFError, OSError) as exc:
        raise InvalidModelFile(f"{path} is not a usable {what} file: {exc}", path) from None
    except Exception as exc:  # a bug or a bound the reader misses: still the file's fault
        raise _unreadable(path, what, exc) from exc


def _unreadable(path: str, what: str, exc: BaseException) -> InvalidModelFile:
    """The one-line error for a failure the reader did not describe itself."""
    detail = " ".join(str(exc).split())[:200]
    reason = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    return InvalidModelFile(f"{path} could not be checked as a {what} file ({reason}); it is "
                            "damaged or not a model: download it again or pick another file",
                            path)


def rerank_needs_forced_pooling(info: GGUFInfo) -> bool:
    """Older reranker conversions have the classifier head but no pooling key: force rank."""
    return info.pooling_type is None and info.has_classifier_head


def check_role(role: str, model: str | None, mmproj: str | None = None) -> GGUFInfo | None:
    """Validate the files of ``role``; return the model's header (None when unconfigured).

    Raises a :class:`ModelLoadError` subclass whose message names the file and what to do,
    whatever went wrong. Blocking (it reads files, up to the reader's deadline): call it off
    the event loop.
    """
    if not model:
        return None
    info = open_model(model)
    if info.is_projector:
        raise InvalidModelFile(f"{model} is a vision projector (mmproj), not a language model",
                               model, Remedy(Fix.MODEL_IS_PROJECTOR, role))
    try:
        if role == "rerank":
            check_rerank(info)
        if role == "vision":
            check_projector(info, mmproj)
    except ModelLoadError:
        raise
    except Exception as exc:  # odd metadata the rules did not expect: report, never crash
        raise _unreadable(model, "model", exc) from exc
    return info


def check_rerank(info: GGUFInfo) -> None:
    if info.pooling_type == POOLING_RANK or rerank_needs_forced_pooling(info):
        return
    what = f"pooling type {info.pooling_type}" if info.pooling_type is not None else \
        "no pooling type"
    raise NotARerankModel(
        f"{info.path} is not a reranker ({info.architecture} model with {what} and no "
        "classifier head): the rerank role needs a rank-pooling model such as "
        "bge-reranker-v2-m3 or Qwen3-Reranker", info.path, Remedy(Fix.PICK_RERANKER, "rerank"))


def check_projector(info: GGUFInfo, mmproj: str | None) -> GGUFInfo:
    if not mmproj:
        raise ProjectorMissing(
            f"the vision role needs a projector (mmproj) file for {info.path}", info.path,
            Remedy(Fix.SET_PROJECTOR, "vision"))
    try:
        proj = open_model(mmproj, "projector")
    except InvalidModelFile as exc:
        raise ProjectorMissing(exc.wording.problem, mmproj, exc.wording.remedy) from None
    if not proj.is_projector:
        raise ProjectorMismatch(
            f"{mmproj} is a {proj.architecture} model, not a projector (mmproj): pick the "
            "mmproj-*.gguf file published with the vision model", mmproj)
    width, dim = info.embedding_length, proj.projection_dim
    if width is not None and dim is not None and width != dim:
        raise ProjectorMismatch(
            f"the projector {mmproj} does not match the model {info.path}: it projects to "
            f"{dim} dimensions, the model has {width}; use the mmproj file published with "
            "this model", mmproj)
    return proj


def validation_message(role: str, model: str | None, mmproj: str | None) -> str | None:
    """``None`` when the files are fine, else the user-facing reason (for listings)."""
    try:
        check_role(role, model, mmproj)
    except ModelLoadError as exc:
        return str(exc)
    return None
