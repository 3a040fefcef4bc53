"""Idle-death detection: SIGKILL an idle chat worker, time until the pool notices (≤ 1 s).

In-process pool; an event subscriber stamps ``time.perf_counter()`` on the loop thread.
Per cycle: ``ensure_started`` → settle → ``t_kill`` = just before ``os.kill(pid, SIGKILL)`` →

- ``state_left_ready_ms``: the STATE event whose ``old`` is ``ready``;
- ``crash_event_ms``:      the CRASH event (what the UI and the log see).

The breaker budget is raised so N crashes in a row stay crashes, not a cooldown.
Target: noticed within 1 s (the reader thread waits on the process sentinel).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from _common import arg_parser, bench_home, chat_config, emit, log, run_on_loop, summarize

TARGET_MS = 1000.0


async def measure(model: Path, cycles: int, settle_s: float) -> dict[str, Any]:
    from hivetray.config import PoolConfig
    from hivetray.paths import app_paths
    from hivetray.pool import WorkerPool
    from hivetray.pool.events import Event, EventKind

    pool_config = PoolConfig(restart_budget=10_000, restart_window_s=60.0)
    pool = WorkerPool(chat_config(model, pool_config), app_paths())
    await pool.start()
    role = pool.role("chat")
    loop = asyncio.get_running_loop()
    seen: dict[str, float] = {}
    crashed: asyncio.Future[None] | None = None

    def on_event(event: Event) -> None:
        now = time.perf_counter()
        if event.role != "chat":
            return
        if event.kind is EventKind.STATE and event.data.get("old") == "ready":
            seen.setdefault("state_left_ready", now)
            seen.setdefault("new_state:" + str(event.data.get("new")), now)
        elif event.kind is EventKind.CRASH:
            seen.setdefault("crash", now)
            if crashed is not None and not crashed.done():
                crashed.set_result(None)

    pool.events.subscribe(on_event)
    rows: list[dict[str, Any]] = []
    try:
        for cycle in range(cycles):
            await pool.ensure_started("chat")
            await asyncio.sleep(settle_s)  # idle: nothing in flight, loop asleep
            pid = role.pid
            assert pid is not None and str(role.state) == "ready"
            seen.clear()
            crashed = loop.create_future()
            t_kill = time.perf_counter()
            os.kill(pid, signal.SIGKILL)
            await asyncio.wait_for(crashed, 10)
            row = {"state_left_ready_ms": (seen["state_left_ready"] - t_kill) * 1000,
                   "crash_event_ms": (seen["crash"] - t_kill) * 1000,
                   "new_state": next((k.split(":", 1)[1] for k in seen
                                      if k.startswith("new_state:")), None)}
            rows.append(row)
            log(f"cycle {cycle}: pid {pid} killed; crash event after "
                f"{row['crash_event_ms']:.2f} ms, state → {row['new_state']}")
            pool.retry("chat")  # clear the crash history; the next ensure_started respawns
    finally:
        await pool.shutdown()
    return {"state_left_ready_ms": summarize([r["state_left_ready_ms"] for r in rows], 3),
            "crash_event_ms": summarize([r["crash_event_ms"] for r in rows], 3),
            "states_after_crash": sorted({str(r["new_state"]) for r in rows}),
            "runs": [{k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()}
                     for r in rows]}


def main() -> int:
    parser = arg_parser(__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=10, help="kill cycles")
    parser.add_argument("--settle", type=float, default=0.3,
                        help="seconds the worker sits idle before the kill")
    parser.add_argument("--loop", default="asyncio", choices=("asyncio", "qasync"))
    args = parser.parse_args()
    started = time.perf_counter()
    with bench_home() as home:
        result = run_on_loop(args.loop, lambda: measure(home.chat_model, args.n, args.settle))
    worst = result["crash_event_ms"].get("max", float("inf"))
    emit("idle_death", {"n": args.n, "loop": args.loop, "target_ms": TARGET_MS, **result,
                        "target_met": worst <= TARGET_MS}, args.out, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
