"""Role rules checked before a worker is spawned: every message names the file and the fix."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from hivetray.devtools import tinymodels
from hivetray.errors import (
    InvalidModelFile,
    ModelLoadError,
    NotARerankModel,
    ProjectorMismatch,
    ProjectorMissing,
)
from hivetray.models import validate
from hivetray.models.gguf import GGUFInfo
from hivetray.models.validate import check_role, validation_message
from tests.models import hostile_gguf


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("validate")
    chat = tinymodels.write_chat_model(folder / "chat.gguf")
    return {
        "chat": chat,
        "rerank": tinymodels.write_rerank_model(folder / "rerank.gguf"),
        "embed": tinymodels.write_embed_model(folder / "embed.gguf"),
        "mmproj": tinymodels.write_mmproj(folder / "mmproj.gguf"),
        "mmproj32": tinymodels.write_mmproj(folder / "mmproj32.gguf", n_embd_text=32),
        "truncated": tinymodels.write_truncated(chat, folder / "truncated.gguf"),
    }


def test_valid_files_pass(files: dict[str, Path]) -> None:
    assert check_role("chat", str(files["chat"])) is not None
    assert check_role("embed", str(files["embed"])) is not None
    assert check_role("rerank", str(files["rerank"])) is not None
    assert check_role("vision", str(files["chat"]), str(files["mmproj"])) is not None
    assert check_role("chat", None) is None


def test_missing_file_names_it(tmp_path: Path) -> None:
    gone = tmp_path / "gone.gguf"
    with pytest.raises(InvalidModelFile, match=f"model file not found: {gone}") as caught:
        check_role("chat", str(gone))
    assert caught.value.path == str(gone)


def test_truncated_file_names_it(files: dict[str, Path]) -> None:
    with pytest.raises(InvalidModelFile) as caught:
        check_role("chat", str(files["truncated"]))
    assert str(files["truncated"]) in str(caught.value) and "truncated" in str(caught.value)


def test_a_projector_is_not_a_chat_model(files: dict[str, Path]) -> None:
    with pytest.raises(InvalidModelFile, match="vision projector"):
        check_role("chat", str(files["mmproj"]))


def test_rerank_needs_rank_pooling(files: dict[str, Path]) -> None:
    with pytest.raises(NotARerankModel, match="not a reranker") as caught:
        check_role("rerank", str(files["embed"]))
    assert str(files["embed"]) in str(caught.value)


def test_vision_needs_a_projector(files: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ProjectorMissing, match="--mmproj"):
        check_role("vision", str(files["chat"]), None)
    with pytest.raises(ProjectorMissing, match="projector file not found"):
        check_role("vision", str(files["chat"]), str(tmp_path / "nope.gguf"))


def test_vision_projector_must_fit_the_model(files: dict[str, Path]) -> None:
    with pytest.raises(ProjectorMismatch, match="projects to 32 dimensions, the model has 64"):
        check_role("vision", str(files["chat"]), str(files["mmproj32"]))
    with pytest.raises(ProjectorMismatch, match="not a projector"):
        check_role("vision", str(files["chat"]), str(files["embed"]))


def test_validation_message(files: dict[str, Path]) -> None:
    assert validation_message("chat", str(files["chat"]), None) is None
    message = validation_message("chat", str(files["truncated"]), None)
    assert message is not None and "truncated" in message


# -- hostile files: whatever goes wrong, the check ends in a typed error naming the file -------

HOSTILE_WRITERS: dict[str, Callable[[Path], Path]] = {
    "nested": hostile_gguf.write_nested_arrays,
    "huge-string": hostile_gguf.write_huge_string,
    "huge-array": hostile_gguf.write_huge_array,
    "many-tensors": hostile_gguf.write_many_tensors,
}


@pytest.mark.parametrize("kind", sorted(HOSTILE_WRITERS))
def test_hostile_files_are_invalid_model_files(kind: str, tmp_path: Path) -> None:
    path = HOSTILE_WRITERS[kind](tmp_path / f"{kind}.gguf")
    with pytest.raises(InvalidModelFile) as caught:
        check_role("chat", str(path))
    assert str(path) in str(caught.value) and caught.value.path == str(path)
    assert "\n" not in str(caught.value)


def test_a_hostile_projector_is_reported_as_the_projector(files: dict[str, Path],
                                                           tmp_path: Path) -> None:
    mmproj = hostile_gguf.write_nested_arrays(tmp_path / "mmproj.gguf")
    with pytest.raises(ModelLoadError) as caught:
        check_role("vision", str(files["chat"]), str(mmproj))
    assert str(mmproj) in str(caught.value) and "nests arrays" in str(caught.value)


@pytest.mark.parametrize("failure", [
    RecursionError("maximum recursion depth exceeded"),
    MemoryError(),
    struct.error("unpack_from requires a buffer of at least 8 bytes"),
    UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
    ValueError("mmap length is greater than file size\nsecond line"),
    RuntimeError("anything else"),
], ids=lambda exc: type(exc).__name__)
def test_any_failure_of_the_read_names_the_file(failure: Exception, files: dict[str, Path],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_read(path: str) -> GGUFInfo:
        raise failure

    monkeypatch.setattr(validate, "read_header_cached", failing_read)
    path = str(files["chat"])
    with pytest.raises(InvalidModelFile) as caught:
        check_role("chat", path)
    message = str(caught.value)
    assert message.startswith(path) and type(failure).__name__ in message
    assert "\n" not in message and "pick another file" in message


def test_interrupts_are_not_swallowed(files: dict[str, Path],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted_read(path: str) -> GGUFInfo:
        raise KeyboardInterrupt

    monkeypatch.setattr(validate, "read_header_cached", interrupted_read)
    with pytest.raises(KeyboardInterrupt):
        check_role("chat", str(files["chat"]))
