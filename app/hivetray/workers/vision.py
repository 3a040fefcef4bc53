"""The vision role: chat about images through llama-cpp-python's multimodal (mtmd) handler.

Images arrive as bytes (a file the CLI or instance read, or clipboard data from the UI), never
as paths: the worker may not see the caller's files, and bytes are what a paste gives. Pillow
decodes them here, in the worker, so a broken or hostile image costs a worker, not the app;
huge images are downscaled (the projector resizes to a few hundred pixels anyway, and a 50 MP
photo would only inflate the request) and everything is re-encoded as PNG, which the native
decoder (stb_image) always reads — WebP, for one, it does not.

The projector is loaded at start-up, not on the first request as llama-cpp-python would, so a
projector that does not fit the model puts the role in ``error`` at once, with clip's reason.
Streaming, batching and cancel are the chat role's (:func:`stream_chat`).
"""

from __future__ import annotations

import base64
import io
import re
from typing import Any

from hivetray.errors import (
    ContextOverflow,
    InvalidImage,
    InvalidRequest,
    ModelLoadError,
    ProjectorMismatch,
)
from hivetray.models.gguf import read_header
from hivetray.models.validate import check_projector
from hivetray.workers.chat import chat_messages, stream_chat
from hivetray.workers.context import RequestContext
from hivetray.workers.loading import load_llama
from hivetray.workers.logcapture import llama_log_callback, native_failure_reason
from hivetray.workers.spec import WorkerSpec

#: the multimodal handler's own overflow message (images included in the count)
_MTMD_OVERFLOW = re.compile(r"Prompt exceeds n_ctx: (\d+) > (\d+)")
#: longest side kept; larger images are downscaled (aspect kept) before encoding
MAX_IMAGE_SIDE = 2048
#: Pillow refuses images with more pixels than this (decompression bombs)
MAX_IMAGE_PIXELS = 100_000_000

def prepare_image(name: str, data: bytes, max_side: int = MAX_IMAGE_SIDE) -> bytes:
    """Decode ``data`` fully, flatten to RGB, downscale past ``max_side``; return PNG bytes."""
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()  # decode now: a truncated file fails here, not inside llama.cpp
            if img.mode in ("RGBA", "LA", "P", "PA"):
                rgba = img.convert("RGBA")
                rgb = Image.new("RGB", rgba.size, (255, 255, 255))
                rgb.paste(rgba, mask=rgba.getchannel("A"))
            else:
                rgb = img.convert("RGB")
    except UnidentifiedImageError:
        raise InvalidImage(name, "not a known image format") from None
    except Image.DecompressionBombError as exc:
        raise InvalidImage(name, f"too many pixels: {exc}") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidImage(name, f"damaged or truncated: {exc}") from None
    if max(rgb.size) > max_side:
        rgb.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    rgb.save(out, format="PNG")
    return out.getvalue()


def image_part(png: bytes) -> dict[str, Any]:
    url = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    return {"type": "image_url", "image_url": {"url": url}}


def attach_images(messages: list[dict[str, Any]], images: list[dict[str, Any]]
                  ) -> list[dict[str, Any]]:
    """Put the images (prepared) into the last user message, after its text."""
    if not images:
        return messages
    last = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=None)
    if last is None:
        raise InvalidRequest("an image needs a user message to go with it")
    parts: list[dict[str, Any]] = []
    for n, image in enumerate(images):
        name = str(image.get("name") or f"image {n + 1}")
        data = image.get("data")
        if not isinstance(data, bytes | bytearray) or not data:
            raise InvalidImage(name, "no image data was sent")
        parts.append(image_part(prepare_image(name, bytes(data))))
    content = messages[last].get("content")
    text = content if isinstance(content, list) else [{"type": "text", "text": content or ""}]
    out = list(messages)
    out[last] = {**messages[last], "content": [*text, *parts]}
    return out


class VisionHandler:
    def __init__(self, spec: WorkerSpec) -> None:
        from llama_cpp.llama_chat_format import MTMDChatHandler

        self.spec = spec
        check_projector(read_header(spec.model), spec.mmproj)
        assert spec.mmproj is not None
        self.chat_handler = MTMDChatHandler(clip_model_path=spec.mmproj, verbose=True)
        self.llm = load_llama(spec, chat_handler=self.chat_handler)
        _route_mtmd_log()
        try:
            self.chat_handler._init_mtmd_context(self.llm)
        except ValueError as exc:
            reason = native_failure_reason() or str(exc)
            raise ProjectorMismatch(f"the projector {spec.mmproj} does not work with "
                                    f"{spec.model}: {reason}; use the mmproj file published "
                                    "with this model", spec.mmproj) from exc
        if not self.llm.metadata.get("tokenizer.chat_template"):
            raise ModelLoadError(f"{spec.model} has no chat template, which vision chat needs: "
                                 "use an instruct/chat vision model", spec.model)

    def info(self) -> dict[str, Any]:
        return {"n_ctx": self.llm.n_ctx(), "model": self.spec.model, "mmproj": self.spec.mmproj}

    def handle(self, method: str, params: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        messages = attach_images(chat_messages("vision", method, params),
                                 list(params.get("images") or []))
        try:
            return stream_chat(self.llm, messages, params, ctx)
        except ValueError as exc:
            overflow = _MTMD_OVERFLOW.search(str(exc))
            if overflow:  # the images' tokens count too: the chat role's check cannot see them
                raise ContextOverflow(int(overflow.group(1)), int(overflow.group(2))) from exc
            if "bitmap" in str(exc).lower() or "image" in str(exc).lower():
                raise InvalidImage("the image", f"{exc}; {native_failure_reason()}") from exc
            raise


def _route_mtmd_log() -> None:
    """Send mtmd's log through the same callback as llama.cpp's (worker log + load reasons)."""
    import llama_cpp.mtmd_cpp as mtmd_cpp

    callback = llama_log_callback()
    if callback is not None:
        mtmd_cpp.mtmd_helper_log_set(callback, None)
