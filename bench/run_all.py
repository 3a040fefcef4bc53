"""Run every benchmark (each in its own process) and collect the results side by side.

Writes one JSON document (default ``bench/results/latest.json``; ``bench/results/`` is
git-ignored) and prints a short summary table. A benchmark that fails or times out is recorded
with its error and does not stop the others. Exit code 1 when any benchmark failed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import BENCH_DIR, RESULTS_DIR, arg_parser, machine_info

BENCHES: dict[str, tuple[str, float]] = {  # name → (script, timeout in seconds)
    "control_rtt": ("control_rtt.py", 240),
    "spawn_ready": ("spawn_ready.py", 120),
    "quit_time": ("quit_time.py", 180),
    "idle_death": ("idle_death.py", 120),
    "stream": ("stream.py", 300),
    "stop_latency": ("stop_latency.py", 120),
    "hotkey_show": ("hotkey_show.py", 180),
    "tray_start": ("tray_start.py", 180),
    "loop_lag": ("loop_lag.py", 180),
    "api_stream": ("api_stream.py", 420),
    "remote": ("remote.py", 300),
}


def run_one(name: str, extra: list[str]) -> dict[str, Any]:
    script, timeout = BENCHES[name]
    with tempfile.TemporaryDirectory(prefix="hvb-run-") as tmp:
        out = Path(tmp) / f"{name}.json"
        started = time.perf_counter()
        print(f"running {name} ...", file=sys.stderr, flush=True)
        try:
            proc = subprocess.run([sys.executable, str(BENCH_DIR / script), "--out", str(out),
                                   *extra], capture_output=True, text=True, timeout=timeout,
                                  check=False)
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout:g} s"}
        elapsed = time.perf_counter() - started
        if not out.exists():
            return {"error": f"exit {proc.returncode}", "stderr_tail": proc.stderr[-2000:],
                    "wall_s": round(elapsed, 2)}
        doc: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
        doc["wall_s"] = round(elapsed, 2)
        if proc.returncode != 0:  # a bench that ran but missed its target still reports
            doc["exit_code"] = proc.returncode
        return doc


def _get(doc: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(doc, dict) or key not in doc:
            return None
        doc = doc[key]
    return doc


def _fmt(value: Any, unit: str = "ms") -> str:
    if value is None:
        return "-"
    if isinstance(value, float | int):
        return f"{value:.3f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return str(value)


def _ok(flag: Any) -> str:
    return {True: "yes", False: "NO"}.get(flag, "-")


def summary_rows(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(metric, measured, target, met) rows for the table."""
    rows: list[tuple[str, str, str, str]] = []
    crtt = results.get("control_rtt", {})
    for loop, doc in (_get(crtt, "loops") or {}).items():
        rtt = _get(doc, "control_rtt_ms", "rtt")
        pyside = _get(doc, "pyside_refcount_probe", "pyside6")
        label = f"control RTT [{loop}{f', PySide6 {pyside}' if pyside else ''}]"
        if rtt is None:
            error = str(doc.get("error", "?"))
            reason = "refcount bug" if "refcount bug" in error else error[:50]
            rows.append((label, f"CRASHED ({reason})",
                         "p50≤0.3 p99≤2 ms", "NO"))
            continue
        measured = f"p50 {rtt['p50']:.3f} / p99 {rtt['p99']:.3f} ms"
        target = "p50≤0.3 p99≤2 ms" + (" (binding)" if loop == "qasync" else "")
        rows.append((label, measured, target,
                     _ok(_get(doc, "target_met", "all"))))
    spawn = results.get("spawn_ready", {})
    if "ready_ms" in spawn:
        rows.append(("spawn → ready (chat)", f"p50 {_fmt(spawn['ready_ms']['p50'])} / p95 "
                     f"{_fmt(spawn['ready_ms']['p95'])}", "-", "-"))
        rows.append(("  worker load_s", f"p50 {_fmt(spawn['load_ms']['p50'])}", "-", "-"))
        rows.append(("stop_role (idle)", f"p50 {_fmt(spawn['stop_ms']['p50'])}", "-", "-"))
    quit_doc = results.get("quit_time", {})
    met = quit_doc.get("target_met", {})
    if "idle" in quit_doc:
        rows.append(("quit, idle worker → all gone",
                     f"median {_fmt(quit_doc['idle']['total']['median_ms'])}", "≤ 1000 ms",
                     _ok(met.get("idle"))))
    if "hung" in quit_doc:
        rows.append(("quit, SIGSTOPped worker", _fmt(quit_doc["hung"]["total"]["max"]),
                     f"≤ {quit_doc['targets_ms']['hung']:.0f} ms", _ok(met.get("hung"))))
    if "killed" in quit_doc:
        rows.append(("app SIGKILLed → worker gone",
                     f"median {_fmt(quit_doc['killed']['worker_gone']['median_ms'])}",
                     "≤ 2000 ms", _ok(met.get("killed"))))
    death = results.get("idle_death", {})
    if "crash_event_ms" in death:
        rows.append(("idle worker killed → noticed",
                     f"p50 {_fmt(death['crash_event_ms']['p50'])} / max "
                     f"{_fmt(death['crash_event_ms']['max'])}", "≤ 1000 ms",
                     _ok(death.get("target_met"))))
    rows += _desktop_rows(results)
    for name, doc in results.items():
        if "error" in doc:
            rows.append((name, f"FAILED: {doc['error']}", "-", "NO"))
    return rows


