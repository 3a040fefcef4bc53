"""The local HTTP API against the other ways in and against llama-server's own HTTP.

One ``hivetray daemon --api`` (a real instance: pool, socket and HTTP API on one asyncio loop)
and one llama-server (built from the sdist's vendored llama.cpp: the same engine), same model,
threads, context and greedy sampling:

- streaming a chat reply of ``--tokens`` (200) tokens, four ways, runs alternating (the order
  rotates every round), one warm-up each: ``api`` (``POST /v1/chat/completions`` SSE),
  ``socket`` (the instance socket the CLI uses, from this process: no interpreter start),
  ``cli`` (the real ``hivetray chat --json`` process, interpreter start included) and
  ``llama_server`` (its ``/v1/chat/completions`` SSE). Per run: ``ttft_ms`` (request sent →
  first text), ``decode_tps`` ((tokens - 1) / (last text - first text)), ``e2e_tps``;
  on the tiny generated model and, when the ``demo`` extra is installed, SmolLM2 135M;
- embeddings per second for one batch of 64 short texts: ``POST /v1/embeddings`` to Hivetray,
  the same batch over the socket, and llama-server ``--embeddings`` (tiny generated embedding
  model);
- the idle tray's memory with the API off and on (``python -m hivetray`` on Xvfb + trayer, RSS
  and USS 3 s after the icon docked, as ``tray_start.py`` measures it; skipped without X tools).

Medians of one run are what the closing note quotes.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from _common import (
    BENCH_DIR,
    BenchHome,
    add_llama_server_option,
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
from hivetray.sampling import DEFAULT_SAMPLING

PROMPT = "Write a long story about a lighthouse keeper who finds a message in a bottle."
TEXTS = [f"short text number {n} about bees and flowers" for n in range(64)]
IDLE_S = 3.0
Run = dict[str, float]


def timing(started: float, first: float | None, last: float, tokens: int) -> Run:
    first = first if first is not None else last
    return {"ttft_ms": (first - started) * 1000, "tokens": float(tokens),
            "decode_tps": (tokens - 1) / (last - first) if tokens > 1 and last > first else 0.0,
            "e2e_tps": tokens / (last - started) if last > started else 0.0}


def post(port: int, path: str, body: dict[str, Any], key: str | None = None
         ) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    conn.request("POST", path, json.dumps(body), headers)
    return conn.getresponse()


# -- the two servers ------------------------------------------------------------------------------
@contextlib.contextmanager
def hivetray_daemon(home: BenchHome) -> Iterator[tuple[int, str]]:
    """``hivetray daemon --api --port 0``: yields (port, key)."""
    proc = subprocess.Popen([sys.executable, "-m", "hivetray", "daemon", "--api", "--port", "0"],
                            env=home.env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    try:
        assert proc.stdout is not None
        port = 0
        for line in proc.stdout:
            if match := re.search(r"HTTP API on http://127\.0\.0\.1:(\d+)", line):
                port = int(match.group(1))
                break
        assert port, "the daemon did not start its API"
        key = (home.home / "data" / "api-key").read_text().strip()
        yield port, key
    finally:
        subprocess.run([sys.executable, "-m", "hivetray", "quit"], env=home.env(),
                       capture_output=True, timeout=60, check=False)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- streaming, four ways -------------------------------------------------------------------------
def sse_run(port: int, key: str | None, max_tokens: int) -> Run:
    """An OpenAI SSE stream (Hivetray's API or llama-server's: the same framing)."""
    # the role's repeat penalty said out loud, so llama-server (default 1.0) samples the same way
    body = {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": max_tokens,
            "temperature": 0.0, "repeat_penalty": DEFAULT_SAMPLING.repeat_penalty,
            "repeat_last_n": DEFAULT_SAMPLING.repeat_last_n,
            "stream": True, "stream_options": {"include_usage": True}}
    started = time.perf_counter()
    response = post(port, "/v1/chat/completions", body, key)
    assert response.status == 200, response.read()
    times = read_sse(response, started)
    return timing(started, times.first, times.last, times.usage_tokens)


def socket_run(socket_path: Path, max_tokens: int) -> Run:
    """The instance socket, as ``hivetray chat`` uses it (from this process)."""
    from hivetray import ipc
    from hivetray.commands import chat_params

    async def stream() -> Run:
        params = chat_params(PROMPT, max_tokens, {"temperature": 0.0})
        started = time.perf_counter()
        first: float | None = None
        last = started
        tokens = 0
        async for item in ipc.request(socket_path, "chat", params=params):
            if "result" in item:
                tokens = int(item["result"]["usage"]["completion_tokens"])
            elif item.get("text"):
                last = time.perf_counter()
                first = first or last
        return timing(started, first, last, tokens)

    return asyncio.run(stream())


def cli_run(env: dict[str, str], max_tokens: int) -> Run:
    """The real CLI process (``hivetray chat --json``): interpreter start included."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "hivetray", "chat", "--json", "--max-tokens",
                             str(max_tokens), "--temperature", "0", PROMPT], env=env,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    first: float | None = None
    last = started
    tokens = 0
    for line in proc.stdout:
        doc = json.loads(line)
        if doc.get("done"):
            tokens = int(doc["usage"]["completion_tokens"])
        elif doc.get("text"):
            last = time.perf_counter()
            first = first or last
    assert proc.wait(60) == 0
    return timing(started, first, last, tokens)


