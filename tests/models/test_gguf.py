"""The GGUF header parser on real generated files and on files damaged every possible way."""

from __future__ import annotations

import os
import struct
import threading
from pathlib import Path

import gguf as gguf_py
import pytest

from hivetray.devtools import tinymodels
from hivetray.models import gguf as gguf_module
from hivetray.models.gguf import (
    GGML_TYPES,
    ArrayInfo,
    GGUFError,
    GGUFInfo,
    read_header,
    read_header_cached,
    tensor_nbytes,
)
from tests.models import hostile_gguf


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


# -- hostile files: every bound turns into a GGUFError, never a crash, a stall or a huge alloc --
# the bounds are spelled out (not imported) so that a test pins the promised numbers
MAX_ARRAY_DEPTH, MAX_TENSORS = 8, 65536


def test_deeply_nested_arrays_are_corruption_not_recursion(tmp_path: Path) -> None:
    path = hostile_gguf.write_nested_arrays(tmp_path / "deep.gguf", depth=5000)
    assert path.stat().st_size < 64_000
    with pytest.raises(GGUFError, match=r"corrupt: metadata 'deep' nests arrays deeper than 8 "):
        read_header(path)


def test_nesting_up_to_the_bound_is_read(tmp_path: Path) -> None:
    path = hostile_gguf.write_nested_arrays(tmp_path / "eight.gguf", depth=MAX_ARRAY_DEPTH)
    value = read_header(path).metadata["deep"]
    for _ in range(MAX_ARRAY_DEPTH):
        assert isinstance(value, list) and len(value) == 1
        value = value[0]
    assert value == 7


def test_a_huge_string_is_refused_before_it_is_read(tmp_path: Path) -> None:
    # the file really is 1 TiB long (sparse), so only the string bound can stop the read
    path = hostile_gguf.write_huge_string(tmp_path / "template.gguf", declared=1 << 40)
    with pytest.raises(GGUFError, match=r"corrupt: metadata 'tokenizer.chat_template' claims a "
                                        r"string of 1099511627776 bytes, more than the 16 MiB"):
        read_header(path)


@pytest.mark.parametrize(("where", "what"), [("key", "metadata entry 1"),
                                             ("tensor", "tensor info 0")])
def test_keys_and_tensor_names_are_bounded(where: str, what: str, tmp_path: Path) -> None:
    fine = hostile_gguf.write_long_name(tmp_path / "fine.gguf", where, 1000)
    read_header(fine)
    long = hostile_gguf.write_long_name(tmp_path / "long.gguf", where, 100_000)
    with pytest.raises(GGUFError, match=f"corrupt: {what} claims a string of 100000 bytes, "
                                        "more than the 64 KiB"):
        read_header(long)


def test_a_count_larger_than_the_file_can_hold_is_refused(tmp_path: Path) -> None:
    path = hostile_gguf.write_huge_array(tmp_path / "scores.gguf", count=1 << 31)
    with pytest.raises(GGUFError, match=r"metadata 'tokenizer.ggml.scores' claims 2147483648 "
                                        r"items \(at least 17179869184 bytes\) but only \d+ "):
        read_header(path)


def test_a_skipped_string_claiming_2_to_the_63_bytes_is_corruption(tmp_path: Path) -> None:
    path = hostile_gguf.write_string_array_with_huge_item(tmp_path / "vocab.gguf")
    with pytest.raises(GGUFError, match=r"truncated: .* inside metadata 'tokenizer.ggml.tokens'"):
        read_header(path)


def test_metadata_memory_is_bounded_in_total(tmp_path: Path) -> None:
    # 80 strings of 1 MiB: each is fine alone, together they are more than 64 MiB to keep
    path = hostile_gguf.write_many_big_strings(tmp_path / "big.gguf", 80, 1 << 20)
    with pytest.raises(GGUFError, match=r"corrupt: the header holds more than 64 MiB of "
                                        r"metadata \(at metadata 's6\d'\)"):
        read_header(path)


def test_a_million_tensors_is_refused_at_once(tmp_path: Path) -> None:
    # ~24 MB of well-formed (nameless, 0-d) tensor infos: the count bound alone refuses them
    path = hostile_gguf.write_many_tensors(tmp_path / "tensors.gguf", n_tensors=1_000_000)
    with pytest.raises(GGUFError, match=r"corrupt: the tensor count is 1000000; .*limit is "
                                        f"{MAX_TENSORS}"):
        read_header(path)


class CountingClock:
    """A clock that advances ``step`` seconds per call and counts its calls."""

    def __init__(self, step: float = 0.0, jump_after: int | None = None) -> None:
        self.step, self.jump_after, self.calls, self.now = step, jump_after, 0, 0.0

    def __call__(self) -> float:
        self.calls += 1
        self.now += self.step
        if self.jump_after is not None and self.calls > self.jump_after:
            self.now += 1e6
        return self.now


def test_deadline_past_means_not_a_model(files: dict[str, Path]) -> None:
    clock = CountingClock(jump_after=1)  # the start is read at 0 s, then time jumps 11 days
    with pytest.raises(GGUFError, match=r"took longer than 10 s to read .*is it really a model"):
        read_header(files["chat"], clock=clock)
    with pytest.raises(GGUFError, match=r"longer than 0.5 s"):
        read_header(files["chat"], deadline_s=0.5, clock=CountingClock(jump_after=1))