def _desktop_rows(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """Streaming, stop, hotkey, tray start/RSS and loop-lag rows."""
    rows: list[tuple[str, str, str, str]] = []
    for model, doc in (_get(results, "stream", "models") or {}).items():
        ratio = doc.get("pool_vs_inprocess", {})
        server = doc.get("llama_server_vs_inprocess")
        measured = (f"pool {ratio.get('decode_tps_ratio')}× in-process, TTFT "
                    f"+{ratio.get('ttft_overhead_ms')} ms"
                    + (f"; llama-server {server['decode_tps_ratio']}×" if server else ""))
        rows.append((f"stream [{model}]", measured, "≥0.98×, TTFT ≤+5 ms",
                     _ok(_get(doc, "targets", "pass"))))
    stop = results.get("stop_latency", {})
    if "worker_idle_ms" in stop:
        rows.append(("Stop → worker idle", f"p50 {_fmt(stop['worker_idle_ms']['p50'])} / p95 "
                     f"{_fmt(stop['worker_idle_ms']['p95'])}", "≤ 100 ms",
                     _ok(stop.get("target_met"))))
    hotkey = results.get("hotkey_show", {})
    if "press_to_visible_ms" in hotkey:
        shown = hotkey["press_to_visible_ms"]
        rows.append(("hotkey → quick chat mapped", f"p50 {_fmt(shown['p50'])} / p95 "
                     f"{_fmt(shown['p95'])}", "p95 ≤ 50 ms", _ok(hotkey.get("target_met"))))
    tray = results.get("tray_start", {})
    if "ratios" in tray:
        met = tray.get("meets_target", {})
        rows.append(("start → icon docked vs bare", f"{tray['ratios']['start']}×", "≤ 1.5×",
                     _ok(met.get("start"))))
        rows.append(("idle RSS vs bare", f"{tray['ratios']['rss']}×", "≤ 1.3×",
                     _ok(met.get("rss"))))
    lag = results.get("loop_lag", {})
    if "streaming_p99_ms" in lag:
        rows.append(("loop lag while streaming", f"p99 {_fmt(lag['streaming_p99_ms'])}",
                     "p99 ≤ 16 ms", _ok(lag.get("meets_target"))))
    return rows


def print_table(rows: list[tuple[str, str, str, str]]) -> None:
    header = ("metric", "measured", "target", "met")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


def main() -> int:
    parser = arg_parser(__doc__.splitlines()[0])
    parser.add_argument("--only", help=f"comma-separated subset of {', '.join(BENCHES)}")
    parser.add_argument("--qt-site", help="passed to control_rtt.py (another PySide6 build)")
    args = parser.parse_args()
    out: Path = args.out or RESULTS_DIR / "latest.json"
    names = args.only.split(",") if args.only else list(BENCHES)
    started = time.perf_counter()
    results: dict[str, Any] = {}
    for name in names:
        extra = ["--qt-site", args.qt_site] if name == "control_rtt" and args.qt_site else []
        results[name] = run_one(name, extra)
    doc = {"timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
           "duration_s": round(time.perf_counter() - started, 1), "machine": machine_info(),
           "results": results}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print_table(summary_rows(results))
    print(f"\nfull results: {out} ({doc['duration_s']} s)")
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