def alternate(variants: dict[str, Callable[[], Run]], runs: int) -> dict[str, list[Run]]:
    names = list(variants)
    for name in names:  # warm-up: loaded, prompt evaluated once, caches
        variants[name]()
    results: dict[str, list[Run]] = {name: [] for name in names}
    for i in range(runs):
        for name in names[i % len(names):] + names[:i % len(names)]:
            results[name].append(variants[name]())
    return results


def bench_stream(name: str, model: Path, n_ctx: int, args: Any) -> dict[str, Any]:
    from hivetray.config import save_config

    log(f"stream {name}: {args.tokens} tokens, {args.threads} thread(s), {args.runs} runs")
    with bench_home("hvb-api-") as home, contextlib.ExitStack() as stack:
        config = chat_config(model, n_ctx=n_ctx, n_threads=args.threads)
        save_config(home.paths().config_file, config)
        port, key = stack.enter_context(hivetray_daemon(home))
        socket_path = home.paths().socket_path
        variants: dict[str, Callable[[], Run]] = {
            "api": lambda: sse_run(port, key, args.tokens),
            "socket": lambda: socket_run(socket_path, args.tokens),
            "cli": lambda: cli_run(home.env(), args.tokens),
        }
        if args.llama_server.is_file():
            server, _pid = stack.enter_context(llama_server(args.llama_server, model, n_ctx,
                                                      args.threads, "-np", "1"))
            variants["llama_server"] = lambda: sse_run(server, None, args.tokens)
        else:
            log(f"no llama-server at {args.llama_server}: skipped")
        results = alternate(variants, args.runs)
    out: dict[str, Any] = {"model": str(model), "n_ctx": n_ctx, "max_tokens": args.tokens,
                           "variants": {}}
    for variant, runs in results.items():
        out["variants"][variant] = {key: summarize([r[key] for r in runs], 2)
                                    for key in ("ttft_ms", "decode_tps", "e2e_tps", "tokens")}
    out["medians"] = {v: {k: round(median([r[k] for r in runs]), 2)
                          for k in ("ttft_ms", "decode_tps", "tokens")}
                      for v, runs in results.items()}
    return out


# -- embeddings ---------------------------------------------------------------------------------
def embed_run(port: int, key: str | None) -> float:
    started = time.perf_counter()
    response = post(port, "/v1/embeddings", {"input": TEXTS, "encoding_format": "float"}, key)
    body = json.loads(response.read())
    assert response.status == 200 and len(body["data"]) == len(TEXTS), body
    return len(TEXTS) / (time.perf_counter() - started)


def socket_embed_run(socket_path: Path) -> float:
    """The same batch over the instance socket (``hivetray embed``'s way), from this process."""
    from hivetray import ipc

    started = time.perf_counter()
    result = asyncio.run(ipc.call(socket_path, "embed", texts=TEXTS))
    assert len(result["embeddings"]) == len(TEXTS)
    return len(TEXTS) / (time.perf_counter() - started)


def bench_embeddings(args: Any) -> dict[str, Any]:
    from hivetray.config import RoleConfig, save_config
    from hivetray.devtools.tinymodels import write_embed_model

    log(f"embeddings: a batch of {len(TEXTS)} short texts, {args.runs} runs")
    with bench_home("hvb-emb-") as home, contextlib.ExitStack() as stack:
        model = write_embed_model(home.root / "embed.gguf")
        config = chat_config(home.chat_model)
        roles = {**config.roles, "embed": RoleConfig(model=str(model), n_ctx=256,
                                                     n_threads=args.threads)}
        save_config(home.paths().config_file, replace(config, roles=roles))
        port, key = stack.enter_context(hivetray_daemon(home))
        socket_path = home.paths().socket_path
        variants: dict[str, Callable[[], float]] = {
            "api": lambda: embed_run(port, key),
            "socket": lambda: socket_embed_run(socket_path)}
        if args.llama_server.is_file():
            server, _pid = stack.enter_context(llama_server(args.llama_server, model, 256,
                                                      args.threads, "--embeddings"))
            variants["llama_server"] = lambda: embed_run(server, None)
        names = list(variants)
        for name in names:
            variants[name]()
        results: dict[str, list[float]] = {name: [] for name in names}
        for i in range(args.runs):
            for name in names[i % len(names):] + names[:i % len(names)]:
                results[name].append(variants[name]())
    return {"model": "tiny generated embedding model (n_embd 64, mean pooling)",
            "batch": len(TEXTS),
            "embeddings_per_s": {v: summarize(r, 1) for v, r in results.items()},
            "medians": {v: round(median(r), 1) for v, r in results.items()}}