def test_deadline_is_checked_inside_a_long_vocabulary(tmp_path: Path) -> None:
    # one metadata entry holding 1M strings: only checks inside the skip loop can see the time
    path = hostile_gguf.write_long_string_array(tmp_path / "vocab.gguf", count=1 << 20)
    with pytest.raises(GGUFError, match=r"longer than 10 s .*metadata 'tokenizer.ggml.tokens'"):
        read_header(path, clock=CountingClock(step=1.0))


def test_deadline_is_checked_inside_the_tensor_table(tmp_path: Path) -> None:
    path = hostile_gguf.write_many_tensors(tmp_path / "tensors.gguf", n_tensors=50)
    assert len(read_header(path).tensors) == 50
    with pytest.raises(GGUFError, match=r"longer than 10 s to read \(stopped at tensor info \d+"):
        read_header(path, clock=CountingClock(step=1.0))


def test_a_big_vocabulary_checks_the_clock_rarely_and_parses(tmp_path: Path) -> None:
    path = hostile_gguf.write_long_string_array(tmp_path / "vocab.gguf", count=262_144)
    clock = CountingClock()
    info = read_header(path, clock=clock)
    assert len(info.metadata["tokenizer.ggml.tokens"]) == 262_144
    assert clock.calls <= 10  # start + 2 entries + 4 chunks of 65536: not once per token


def test_cache_keeps_the_new_errors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = hostile_gguf.write_nested_arrays(tmp_path / "deep.gguf")
    reads: list[str | os.PathLike[str]] = []
    real_read = gguf_module.read_header

    def counting_read(target: str | os.PathLike[str]) -> gguf_module.GGUFInfo:
        reads.append(target)
        return real_read(target)

    monkeypatch.setattr(gguf_module, "read_header", counting_read)
    for _ in range(3):
        with pytest.raises(GGUFError, match="nests arrays deeper"):
            read_header_cached(path)
    assert len(reads) == 1


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_pipe_named_like_a_model_is_refused_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "model.gguf"
    os.mkfifo(fifo)
    outcome: list[BaseException | None] = []

    def read() -> None:
        try:
            read_header(fifo)
            outcome.append(None)
        except BaseException as exc:  # handed to the test thread below
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=10)
    if reader.is_alive():  # blocked in open(): let it go, then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(timeout=10)
        pytest.fail("read_header waited for a writer on a named pipe")
    assert isinstance(outcome[0], GGUFError) and "not a regular file" in str(outcome[0])


def test_a_read_past_its_deadline_is_not_cached(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    """A stalled disk is not a bad file: the next check (a retry) reads the file again."""
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF")
    reads: list[int] = []

    def stalled(target: str | os.PathLike[str]) -> gguf_module.GGUFInfo:
        reads.append(1)
        raise gguf_module.HeaderTimeout("the header took longer than 10 s to read")

    monkeypatch.setattr(gguf_module, "read_header", stalled)
    for _ in range(2):
        with pytest.raises(GGUFError, match="took longer"):
            read_header_cached(path)
    assert len(reads) == 2


# -- the attention shape, for the memory estimate (hivetray.pool.memory) ------------------------
def test_reads_the_attention_shape_of_a_real_model(files: dict[str, Path]) -> None:
    info = read_header(files["chat"])  # llama: 2 blocks, 4 heads (4 KV heads), n_embd 64
    assert (info.block_count, info.head_count, info.head_count_kv) == (2, 4, 4)
    assert info.key_length is None and info.value_length is None  # n_embd / n_head = 16
    assert info.vocab_size == 264
    assert info.kv_bytes_per_token == 2 * 4 * (16 + 16) * 2  # layers × kv heads × (K+V) × f16
    assert info.kv_cache_bytes(512) == 2 * info.kv_cache_bytes(256)  # type: ignore[operator]
    assert read_header(files["mmproj"]).kv_bytes_per_token is None  # no attention shape


def shaped(**arch: object) -> GGUFInfo:
    """A header with only the metadata the KV cache size reads."""
    base: dict[str, object] = {"block_count": 4, "embedding_length": 256,
                               "attention.head_count": 8}
    metadata = {f"demo.{key}": value for key, value in {**base, **arch}.items()
                if value is not None}
    return GGUFInfo("x.gguf", 0, 3, {"general.architecture": "demo", **metadata}, [], 0, 0)


@pytest.mark.parametrize(("arch", "per_token"), [
    ({}, 4 * 8 * (32 + 32) * 2),  # no head_count_kv: every head has its own K and V
    ({"attention.head_count_kv": 2}, 4 * 2 * (32 + 32) * 2),  # grouped-query attention
    ({"attention.head_count_kv": 1, "attention.key_length": 256,
      "attention.value_length": 128}, 4 * 1 * (256 + 128) * 2),  # Gemma-like explicit widths
    ({"attention.head_count_kv": [2, 0, 2, 0], "attention.head_count": [8, 0, 8, 0]},
     2 * 2 * (32 + 32) * 2),  # per-layer lists; layers without attention cost nothing
    ({"attention.head_count_kv": [2, 2]}, None),  # a list that does not match the layers
    ({"attention.head_count": None}, None),  # no attention shape at all
    ({"block_count": True}, None),  # a wrong type is unknown, not 1
])
def test_kv_cache_size_follows_llama_cpp_rules(arch: dict[str, object],
                                              per_token: int | None) -> None:
    info = shaped(**arch)
    assert info.kv_bytes_per_token == per_token
    assert info.kv_cache_bytes(1000) == (None if per_token is None else 1000 * per_token)
