"""The vision role on real llama.cpp + mtmd (tiny model and projector), and image handling."""

from __future__ import annotations

import io
import struct
import threading
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from hivetray.devtools import tinymodels
from hivetray.errors import ContextOverflow, InvalidImage, ProjectorMismatch, ProjectorMissing
from hivetray.images import sniff_image_type
from hivetray.workers.context import RequestContext
from hivetray.workers.spec import WorkerSpec
from hivetray.workers.vision import VisionHandler, prepare_image


def encode(fmt: str, size: tuple[int, int] = (40, 30), mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, (200, 30, 30, 128) if mode == "RGBA" else (200, 30, 30)).save(
        out, format=fmt)
    return out.getvalue()


@pytest.mark.parametrize(("fmt", "kind"), [("PNG", "png"), ("JPEG", "jpeg"), ("WEBP", "webp"),
                                           ("GIF", "gif"), ("BMP", "bmp")])
def test_formats_are_sniffed_and_become_png(fmt: str, kind: str) -> None:
    data = encode(fmt)
    assert sniff_image_type(data) == kind
    png = prepare_image("x", data)
    with Image.open(io.BytesIO(png)) as img:
        assert img.format == "PNG" and img.mode == "RGB" and img.size == (40, 30)


def test_not_images_are_not_sniffed() -> None:
    assert sniff_image_type(b"hello world") is None
    assert sniff_image_type(b"") is None
    assert sniff_image_type(b"RIFF\0\0\0\0WAVEfmt ") is None


def test_huge_images_are_downscaled_keeping_the_aspect() -> None:
    png = prepare_image("big.png", encode("PNG", (4000, 1000)), max_side=2048)
    with Image.open(io.BytesIO(png)) as img:
        assert img.size == (2048, 512)


def test_transparency_is_flattened_on_white() -> None:
    png = prepare_image("a.png", encode("PNG", mode="RGBA"))
    with Image.open(io.BytesIO(png)) as img:
        assert img.mode == "RGB"


def test_a_non_image_and_a_truncated_image_name_the_file() -> None:
    with pytest.raises(InvalidImage, match=r"notes\.txt is not an image") as caught:
        prepare_image("notes.txt", b"just some text")
    assert caught.value.name == "notes.txt"
    with pytest.raises(InvalidImage, match=r"cut\.png .*damaged or truncated"):
        prepare_image("cut.png", encode("PNG", (300, 300))[:200])


def spec(model: Path, mmproj: Path | None, folder: Path) -> WorkerSpec:
    return WorkerSpec("vision", str(model), str(mmproj) if mmproj else None, 256, 1,
                      str(folder / "worker-vision.log"))


@pytest.fixture(scope="module")
def handler(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
            ) -> VisionHandler:
    return VisionHandler(spec(tiny_models["chat"], tiny_models["mmproj"],
                              tmp_path_factory.mktemp("vision")))


