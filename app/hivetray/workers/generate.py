"""Generation at the speed of the engine: llama.cpp's C API driven by one lean Python loop.

Why not ``Llama.create_chat_completion(stream=True)``: llama-cpp-python's high-level stream does
Python work per token that grows with the reply (numpy views of the logits, list copies, the
whole tail detokenized again for stop strings), so long replies ran ~10% behind llama-server on
the same llama.cpp. Here, per token, only what must happen happens: one native sampler call,
one ``llama_decode`` of one token, a cached token → bytes lookup, the UTF-8 and stop-string
bookkeeping (``workers/detok.py``), a cancel check, and a chunk every 16 tokens or 40 ms. The
chat and vision roles share it: each evaluates its prompt its own way (text tokens here, images
through mtmd in ``workers/vision.py``), then calls :meth:`Engine.generate`.

The KV cache outlives a request: the engine remembers which tokens it holds (``cached``), and
the next prompt is decoded only from the first token that differs, so a follow-up turn of a
conversation decodes just its new part (``last_prompt_decoded`` counts what was). Models whose
memory cannot be cut at any position (recurrent, or sliding-window layers that have already
dropped what the cut point needs) fall back to decoding the whole prompt, as llama-server does.
A reused prefix gives the same reply as a fresh decode up to the rounding differences llama.cpp
has between batch shapes (keys computed one token at a time while replying vs. in one prompt
batch), exactly as llama-server's own prompt cache does.

Usage is exact: ``prompt_tokens`` is the tokens of the rendered prompt, ``completion_tokens``
every token sampled (a cancelled reply's too, and the end-of-generation token, as llama-server
counts it).
"""

from __future__ import annotations

import ctypes
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from hivetray.errors import ContextOverflow, InvalidRequest
from hivetray.sampling import DEFAULT_SAMPLING, Sampling
from hivetray.workers.context import RequestContext
from hivetray.workers.detok import StopMatcher, Utf8Pieces
from hivetray.workers.sampler import SamplerChain

FLUSH_TOKENS = 16
FLUSH_SECONDS = 0.040
DEFAULT_MAX_TOKENS = 512
#: Bench-only request flag (bench/stream.py): never stop at an end-of-generation token, so every
#: variant produces exactly ``max_tokens`` (llama-server's ``ignore_eos``). No front end sets it;
#: a client that does only makes its own reply run on to ``max_tokens``.
IGNORE_EOS = "ignore_eos"


@dataclass(frozen=True)
class Request:
    """What a chat request asks of the generation loop."""

    sampling: Sampling
    max_tokens: int
    ignore_eos: bool = False

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Request:
        """From already checked request parameters (``chatparams.check_chat_params``)."""
        return cls(sampling=DEFAULT_SAMPLING.merged(params),
                   max_tokens=int(params.get("max_tokens") or DEFAULT_MAX_TOKENS),
                   ignore_eos=params.get(IGNORE_EOS) is True)


