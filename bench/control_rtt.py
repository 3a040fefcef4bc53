"""Warm control-channel round trip (ping → pong) through the real worker link, on the loop.

For every sample: the loop thread sends ``{"op": "ping", "seq": k}`` with
``role.run.link.send_control`` and awaits a future that the supervisor's control callback resolves
when the pong with that seq arrives (the bench wraps ``role.on_control`` before the worker starts,
because the reader thread binds the callback when it starts). Timestamps taken along the way:

- ``t0``     loop thread, just before ``send_control``;
- ``t_recv`` reader thread, the pong unpickled, just before ``call_soon_threadsafe``
  (the bench wraps ``link._post`` to see it);
- ``t_cb``   loop thread, ``on_control`` running;
- ``t_res``  loop thread, the awaiting coroutine resumed.

``rtt = t_res - t0`` is the figure the target applies to; the parts say where time goes.
Each loop variant runs in a fresh child process. Target (docs/performance.md): p50 ≤ 0.3 ms,
p99 ≤ 2 ms on qasync.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from _common import (
    arg_parser,
    bench_home,
    chat_config,
    emit,
    log,
    qt_dispatcher_name,
    raw_pipe_rtt_ms,
    run_on_loop,
    summarize,
)

TARGET_P50_MS = 0.3
TARGET_P99_MS = 2.0
SEQ_BASE = 1_000_000  # far from the pool's own health-ping seqs
VARIANTS: dict[str, tuple[str, dict[str, str]]] = {
    "asyncio": ("asyncio", {}),
    "qasync": ("qasync", {"QT_QPA_PLATFORM": "offscreen"}),
    # diagnostics: Qt's plain UNIX dispatcher instead of glib; a self-pipe wakeup (_qtloops)
    "qasync_noglib": ("qasync", {"QT_QPA_PLATFORM": "offscreen", "QT_NO_GLIB": "1"}),
    "qasync_pipe": ("qasync_pipe", {"QT_QPA_PLATFORM": "offscreen"}),
}


def _ms(seconds: float) -> float:
    return seconds * 1000.0


async def measure_pool(model: Path, n: int, warmup: int) -> dict[str, Any]:
    from hivetray.paths import app_paths
    from hivetray.pool import WorkerPool

    paths = app_paths()  # HIVETRAY_HOME was set by the parent process
    pool = WorkerPool(chat_config(model), paths)
    await pool.start()
    role = pool.role("chat")
    loop = asyncio.get_running_loop()
    waiting: dict[int, asyncio.Future[float]] = {}
    received: dict[int, float] = {}
    original_on_control = role.on_control

    def on_control(msg: dict[str, Any]) -> None:
        future = waiting.pop(msg.get("seq", -1), None)
        if future is None:
            original_on_control(msg)
        elif not future.done():
            future.set_result(time.perf_counter())

    # must be in place before the link starts: its reader thread binds sink.on_control
    role.on_control = on_control  # type: ignore[method-assign]
    try:
        await pool.ensure_started("chat")
        assert role.run is not None
        link: Any = role.run.link
        original_post = link._post

        def post(callback: Any, *args: Any) -> None:
            if args and isinstance(args[0], dict) and args[0].get("op") == "pong":
                received[args[0].get("seq", -1)] = time.perf_counter()
            original_post(callback, *args)

        link._post = post  # looked up per message by the reader thread
        parts: dict[str, list[float]] = {"rtt": [], "send": [], "to_reader": [],
                                         "reader_to_cb": [], "cb_to_resume": []}
        for k in range(warmup + n):
            seq = SEQ_BASE + k
            future: asyncio.Future[float] = loop.create_future()
            waiting[seq] = future
            t0 = time.perf_counter()
            link.send_control({"op": "ping", "seq": seq})
            t_sent = time.perf_counter()
            t_cb = await future
            t_res = time.perf_counter()
            t_recv = received.pop(seq, t_cb)
            if k >= warmup:
                parts["rtt"].append(_ms(t_res - t0))
                parts["send"].append(_ms(t_sent - t0))
                parts["to_reader"].append(_ms(t_recv - t0))
                parts["reader_to_cb"].append(_ms(t_cb - t_recv))
                parts["cb_to_resume"].append(_ms(t_res - t_cb))
    finally:
        await pool.shutdown()
    return {name: summarize(values) for name, values in parts.items()}


async def measure_threadsafe_wakeup(n: int, warmup: int) -> dict[str, Any]:
    """Bare ``call_soon_threadsafe`` from a thread to an idle loop: callback and resume delay."""
    loop = asyncio.get_running_loop()
    jobs: queue.SimpleQueue[asyncio.Future[tuple[float, float]] | None] = queue.SimpleQueue()

    def resolve(future: asyncio.Future[tuple[float, float]], t0: float) -> None:
        future.set_result((t0, time.perf_counter()))

    def fire() -> None:
        while (future := jobs.get()) is not None:
            time.sleep(0.0001)  # let the loop go idle, like a pong arriving ~0.1 ms later
            loop.call_soon_threadsafe(resolve, future, time.perf_counter())

    thread = threading.Thread(target=fire, daemon=True)
    thread.start()
    to_cb: list[float] = []
    to_resume: list[float] = []
    for k in range(warmup + n):
        future: asyncio.Future[tuple[float, float]] = loop.create_future()
        jobs.put(future)
        t0, t_cb = await future
        t_res = time.perf_counter()
        if k >= warmup:
            to_cb.append(_ms(t_cb - t0))
            to_resume.append(_ms(t_res - t0))
    jobs.put(None)
    thread.join()
    return {"to_callback": summarize(to_cb), "to_resume": summarize(to_resume)}


def run_child(loop_kind: str, model: Path, n: int, warmup: int) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        wakeup = await measure_threadsafe_wakeup(n, warmup)
        pool = await measure_pool(model, n, warmup)
        return {"loop_class": type(asyncio.get_running_loop()).__name__,
                "dispatcher": qt_dispatcher_name() if qt else None,
                "pyside_refcount_probe": probe, "control_rtt_ms": pool,
                "threadsafe_wakeup_ms": wakeup}

    qt = loop_kind != "asyncio"
    probe: dict[str, Any] | None = None
    if qt:  # before the loop runs: the child may abort later (see _qtloops)
        from _qtloops import pyside_refcount_probe

        probe = pyside_refcount_probe()
        print(json.dumps({"probe": probe}), file=sys.stderr, flush=True)

    return run_on_loop(loop_kind, main)


def verdict(rtt: dict[str, Any]) -> dict[str, bool]:
    p50_ok = rtt.get("p50", 1e9) <= TARGET_P50_MS
    p99_ok = rtt.get("p99", 1e9) <= TARGET_P99_MS
    return {"p50": p50_ok, "p99": p99_ok, "all": p50_ok and p99_ok}


def run_variant(name: str, model: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Run one loop variant in a child process; a crashed child is reported, not fatal."""
    kind, extra_env = VARIANTS[name]
    log(f"control RTT on {name}")
    load = [round(x, 2) for x in os.getloadavg()]  # a busy 2-core box shows in the p99
    env = {**os.environ, **extra_env}
    if args.qt_site and kind != "asyncio":
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(args.qt_site), env.get("PYTHONPATH")) if p)
    proc = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--model", str(model),
         "-n", str(args.n), "--warmup", str(args.warmup)],
        env=env, capture_output=True, text=True, timeout=180, check=False)
    probe = next((json.loads(line)["probe"] for line in proc.stderr.splitlines()
                  if line.startswith('{"probe"')), None)
    if proc.returncode != 0:
        fatal = next((line for line in proc.stderr.splitlines() if "Fatal" in line), None)
        error = fatal or f"child exited with {proc.returncode}"
        if probe and (probe["void_call_drops_none"] or probe["emit_drops_true"]):
            error = (f"crashed: PySide6 {probe['pyside6']} refcount bug on Python "
                     f"{probe['python']} (see bench/_qtloops.py): {error}")
        return {"error": error,
                "returncode": proc.returncode, "pyside_refcount_probe": probe,
                "stderr_tail": proc.stderr.strip()[-1500:], "loadavg_before": load,
                "target_met": {"p50": False, "p99": False, "all": False}}
    doc: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    doc["target_met"] = verdict(doc["control_rtt_ms"]["rtt"])
    doc["loadavg_before"] = load
    return doc


