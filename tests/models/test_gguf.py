"""The GGUF header parser on real generated files and on files damaged every possible way."""

from __future__ import annotations

import struct
from pathlib import Path

import gguf as gguf_py
import pytest

from hivetray.devtools import tinymodels
from hivetray.models.gguf import (
    GGML_TYPES,
    ArrayInfo,
    GGUFError,
    read_header,
    read_header_cached,
    tensor_nbytes,
)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("gguf")
    return {
        "chat": tinymodels.write_chat_model(folder / "chat.gguf"),
        "embed": tinymodels.write_embed_model(folder / "embed.gguf"),
        "rerank": tinymodels.write_rerank_model(folder / "rerank.gguf"),
        "mmproj": tinymodels.write_mmproj(folder / "mmproj.gguf"),
    }


def test_reads_architecture_context_and_sizes(files: dict[str, Path]) -> None:
    info = read_header(files["chat"])
    assert info.version == 3 and info.architecture == "llama"
    assert info.name == "hivetray-tiny-chat"
    assert info.context_length == 256 and info.embedding_length == 64
    assert info.pooling_type is None and info.has_chat_template and not info.is_projector
    assert len(info.tensors) > 10
    assert info.data_size is not None
    assert info.data_offset + info.data_size == info.file_size == files["chat"].stat().st_size
    assert isinstance(info.metadata["tokenizer.ggml.tokens"], ArrayInfo)
    assert len(info.metadata["tokenizer.ggml.tokens"]) == 264


def test_reads_role_specific_keys(files: dict[str, Path]) -> None:
    assert read_header(files["embed"]).pooling_type == 1
    rerank = read_header(files["rerank"])
    assert rerank.architecture == "qwen3" and rerank.pooling_type == 4
    assert rerank.classifier_labels == 2 and rerank.has_classifier_head
    proj = read_header(files["mmproj"])
    assert proj.is_projector and proj.projection_dim == 64


def test_type_table_matches_gguf_py() -> None:
    for type_id, (name, block, size) in GGML_TYPES.items():
        quant = gguf_py.GGMLQuantizationType(type_id)
        assert quant.name == name
        assert gguf_py.GGML_QUANT_SIZES[quant] == (block, size)


def test_tensor_bytes() -> None:
    assert tensor_nbytes((64, 10), 0) == 64 * 10 * 4
    assert tensor_nbytes((256, 2), 12) == 2 * 144  # Q4_K
    assert tensor_nbytes((5,), 999) is None
    with pytest.raises(GGUFError, match="block size"):
        tensor_nbytes((33,), 2)


def test_truncated_anywhere_is_reported_never_crashes(files: dict[str, Path],
                                                      tmp_path: Path) -> None:
    data = files["rerank"].read_bytes()
    cut = tmp_path / "cut.gguf"
    # every length inside the header, then a spread through the tensor data
    info = read_header(files["rerank"])
    lengths = [*range(0, 64), *range(64, info.data_offset, 97),
               *range(info.data_offset, len(data), max(1, len(data) // 50))]
    for n in lengths:
        cut.write_bytes(data[:n])
        with pytest.raises(GGUFError) as caught:
            read_header(cut)
        message = str(caught.value)
        assert any(word in message for word in ("truncated", "only", "not a GGUF")), (n, message)


def test_truncated_data_says_how_much_is_missing(files: dict[str, Path], tmp_path: Path) -> None:
    cut = tinymodels.write_truncated(files["chat"], tmp_path / "half.gguf", fraction=0.9)
    with pytest.raises(GGUFError, match=r"truncated: the tensors need \d+ bytes but the file "
                                        r"has \d+ \(\d+ missing, 90% there\)"):
        read_header(cut)


def test_wrong_magic(tmp_path: Path) -> None:
    path = tinymodels.write_random_bytes(tmp_path / "random.gguf")
    with pytest.raises(GGUFError, match="invalid magic"):
        read_header(path)
    html = tmp_path / "page.gguf"
    html.write_text("<!doctype html><html>Not found</html>")
    with pytest.raises(GGUFError, match="not a GGUF file"):
        read_header(html)


def test_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    with pytest.raises(GGUFError, match="empty"):
        read_header(empty)


@pytest.mark.parametrize(("version", "hint"), [(1, "too old"), (4, "newer llama.cpp"),
                                               (0xFFFF, "newer llama.cpp")])
def test_unknown_version(files: dict[str, Path], tmp_path: Path, version: int,
                         hint: str) -> None:
    data = bytearray(files["chat"].read_bytes())
    data[4:8] = struct.pack("<I", version)
    path = tmp_path / "v.gguf"
    path.write_bytes(bytes(data))
    with pytest.raises(GGUFError, match=f"unknown GGUF version {version}.*{hint}"):
        read_header(path)


def test_absurd_counts_are_corruption(files: dict[str, Path], tmp_path: Path) -> None:
    data = bytearray(files["chat"].read_bytes())
    data[16:24] = struct.pack("<Q", 1 << 60)  # metadata count
    path = tmp_path / "kv.gguf"
    path.write_bytes(bytes(data))
    with pytest.raises(GGUFError, match="corrupt"):
        read_header(path)


def test_extra_bytes_after_the_data_are_fine(files: dict[str, Path], tmp_path: Path) -> None:
    path = tmp_path / "padded.gguf"
    path.write_bytes(files["chat"].read_bytes() + b"\0" * 100)
    assert read_header(path).file_size == files["chat"].stat().st_size + 100


def test_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_header(tmp_path / "nope.gguf")


def test_cache_rereads_a_changed_file(files: dict[str, Path], tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(files["chat"].read_bytes())
    assert read_header_cached(path).architecture == "llama"
    path.write_bytes(files["chat"].read_bytes()[:1000])
    with pytest.raises(GGUFError):
        read_header_cached(path)
    path.write_bytes(files["mmproj"].read_bytes())
    assert read_header_cached(path).architecture == "clip"