class Engine:
    """One llama.cpp context's generation: prompt decoding with KV-prefix reuse, then the loop.

    Holds the model (``llm``, a loaded ``llama_cpp.Llama``) only for its context and vocabulary;
    none of ``Llama``'s own generation state is used.
    """

    def __init__(self, llm: Any) -> None:
        import llama_cpp

        self._api = llama_cpp
        self.llm = llm
        self.ctx = llm.ctx
        self.vocab = llama_cpp.llama_model_get_vocab(llm.model)
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.n_ctx = int(llama_cpp.llama_n_ctx(self.ctx))
        self.n_batch = int(llama_cpp.llama_n_batch(self.ctx))
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self.vocab))
        self.n_swa = int(llama_cpp.llama_model_n_swa(llm.model))
        #: the tokens whose keys/values sequence 0 holds at positions 0.., or None when what it
        #: holds is not a token list (after an image prompt): the next prompt then starts afresh
        self.cached: list[int] | None = []
        #: how many prompt tokens the last request decoded (the rest came from the cache)
        self.last_prompt_decoded = 0
        self.batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        weakref.finalize(self, llama_cpp.llama_batch_free, self.batch)
        self._tokens, self._pos, self._logits = self.batch.token, self.batch.pos, self.batch.logits
        for i in range(self.n_batch):  # every slot: one sequence, number 0
            self.batch.n_seq_id[i] = 1
            self.batch.seq_id[i][0] = 0
        self._pieces: dict[int, bytes] = {}
        self._piece_buf = ctypes.create_string_buffer(64)
        self._eog_tokens: list[int] | None = None

    # -- prompt ---------------------------------------------------------------------------------
    def tokenize(self, text: str, add_special: bool) -> list[int]:
        """``text`` as tokens, control tokens parsed (the template writes them as text)."""
        data = text.encode("utf-8")
        size = len(data) + 8  # never more tokens than bytes, plus BOS/EOS
        out = (self._api.llama_token * size)()
        count = self._api.llama_tokenize(self.vocab, data, len(data), out, size, add_special,
                                         True)
        if count < 0:
            out = (self._api.llama_token * -count)()
            count = self._api.llama_tokenize(self.vocab, data, len(data), out, -count,
                                             add_special, True)
        return list(out[:count])

    def check_fits(self, n_prompt: int) -> None:
        """A prompt must leave room for at least one token of reply (the reply itself is cut
        to what fits: ``finish_reason`` "length")."""
        if n_prompt >= self.n_ctx:
            raise ContextOverflow(n_prompt, self.n_ctx)

    def forget(self) -> None:
        """Empty the KV cache (before a prompt evaluated outside :meth:`load_prompt`)."""
        self._api.llama_memory_clear(self.memory, True)
        self.cached = []

    def load_prompt(self, tokens: Sequence[int], cancelled: Callable[[], bool]) -> bool:
        """Decode ``tokens`` in batches of ``n_batch`` after the part already cached; the
        logits of the last one are then ready to sample. False when cancelled between
        batches (a long prompt takes seconds; a cancel must not wait for all of it)."""
        if not tokens:
            raise InvalidRequest("the chat template rendered these messages as nothing: "
                                 "send a message with some text")
        self.check_fits(len(tokens))
        keep = self._reusable_prefix(tokens)
        if keep == 0 or not self._api.llama_memory_seq_rm(self.memory, 0, keep, -1):
            self.forget()
            keep = 0
        cached = self.cached = list(tokens[:keep])
        self.last_prompt_decoded = 0
        try:
            for start in range(keep, len(tokens), self.n_batch):
                if start > keep and cancelled():
                    return False
                part = tokens[start:start + self.n_batch]
                self._decode_batch(part, start, logits_last=start + len(part) == len(tokens))
                cached.extend(part)
                self.last_prompt_decoded += len(part)
        except BaseException:
            self.cached = None
            raise
        return True

    def _reusable_prefix(self, tokens: Sequence[int]) -> int:
        cached = self.cached
        if not cached:
            return 0
        # the last prompt token is always decoded: its logits choose the first reply token
        limit = min(len(cached), len(tokens) - 1)
        same = 0
        while same < limit and cached[same] == tokens[same]:
            same += 1
        if same and self.n_swa:
            # sliding-window layers drop keys older than the window: continuing at `same`
            # needs the window before it still there (llama-server's rule, without its
            # checkpoints: otherwise decode the whole prompt)
            pos_min = self._api.llama_memory_seq_pos_min(self.memory, 0)
            if pos_min > 0 and pos_min >= same - self.n_swa:
                return 0
        return same

    def _decode_batch(self, part: Sequence[int], start: int, logits_last: bool) -> None:
        tokens, pos, logits = self._tokens, self._pos, self._logits
        for i, token in enumerate(part):
            tokens[i] = token
            pos[i] = start + i
            logits[i] = 0
        logits[len(part) - 1] = 1 if logits_last else 0
        self.batch.n_tokens = len(part)
        self._check(self._api.llama_decode(self.ctx, self.batch))

    @staticmethod
    def _check(code: int) -> None:
        if code != 0:
            raise RuntimeError(f"llama.cpp could not decode (llama_decode returned {code})")

    # -- reply ----------------------------------------------------------------------------------
    def piece(self, token: int) -> bytes:
        """The bytes ``token`` stands for (control tokens: none), cached per token."""
        piece = self._pieces.get(token)
        if piece is None:
            buf = self._piece_buf
            size = self._api.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, False)
            if size < 0:
                buf = ctypes.create_string_buffer(-size)
                size = self._api.llama_token_to_piece(self.vocab, token, buf, len(buf), 0,
                                                      False)
            piece = self._pieces[token] = buf.raw[:size]
        return piece

    def eog_tokens(self) -> list[int]:
        """Every end-of-generation token of the vocabulary (once; only ``ignore_eos`` asks)."""
        if self._eog_tokens is None:
            is_eog = self._api.llama_vocab_is_eog
            self._eog_tokens = [t for t in range(self.n_vocab) if is_eog(self.vocab, t)]
        return self._eog_tokens

    def generate(self, request: Request, stops: Sequence[str], ctx: RequestContext, *,
                 started: float, n_prompt: int, history: Sequence[int],
                 next_pos: int | None = None) -> dict[str, Any]:
        """Sample the reply after a loaded prompt and stream it through ``ctx``.

        ``n_prompt`` is the prompt's size in the context (images included), ``history`` the
        prompt's text tokens (the repeat penalty's memory), ``next_pos`` the position of the
        first reply token (the prompt's size unless a projector placed images otherwise).
        """
        max_tokens = min(request.max_tokens, self.n_ctx - n_prompt)
        pos = n_prompt if next_pos is None else next_pos
        banned = self.eog_tokens() if request.ignore_eos else ()
        cached = self.cached if self.cached is not None else []
        api, lctx, vocab = self._api, self.ctx, self.vocab
        decode, is_eog, batch = api.llama_decode, api.llama_vocab_is_eog, self.batch
        tokens, positions, logits = self._tokens, self._pos, self._logits
        pieces, piece_of = self._pieces, self.piece
        cancelled, emit, now = ctx.is_cancelled, ctx.emit, time.perf_counter
        stop = StopMatcher(stops)
        to_text, cut_at_stop = Utf8Pieces().feed, stop.feed
        pending: list[str] = []
        first_text_at: float | None = None
        last_flush = started
        completion = 0
        finish = "length"
        stop_string_seen = False
        with SamplerChain(request.sampling, self.n_vocab, banned) as chain:
            if request.sampling.repeat_last_n:
                chain.accept(history[-request.sampling.repeat_last_n:])
            sample, sampler = chain.sample, chain.chain
            try:
                while completion < max_tokens:
                    if cancelled():
                        finish = "cancelled"
                        break
                    token = sample(sampler, lctx, -1)
                    completion += 1
                    if not banned and is_eog(vocab, token):
                        finish = "stop"
                        break
                    piece = pieces.get(token)
                    text, stop_string_seen = cut_at_stop(to_text(piece if piece is not None
                                                                 else piece_of(token)))
                    if text:
                        pending.append(text)
                        at = now()
                        if first_text_at is None:
                            first_text_at = at
                            emit({"text": text})  # the first text at once
                            pending.clear()
                            last_flush = at
                        elif len(pending) >= FLUSH_TOKENS or at - last_flush >= FLUSH_SECONDS:
                            emit({"text": "".join(pending)})
                            pending.clear()
                            last_flush = at
                    if stop_string_seen:
                        finish = "stop"
                        break
                    if completion >= max_tokens:
                        break  # no one will read the logits of a token past the end
                    tokens[0] = token
                    positions[0] = pos
                    logits[0] = 1
                    batch.n_tokens = 1
                    code = decode(lctx, batch)
                    if code != 0:
                        self._check(code)
                    cached.append(token)
                    pos += 1
            except BaseException:
                self.cached = None  # the cache holds more than `cached` says: start afresh
                raise
        if not stop_string_seen:
            held = stop.flush()  # the start of a stop string that never came is reply text
            if held:
                pending.append(held)
                first_text_at = first_text_at or now()
        if pending:
            emit({"text": "".join(pending)})
        end = now()
        elapsed = end - (first_text_at or started)
        return {
            "usage": {"prompt_tokens": n_prompt, "completion_tokens": completion},
            "finish_reason": finish,
            "tokens_per_s": completion / elapsed if elapsed > 0 and completion else None,
            "ttft_s": (first_text_at - started) if first_text_at else None,
        }
