"""Stop → last chunk: how fast a Stop ends a streaming reply (docs/performance.md: ≤ 100 ms).

In-process pool on the chosen loop, tiny chat model with a 4096-token context so a reply runs
long. Per run: stream with a large max_tokens, take a few chunks, then "press Stop" the way the
quick-chat window does (close the stream generator, which cancels the request in the worker):

- ``last_chunk_ms``: Stop → the last chunk the consumer received (0 by construction: once the
  generator is closed nothing more is delivered to the window);
- ``worker_idle_ms``: Stop → the worker confirmed the cancel (the role's busy → ready event:
  generation really ended and the worker is free for the next request).
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from _common import arg_parser, bench_home, chat_config, emit, log, run_on_loop, summarize

TARGET_MS = 100.0


async def measure(model: Path, runs: int, chunks_before_stop: int) -> dict[str, Any]:
    from hivetray.paths import app_paths
    from hivetray.pool import WorkerPool
    from hivetray.pool.events import Event, EventKind

    pool = WorkerPool(chat_config(model, n_ctx=4096), app_paths())
    await pool.start()
    idle_at: list[float] = []

    def on_event(event: Event) -> None:
        if event.kind is EventKind.STATE and event.data.get("new") == "ready":
            idle_at.append(time.perf_counter())

    pool.events.subscribe(on_event)
    rows: list[dict[str, float]] = []
    try:
        await pool.ensure_started("chat")
        pid = pool.role("chat").pid
        for run in range(runs):
            idle_at.clear()
            params = {"messages": [{"role": "user", "content": f"run {run}"}],
                      "max_tokens": 3500}
            stream = pool.stream("chat", "chat", params)
            received = 0
            last_chunk = 0.0
            async for _chunk in stream:
                received += 1
                last_chunk = time.perf_counter()
                if received >= chunks_before_stop:
                    break
            t_stop = time.perf_counter()
            await stream.aclose()
            while not idle_at:
                await asyncio.sleep(0.0005)
            rows.append({"last_chunk_ms": max(0.0, (last_chunk - t_stop) * 1000),
                         "worker_idle_ms": (idle_at[0] - t_stop) * 1000})
            assert pool.role("chat").pid == pid, "the worker must survive a Stop"
            log(f"run {run}: worker idle {rows[-1]['worker_idle_ms']:.2f} ms after Stop")
    finally:
        await pool.shutdown()
    return {"last_chunk_ms": summarize([r["last_chunk_ms"] for r in rows], 3),
            "worker_idle_ms": summarize([r["worker_idle_ms"] for r in rows], 3),
            "same_worker_pid": True}


def main() -> int:
    parser = arg_parser(__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20, help="runs")
    parser.add_argument("--chunks", type=int, default=3, help="chunks received before Stop")
    parser.add_argument("--loop", default="qasync", choices=("asyncio", "qasync"))
    args = parser.parse_args()
    started = time.perf_counter()
    with bench_home() as home:
        from hivetray.devtools.tinymodels import write_chat_model

        model = write_chat_model(home.root / "chat-4k.gguf", n_ctx=4096)
        result = run_on_loop(args.loop, lambda: measure(model, args.n, args.chunks))
    worst = result["worker_idle_ms"].get("p95", float("inf"))
    emit("stop_latency", {"n": args.n, "loop": args.loop, "target_ms": TARGET_MS, **result,
                          "target_met": worst <= TARGET_MS}, args.out, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
