"""Role rules checked before a worker is spawned: every message names the file and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from hivetray.devtools import tinymodels
from hivetray.errors import (
    InvalidModelFile,
    NotARerankModel,
    ProjectorMismatch,
    ProjectorMissing,
)
from hivetray.models.validate import check_role, validation_message


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