def main() -> int:
    parser = arg_parser(__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000, help="measured round trips per loop")
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--variants", default="asyncio,qasync,qasync_noglib,qasync_pipe",
                        help=f"comma-separated, from {', '.join(VARIANTS)}")
    parser.add_argument("--qt-site", type=Path, default=None,
                        help="a folder put first on PYTHONPATH of the qasync children, e.g. "
                             "one holding another PySide6/shiboken6 build to compare")
    parser.add_argument("--child", help=argparse.SUPPRESS, default=None)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:  # one loop variant, inside a fresh process; prints JSON only
        print(json.dumps(run_child(args.child, args.model, args.n, args.warmup)), flush=True)
        return 0

    started = time.perf_counter()
    result: dict[str, Any] = {"n": args.n, "warmup": args.warmup,
                              "targets_ms": {"p50": TARGET_P50_MS, "p99": TARGET_P99_MS,
                                             "applies_to": "qasync"}}
    with bench_home() as home:
        log("raw pipe baseline (no event loop)")
        result["raw_pipe_rtt_ms"] = summarize(raw_pipe_rtt_ms(args.n, args.warmup))
        result["loops"] = {name: run_variant(name, home.chat_model, args)
                           for name in args.variants.split(",")}
    qasync_doc = result["loops"].get("qasync", {})
    result["target_met"] = qasync_doc.get("target_met", {"p50": False, "p99": False,
                                                         "all": False})
    if args.qt_site:
        result["qt_site"] = str(args.qt_site)
    emit("control_rtt", result, args.out, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