def ask(handler: VisionHandler, images: list[dict[str, Any]], max_tokens: int = 6,
        cancel_after: int | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    chunks: list[dict[str, Any]] = []
    cancelled = threading.Event()

    def send(msg: dict[str, Any]) -> None:
        chunks.append(msg["data"])
        if cancel_after is not None and len(chunks) >= cancel_after:
            cancelled.set()

    result = handler.handle("chat", {"messages": [{"role": "user", "content": "what is it"}],
                                     "images": images, "max_tokens": max_tokens},
                            RequestContext(1, send, cancelled.is_set))
    return chunks, result


@pytest.mark.real
def test_chat_about_an_image_streams_a_reply(handler: VisionHandler) -> None:
    chunks, plain = ask(handler, [])
    chunks, result = ask(handler, [{"name": "red.webp", "data": encode("WEBP")}])
    assert chunks and all(c["text"] for c in chunks)
    assert result["usage"]["completion_tokens"] == 6 and result["finish_reason"] == "length"
    # the image's 16 projected tokens are part of the prompt
    assert result["usage"]["prompt_tokens"] >= plain["usage"]["prompt_tokens"] + 16


@pytest.mark.real
def test_cancel_stops_a_vision_reply_and_the_worker_serves_on(handler: VisionHandler) -> None:
    _chunks, result = ask(handler, [{"name": "a.png", "data": encode("PNG")}], max_tokens=150,
                          cancel_after=1)
    assert result["finish_reason"] == "cancelled" and result["usage"]["completion_tokens"] < 150
    _chunks, again = ask(handler, [{"name": "a.png", "data": encode("PNG")}], max_tokens=3)
    assert again["usage"]["completion_tokens"] == 3


@pytest.mark.real
def test_a_non_image_is_refused_naming_it(handler: VisionHandler) -> None:
    with pytest.raises(InvalidImage, match=r"report\.pdf is not an image"):
        ask(handler, [{"name": "report.pdf", "data": b"%PDF-1.7 not an image"}])


@pytest.mark.real
def test_missing_projector(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ProjectorMissing, match="--mmproj"):
        VisionHandler(spec(tiny_models["chat"], None, tmp_path))
    with pytest.raises(ProjectorMissing, match="not found"):
        VisionHandler(spec(tiny_models["chat"], tmp_path / "gone.gguf", tmp_path))


@pytest.mark.real
def test_a_projector_for_another_model(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    other = tinymodels.write_mmproj(tmp_path / "mmproj-32.gguf", n_embd_text=32)
    with pytest.raises(ProjectorMismatch, match="projects to 32 dimensions, the model has 64"):
        VisionHandler(spec(tiny_models["chat"], other, tmp_path))


@pytest.mark.real
def test_a_mismatch_only_llama_cpp_sees_is_reported_with_its_reason(
        tiny_models: dict[str, Path], tmp_path: Path) -> None:
    """The header claims the right width but the weights project to 32: clip's own check."""
    path = tinymodels.write_mmproj(tmp_path / "liar.gguf", n_embd_text=32)
    data = bytearray(path.read_bytes())
    key = b"clip.vision.projection_dim"
    at = data.index(key) + len(key)  # then u32 value type (4 = uint32), then the value
    assert struct.unpack_from("<I", data, at)[0] == 4
    struct.pack_into("<I", data, at + 4, 64)
    path.write_bytes(bytes(data))
    with pytest.raises(ProjectorMismatch, match=r"mismatch between text model \(n_embd = 64\) "
                                                r"and mmproj \(n_embd = 32\)") as caught:
        VisionHandler(spec(tiny_models["chat"], path, tmp_path))
    assert str(path) in str(caught.value)


@pytest.mark.real
def test_a_prompt_over_the_context_with_an_image_is_a_context_overflow(
        handler: VisionHandler) -> None:
    """The multimodal handler counts the image's tokens itself and raises a bare ValueError;
    the user gets the typed ContextOverflow with both numbers, and the worker serves on."""
    long_text = "a " * 400  # about 400 tokens: over the tiny model's 256 with the image
    with pytest.raises(ContextOverflow) as caught:
        handler.handle("chat", {"messages": [{"role": "user", "content": long_text}],
                                "images": [{"name": "a.png", "data": encode("PNG")}],
                                "max_tokens": 2}, RequestContext(1, lambda msg: None,
                                                                 lambda: False))
    assert caught.value.n_ctx == 256 and caught.value.prompt_tokens > 256
    _chunks, again = ask(handler, [{"name": "a.png", "data": encode("PNG")}], max_tokens=2)
    assert again["usage"]["completion_tokens"] == 2


@pytest.mark.real
def test_a_vision_reply_follows_the_request_sampling(handler: VisionHandler) -> None:
    """The image goes through the projector, the reply through the chat role's sampler chain:
    a seed reproduces it, another seed changes it."""
    image = [{"name": "a.png", "data": encode("PNG")}]

    def text(seed: int) -> str:
        chunks: list[str] = []
        handler.handle("chat", {"messages": [{"role": "user", "content": "what is it"}],
                                "images": image, "max_tokens": 30, "temperature": 1.5,
                                "top_k": 0, "top_p": 1.0, "min_p": 0.0, "seed": seed},
                       RequestContext(1, lambda msg: chunks.append(msg["data"]["text"]),
                                      lambda: False))
        return "".join(chunks)

    assert text(5) == text(5)
    assert text(6) != text(5)
