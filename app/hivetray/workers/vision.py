"""The vision role: chat about images, the images through the projector (mtmd), the reply
through the same lean generation loop as the chat role (``workers/generate.py``).

Images arrive as bytes (a file the CLI or instance read, or clipboard data from the UI), never
as paths: the worker may not see the caller's files, and bytes are what a paste gives. Pillow
decodes them here, in the worker, so a broken or hostile image costs a worker, not the app;
huge images are downscaled (the projector resizes to a few hundred pixels anyway, and a 50 MP
photo would only inflate the request) and everything is re-encoded as PNG, which the native
decoder (stb_image) always reads — WebP, for one, it does not.

The projector is loaded at start-up, not on the first request as llama-cpp-python would, so a
projector that does not fit the model puts the role in ``error`` at once, with clip's reason.
A request is rendered by the model's own template with mtmd's media marker where each image
goes (as llama-cpp-python's ``MTMDChatHandler`` renders it), split by ``mtmd_tokenize`` into
text and image chunks, evaluated by ``mtmd_helper_eval_chunks`` (text decoded in batches, images
encoded by the projector), then sampled by :meth:`Engine.generate`. The KV cache starts afresh
for every vision request: image chunks are not tokens the prefix reuse could compare.
"""

from __future__ import annotations

import ctypes
import io
import time
from typing import Any

from hivetray.errors import (
    InvalidImage,
    InvalidRequest,
    ModelLoadError,
    ProjectorMismatch,
)
from hivetray.models.gguf import read_header
from hivetray.models.validate import check_projector
from hivetray.workers.chat import Formatter, chat_messages, render, stop_strings, token_text
from hivetray.workers.context import RequestContext
from hivetray.workers.generate import Engine, Request
from hivetray.workers.loading import GENERATION_FLASH_ATTN, load_llama
from hivetray.workers.logcapture import llama_log_callback, native_failure_reason
from hivetray.workers.spec import WorkerSpec

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


def attach_images(messages: list[dict[str, Any]], images: list[dict[str, Any]], marker: str
                  ) -> tuple[list[dict[str, Any]], list[bytes]]:
    """Prepare the images and put one media marker per image into the last user message,
    after its text; return the messages and the images as PNG bytes, in marker order."""
    if not images:
        return messages, []
    last = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=None)
    if last is None:
        raise InvalidRequest("an image needs a user message to go with it")
    pngs: list[bytes] = []
    for n, image in enumerate(images):
        name = str(image.get("name") or f"image {n + 1}")
        data = image.get("data")
        if not isinstance(data, bytes | bytearray) or not data:
            raise InvalidImage(name, "no image data was sent")
        pngs.append(prepare_image(name, bytes(data)))
    content = messages[last].get("content")
    text = content if isinstance(content, list) else [{"type": "text", "text": content or ""}]
    markers = [{"type": "text", "text": marker} for _ in pngs]
    out = list(messages)
    out[last] = {**messages[last], "content": [*text, *markers]}
    return out, pngs