# -- idle tray memory ---------------------------------------------------------------------------
def bench_tray_memory(args: Any) -> dict[str, Any]:
    sys.path.insert(0, str(BENCH_DIR.parent))
    from tests.ui.test_tray_e2e import (
        docked_icon,
        missing_x_tools,
        stop_process,
        trayer_panel,
        x_session,
    )

    from hivetray.config import ApiConfig, save_config

    if missing := missing_x_tools():
        return {"skipped": f"needs {', '.join(missing)}"}
    log(f"idle tray memory, API off and on, {args.tray_runs} runs each")
    rows: dict[str, list[dict[str, float]]] = {"api_off": [], "api_on": []}
    with bench_home("hvb-tray-") as home, x_session(trayer=True) as session:
        config_file = home.paths().config_file
        panel = trayer_panel(session)
        assert panel is not None

        def one(kind: str) -> dict[str, float]:
            api = ApiConfig(enabled=kind == "api_on", port=0)
            save_config(config_file, replace(chat_config(home.chat_model), api=api))
            env = {**session.env(), **{k: v for k, v in home.env().items()
                                       if k.startswith(("HIVETRAY", "XDG_RUNTIME"))}}
            proc = subprocess.Popen([sys.executable, "-m", "hivetray"], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                deadline = time.monotonic() + 60
                while docked_icon(session, proc.pid, panel) is None:
                    assert proc.poll() is None and time.monotonic() < deadline, "no icon"
                    time.sleep(0.01)
                time.sleep(IDLE_S)
                import psutil

                mem = psutil.Process(proc.pid).memory_full_info()
                return {"rss_mib": round(mem.rss / 2**20, 2), "uss_mib": round(mem.uss / 2**20, 2)}
            finally:
                stop_process(proc, grace=10)

        for kind in rows:
            log(f"warm-up {kind}: {one(kind)}")
        for k in range(args.tray_runs):
            for kind in (list(rows) if k % 2 == 0 else list(reversed(rows))):
                rows[kind].append(one(kind))
                log(f"{kind} #{k + 1}: {rows[kind][-1]}")
    out: dict[str, Any] = {"idle_s": IDLE_S, "display_server": "Xvfb+trayer"}
    for kind, runs in rows.items():
        out[kind] = {m: summarize([r[m] for r in runs], 2) for m in ("rss_mib", "uss_mib")}
    out["medians"] = {kind: {m: round(median([r[m] for r in runs]), 2)
                             for m in ("rss_mib", "uss_mib")} for kind, runs in rows.items()}
    out["api_on_minus_off_mib"] = round(out["medians"]["api_on"]["rss_mib"]
                                        - out["medians"]["api_off"]["rss_mib"], 2)
    return out


def main() -> None:
    parser = arg_parser(__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5, help="measured runs per variant")
    parser.add_argument("--tray-runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    add_llama_server_option(parser)
    parser.add_argument("--no-real", action="store_true",
                        help="only the tiny model (skip SmolLM2 even when installed)")
    parser.add_argument("--no-tray", action="store_true", help="skip the tray memory runs")
    args = parser.parse_args()
    started = time.perf_counter()
    from hivetray.devtools.tinymodels import write_chat_model
    from hivetray.models import builtin

    result: dict[str, Any] = {"threads": args.threads, "runs": args.runs,
                              "llama_server": str(args.llama_server)
                              if args.llama_server.is_file() else None, "stream": {}}
    with bench_home("hvb-m-") as home:
        tiny = write_chat_model(home.root / "chat512.gguf", n_ctx=512)
        result["stream"]["tiny"] = bench_stream("tiny", tiny, 512, args)
    real = None if args.no_real else builtin.locate()
    if real is not None:
        result["stream"]["smollm2_135m"] = bench_stream("smollm2_135m", real, 2048, args)
    result["embeddings"] = bench_embeddings(args)
    result["tray_memory"] = {"skipped": "--no-tray"} if args.no_tray else \
        bench_tray_memory(args)
    emit("api_stream", result, args.out, started)


if __name__ == "__main__":
    main()
