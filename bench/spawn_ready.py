"""Spawn-to-ready time of the chat role: N cycles of ``ensure_started`` → ``stop_role``.

Per cycle (all ``time.perf_counter`` on the loop thread, events timed by a subscriber):

- ``ready_ms``   ``await pool.ensure_started("chat")`` from call to return;
- ``spawn_ms``   call → SPAWN event: the synchronous part (``Process.start()``), which
  blocks the event loop;
- ``load_ms``    the worker's own model load time (``role.usage.load_s``);
- ``overhead_ms`` ready − load: interpreter start, imports, pipes, the ready message;
- ``stop_ms``    ``await pool.stop_role("chat")`` (shutdown message → exit → reaped).

No target in docs/performance.md; the figure matters for "first use" latency and pre-warming.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from _common import arg_parser, bench_home, chat_config, emit, log, run_on_loop, summarize


async def measure(model: Path, cycles: int) -> dict[str, Any]:
    from hivetray.paths import app_paths
    from hivetray.pool import WorkerPool
    from hivetray.pool.events import Event, EventKind

    paths = app_paths()
    pool = WorkerPool(chat_config(model), paths)
    await pool.start()
    role = pool.role("chat")
    stamps: dict[str, float] = {}

    def on_event(event: Event) -> None:
        if event.role == "chat" and event.kind in (EventKind.SPAWN, EventKind.READY):
            stamps[str(event.kind)] = time.perf_counter()

    pool.events.subscribe(on_event)
    rows: list[dict[str, float]] = []
    try:
        for cycle in range(cycles):
            stamps.clear()
            t0 = time.perf_counter()
            await pool.ensure_started("chat")
            t_ready = time.perf_counter()
            load_ms = (role.usage.load_s or 0.0) * 1000
            pid = role.pid
            t1 = time.perf_counter()
            await pool.stop_role("chat")
            t_stopped = time.perf_counter()
            row = {"ready_ms": (t_ready - t0) * 1000,
                   "spawn_ms": (stamps.get("spawn", t0) - t0) * 1000,
                   "load_ms": load_ms,
                   "overhead_ms": (t_ready - t0) * 1000 - load_ms,
                   "stop_ms": (t_stopped - t1) * 1000}
            rows.append(row)
            log(f"cycle {cycle}: pid {pid} ready in {row['ready_ms']:.1f} ms "
                f"(load {load_ms:.1f} ms), stopped in {row['stop_ms']:.1f} ms")
    finally:
        await pool.shutdown()
    keys = ("ready_ms", "spawn_ms", "load_ms", "overhead_ms", "stop_ms")
    return {"first_cycle": {k: round(rows[0][k], 3) for k in keys} if rows else None,
            **{k: summarize([r[k] for r in rows], 3) for k in keys}}


def main() -> int:
    parser = arg_parser(__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=10, help="spawn/stop cycles")
    parser.add_argument("--loop", default="asyncio", choices=("asyncio", "qasync"))
    args = parser.parse_args()
    started = time.perf_counter()
    with bench_home() as home:
        result = run_on_loop(args.loop, lambda: measure(home.chat_model, args.n))
    emit("spawn_ready", {"n": args.n, "loop": args.loop, **result}, args.out, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
