"""The sampler chain of one chat request, built in C from its sampling settings.

Why in C: choosing a token means touching every logit of the vocabulary (262 144 for Gemma 3)
once per token; llama.cpp's sampler chain does it in native code, where a Python sampler (or
llama-cpp-python's high-level one, with a numpy view per token) costs real tokens per second.

The order is llama-server's for the settings Hivetray has: repeat penalty over the last N
tokens, then top-k, top-p, min-p, temperature, and a draw from the distribution with the
request's seed (a random one when none is set). Temperature 0 is greedy: the penalty still
applies, then the likeliest token is taken, so a greedy reply is the same every time. Settings
that are "off" (top-k 0, top-p 1, min-p 0, penalty 1) add no sampler at all.

A chain holds native memory: use it as a context manager so it is freed when the request ends.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any

from hivetray.sampling import Sampling


class SamplerChain:
    """A native ``llama_sampler`` chain for ``sampling``; ``banned`` tokens are never drawn."""

    def __init__(self, sampling: Sampling, n_vocab: int, banned: Sequence[int] = ()) -> None:
        import llama_cpp

        self._api = llama_cpp
        params = llama_cpp.llama_sampler_chain_default_params()
        params.no_perf = True  # no timing bookkeeping per token
        self.chain: Any = llama_cpp.llama_sampler_chain_init(params)
        self.sample = llama_cpp.llama_sampler_sample  # bound once: called per token
        add = self._add
        if banned:  # a bench-only knob (ignore end-of-generation), see workers/generate.py
            biases = (llama_cpp.llama_logit_bias * len(banned))(
                *(llama_cpp.llama_logit_bias(token, float("-inf")) for token in banned))
            add(llama_cpp.llama_sampler_init_logit_bias(n_vocab, len(banned), biases))
        if sampling.repeat_penalty != 1.0 and sampling.repeat_last_n > 0:
            add(llama_cpp.llama_sampler_init_penalties(n_vocab, sampling.repeat_last_n,
                                                       sampling.repeat_penalty, 0.0, 0.0))
        if sampling.greedy:
            add(llama_cpp.llama_sampler_init_greedy())
            return
        if sampling.top_k > 0:
            add(llama_cpp.llama_sampler_init_top_k(sampling.top_k))
        if sampling.top_p < 1.0:
            add(llama_cpp.llama_sampler_init_top_p(sampling.top_p, 1))
        if sampling.min_p > 0.0:
            add(llama_cpp.llama_sampler_init_min_p(sampling.min_p, 1))
        add(llama_cpp.llama_sampler_init_temp(sampling.temperature))
        seed = llama_cpp.LLAMA_DEFAULT_SEED if sampling.seed is None else sampling.seed
        add(llama_cpp.llama_sampler_init_dist(seed))

    def _add(self, sampler: Any) -> None:
        if not sampler:
            self.close()
            raise RuntimeError("llama.cpp could not create a sampler")
        self._api.llama_sampler_chain_add(self.chain, sampler)  # the chain owns it now

    def accept(self, tokens: Iterable[int]) -> None:
        """Tell the chain about tokens already in the text (the prompt's end), so the repeat
        penalty sees them, as llama-server's and llama-cpp-python's do."""
        for token in tokens:
            self._api.llama_sampler_accept(self.chain, token)

    def close(self) -> None:
        if self.chain:
            self._api.llama_sampler_free(self.chain)
            self.chain = None

    def __enter__(self) -> SamplerChain:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()
