"""A remote role (llama-server behind Hivetray's supervision) against llama-server directly.

One llama-server (built from the sdist's vendored llama.cpp by ``build_llama_server.sh``) on
this machine, same model, threads and greedy sampling with ``ignore_eos`` (exactly
``--tokens`` tokens):

- ``direct``: aiohttp's client streaming llama-server's ``/v1/chat/completions`` SSE;
- ``remote_role``: the same request through a pool whose chat role is ``engine = "remote"``
  (``pool.stream``: supervisor, remote link, SSE parsing, chunks through the in-flight queue).
  Runs alternate, one warm-up each; per run ``ttft_ms`` (request → first text) and
  ``decode_tps`` ((tokens - 1) / (last text - first text)); medians compared.

Failover, on the tiny model with health checks every ``--health-s`` (1 s; the default is 10 s)
and a restart budget of 0 (the first failure opens the breaker):
``kill_to_cooling_down_ms`` (SIGKILL of llama-server → the role is ``cooling_down``),
``restart_to_ready_retry_ms`` (llama-server answering again → ``hivetray retry`` → ``ready``)
and ``restart_to_ready_auto_ms`` (a pinned role: the half-open start at the cooldown's end,
cooldown ``--cooldown-s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from _common import (
    add_llama_server_option,
    arg_parser,
    bench_home,
    emit,
    free_port,
    log,
    median,
    start_llama_server,
    summarize,
)

Run = dict[str, float]


def start_server(binary: Path, model: Path, port: int, n_ctx: int,
                 threads: int) -> subprocess.Popen[bytes]:
    return start_llama_server(binary, model, port, n_ctx, threads, "-np", "1")


@contextlib.contextmanager
def server(binary: Path, model: Path, n_ctx: int, threads: int) -> Iterator[tuple[int, Any]]:
    port = free_port()
    holder = {"proc": start_server(binary, model, port, n_ctx, threads)}
    try:
        yield port, holder
    finally:
        proc = holder["proc"]
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()


def request(tokens: int) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": "Write about the sea."}],
            "max_tokens": tokens, "temperature": 0.0, "ignore_eos": True}


def timing(started: float, first: float | None, last: float, tokens: int) -> Run:
    first = first if first is not None else last
    return {"ttft_ms": (first - started) * 1000, "tokens": float(tokens),
            "decode_tps": (tokens - 1) / (last - first) if tokens > 1 and last > first else 0.0}


async def direct_run(session: Any, port: int, tokens: int) -> Run:
    body = {**request(tokens), "stream": True, "stream_options": {"include_usage": True}}
    started = time.perf_counter()
    first = None
    count = 0
    async with session.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body) as resp:
        async for line in resp.content:
            if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
                continue
            event = json.loads(line[6:])
            if event.get("usage"):
                count = event["usage"]["completion_tokens"]
            choices = event.get("choices") or []
            if choices and (choices[0].get("delta") or {}).get("content"):
                first = first or time.perf_counter()
    return timing(started, first, time.perf_counter(), count)


async def role_run(pool: Any, tokens: int) -> Run:
    started = time.perf_counter()
    first = None
    count = 0
    async for chunk in pool.stream("chat", "chat", request(tokens)):
        if chunk.get("done"):
            count = chunk["usage"]["completion_tokens"]
        elif chunk.get("text"):
            first = first or time.perf_counter()
    return timing(started, first, time.perf_counter(), count)


def pool_for(home: Any, url: str, **pool_settings: Any) -> Any:
    from hivetray.config import PoolConfig, RoleConfig, default_config
    from hivetray.pool import WorkerPool

    base = default_config()
    chat = RoleConfig(engine="remote", url=url, timeout_s=10.0,
                      pinned=bool(pool_settings.pop("pinned", False)))
    config = replace(base, roles={**base.roles, "chat": chat},
                     pool=PoolConfig(**pool_settings))
    return WorkerPool(config, home.paths(), tick_s=0.02)


async def overhead(binary: Path, model: Path, n_ctx: int, args: Any, home: Any
                   ) -> dict[str, Any]:
    import aiohttp

    runs: dict[str, list[Run]] = {"direct": [], "remote_role": []}
    with server(binary, model, n_ctx, args.threads) as (port, _):
        pool = pool_for(home, f"http://127.0.0.1:{port}")
        await pool.start()
        try:
            # a new connection per direct run: llama-server closes kept-alive connections
            # now and then, and a bare client would fail on one (the remote link sends again)
            async with aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(force_close=True)) as session:
                await direct_run(session, port, 8)
                await role_run(pool, 8)
                for n in range(args.runs):
                    order = ["direct", "remote_role"] if n % 2 == 0 else \
                        ["remote_role", "direct"]
                    for variant in order:
                        run = await (direct_run(session, port, args.tokens)
                                     if variant == "direct" else role_run(pool, args.tokens))
                        runs[variant].append(run)
        finally:
            await pool.shutdown()
    out: dict[str, Any] = {variant: {key: summarize([r[key] for r in rs], 2)
                                     for key in ("ttft_ms", "decode_tps", "tokens")}
                           for variant, rs in runs.items()}
    direct_tps = median([r["decode_tps"] for r in runs["direct"]])
    role_tps = median([r["decode_tps"] for r in runs["remote_role"]])
    out["decode_tps_ratio"] = round(role_tps / direct_tps, 3) if direct_tps else None
    out["ttft_overhead_ms"] = round(median([r["ttft_ms"] for r in runs["remote_role"]])
                                    - median([r["ttft_ms"] for r in runs["direct"]]), 2)
    return out


async def wait_state(pool: Any, state: str, timeout: float = 60.0) -> float:
    deadline = time.perf_counter() + timeout
    while pool.roles["chat"].state != state:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"the chat role never became {state}")
        await asyncio.sleep(0.002)
    return time.perf_counter()


async def failover(binary: Path, model: Path, args: Any, home: Any) -> dict[str, Any]:
    settings = {"restart_budget": 0, "restart_window_s": 60.0, "cooldown_s": args.cooldown_s,
                "health_interval_s": args.health_s, "ping_timeout_s": 5.0}
    out: dict[str, list[float]] = {"kill_to_cooling_down_ms": [],
                                   "restart_to_ready_retry_ms": [],
                                   "restart_to_ready_auto_ms": []}
    with server(binary, model, 256, 1) as (port, holder):
        for pinned, key in ((False, "restart_to_ready_retry_ms"),
                            (True, "restart_to_ready_auto_ms")):
            pool = pool_for(home, f"http://127.0.0.1:{port}", pinned=pinned, **settings)
            await pool.start()
            try:
                for _ in range(args.failover_runs):
                    await pool.call("chat", "chat", request(2))
                    killed = time.perf_counter()
                    os.kill(holder["proc"].pid, signal.SIGKILL)
                    holder["proc"].wait()
                    cooling = await wait_state(pool, "cooling_down")
                    out["kill_to_cooling_down_ms"].append((cooling - killed) * 1000)
                    holder["proc"] = await asyncio.to_thread(start_server, binary, model, port,
                                                             256, 1)
                    up = time.perf_counter()
                    if not pinned:
                        pool.retry("chat")
                        await pool.ensure_started("chat")
                    ready = await wait_state(pool, "ready")
                    out[key].append((ready - up) * 1000)
            finally:
                await pool.shutdown()
    return {**{k: summarize(v, 1) for k, v in out.items()},
            "config": {**settings, "note": "restart_to_ready_auto includes what is left of "
                       "the cooldown when llama-server answers again"}}


async def main_async(args: Any) -> dict[str, Any]:
    from hivetray.devtools.tinymodels import write_chat_model
    from hivetray.models import builtin

    result: dict[str, Any] = {"threads": args.threads, "runs": args.runs,
                              "tokens": args.tokens, "llama_server": str(args.llama_server)}
    with bench_home("hvb-r-") as home:
        tiny = write_chat_model(home.root / "chat512.gguf", n_ctx=512)
        log("overhead on the tiny model")
        result["overhead"] = {"tiny": await overhead(args.llama_server, tiny, 512, args, home)}
        real = None if args.no_real else builtin.locate()
        if real is not None:
            log("overhead on SmolLM2 135M")
            result["overhead"]["smollm2_135m"] = await overhead(args.llama_server, real, 2048,
                                                                args, home)
        log("failover")
        result["failover"] = await failover(args.llama_server, tiny, args, home)
    return result


def main() -> None:
    parser = arg_parser(__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--health-s", type=float, default=1.0)
    parser.add_argument("--cooldown-s", type=float, default=2.0)
    parser.add_argument("--failover-runs", type=int, default=3)
    parser.add_argument("--no-real", action="store_true", help="only the tiny model")
    add_llama_server_option(parser)
    args = parser.parse_args()
    if not args.llama_server.is_file():
        raise SystemExit(f"no llama-server at {args.llama_server}: bench/build_llama_server.sh")
    started = time.perf_counter()
    emit("remote", asyncio.run(main_async(args)), args.out, started)


if __name__ == "__main__":
    main()