class VisionHandler:
    def __init__(self, spec: WorkerSpec) -> None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter, MTMDChatHandler

        self.spec = spec
        check_projector(read_header(spec.model), spec.mmproj)
        assert spec.mmproj is not None
        self.chat_handler = MTMDChatHandler(clip_model_path=spec.mmproj, verbose=True)
        self.llm = load_llama(spec, chat_handler=self.chat_handler,
                              flash_attn=GENERATION_FLASH_ATTN)
        _route_mtmd_log()
        try:
            self.chat_handler._init_mtmd_context(self.llm)
        except ValueError as exc:
            reason = native_failure_reason() or str(exc)
            raise ProjectorMismatch(f"the projector {spec.mmproj} does not work with "
                                    f"{spec.model}: {reason}; use the mmproj file published "
                                    "with this model", spec.mmproj) from exc
        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise ModelLoadError(f"{spec.model} has no chat template, which vision chat needs: "
                                 "use an instruct/chat vision model", spec.model)
        self.format: Formatter = Jinja2ChatFormatter(template=template,
                                          eos_token=token_text(self.llm, self.llm.token_eos()),
                                          bos_token=token_text(self.llm, self.llm.token_bos()))
        self.engine = Engine(self.llm)
        import llama_cpp.mtmd_cpp as mtmd_cpp

        self.marker = mtmd_cpp.mtmd_default_marker().decode("utf-8")

    def info(self) -> dict[str, Any]:
        return {"n_ctx": self.engine.n_ctx, "model": self.spec.model, "mmproj": self.spec.mmproj}

    def handle(self, method: str, params: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        messages, pngs = attach_images(chat_messages("vision", method, params),
                                       list(params.get("images") or []), self.marker)
        request = Request.from_params(params)
        started = time.perf_counter()
        rendered = render(self.format, messages)
        n_prompt, history, next_pos = self._evaluate(rendered.prompt, pngs)
        stops = stop_strings(rendered.stop, params)
        return self.engine.generate(request, stops, ctx, started=started,
                                    n_prompt=n_prompt, history=history, next_pos=next_pos)

    def _evaluate(self, prompt: str, pngs: list[bytes]) -> tuple[int, list[int], int]:
        """Evaluate the prompt's text and images in the context; return its size in tokens
        (images included), its text tokens and the position after it."""
        import llama_cpp
        import llama_cpp.mtmd_cpp as mtmd

        mtmd_ctx: Any = self.chat_handler.mtmd_ctx
        bitmaps: list[Any] = []
        try:
            for n, png in enumerate(pngs, 1):
                buf = (ctypes.c_uint8 * len(png)).from_buffer_copy(png)
                bitmap = mtmd.mtmd_helper_bitmap_init_from_buf(mtmd_ctx, buf, len(png), False)
                if not bitmap:
                    raise InvalidImage(f"image {n}", "the projector could not read it: "
                                       f"{native_failure_reason() or 'no reason given'}")
                bitmaps.append(bitmap)
            data = prompt.encode("utf-8")
            text = mtmd.mtmd_input_text(text=data, text_len=len(data), add_special=True,
                                        parse_special=True)
            chunks = mtmd.mtmd_input_chunks_init()
            if not chunks:
                raise MemoryError("mtmd could not allocate input chunks")
            try:
                array = (mtmd.mtmd_bitmap_p_ctypes * len(bitmaps))(*bitmaps)
                code = mtmd.mtmd_tokenize(mtmd_ctx, chunks, ctypes.byref(text), array,
                                          len(bitmaps))
                if code == 1:
                    raise InvalidRequest(f"the message holds {self.marker!r}, which marks where "
                                         "images go: remove it from the text")
                if code != 0:
                    raise InvalidImage("the image", f"the projector could not prepare it "
                                       f"(mtmd_tokenize returned {code}); "
                                       f"{native_failure_reason()}")
                n_prompt = int(mtmd.mtmd_helper_get_n_tokens(chunks))
                self.engine.check_fits(n_prompt)
                history = _text_tokens(chunks)
                self.engine.forget()
                self.engine.cached = None  # images in the cache: the next prompt starts afresh
                next_pos = llama_cpp.llama_pos(0)
                code = mtmd.mtmd_helper_eval_chunks(mtmd_ctx, self.engine.ctx, chunks, 0, 0,
                                                    self.engine.n_batch, True,
                                                    ctypes.byref(next_pos))
                if code != 0:
                    raise InvalidImage("the image", f"the projector could not evaluate it "
                                       f"(error {code}); {native_failure_reason()}")
                return n_prompt, history, int(next_pos.value)
            finally:
                mtmd.mtmd_input_chunks_free(chunks)
        finally:
            for bitmap in bitmaps:
                mtmd.mtmd_bitmap_free(bitmap)


def _text_tokens(chunks: Any) -> list[int]:
    """The text tokens of a tokenized multimodal prompt (the repeat penalty's memory)."""
    import llama_cpp.mtmd_cpp as mtmd

    tokens: list[int] = []
    for i in range(mtmd.mtmd_input_chunks_size(chunks)):
        chunk = mtmd.mtmd_input_chunks_get(chunks, i)
        if chunk and mtmd.mtmd_input_chunk_get_type(chunk) == mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
            count = ctypes.c_size_t()
            pointer = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(count))
            tokens.extend(pointer[:count.value] if pointer else ())
    return tokens


def _route_mtmd_log() -> None:
    """Send mtmd's log through the same callback as llama.cpp's (worker log + load reasons)."""
    import llama_cpp.mtmd_cpp as mtmd_cpp

    callback = llama_log_callback()
    if callback is not None:
        mtmd_cpp.mtmd_helper_log_set(callback, None)
