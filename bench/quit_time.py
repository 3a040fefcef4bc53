"""Quit and app-death timings end to end, through ``python -m hivetray`` (docs/performance.md).

Setup per run: start ``python -m hivetray daemon`` (temp HIVETRAY_HOME and XDG_RUNTIME_DIR,
``config.toml`` with a tiny chat model, ``n_ctx=256``, ``n_threads=1``, ``shutdown_grace_s``),
wait until ``python -m hivetray status --json`` answers with the daemon's pid, run
``python -m hivetray chat`` so the chat worker exists, take its pid from the instance.

- idle:   time ``python -m hivetray quit`` until the daemon has exited and the worker pid is
  gone (a zombie counts as gone). Target ≤ 1 s. Median of N runs.
- hung:   SIGSTOP the worker first, then the same. Target ≤ grace + 6 s.
- killed: SIGKILL the daemon; time until the worker is gone (parent-death watchdog).
  Target ≤ 2 s. Median of N runs.

``all_gone_ms`` also waits for every other descendant of the daemon (multiprocessing's
resource tracker). Times include the CLI's own start-up (~0.2 s of Python imports).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from _common import BenchHome, arg_parser, bench_home, emit, log, median, summarize

POLL_S = 0.001
TARGET_IDLE_S = 1.0
TARGET_KILLED_S = 2.0
HUNG_EXTRA_S = 6.0


def hivetray(*args: str) -> list[str]:
    return [sys.executable, "-m", "hivetray", *args]


def write_config(home: BenchHome, grace_s: float) -> None:
    config = home.home / "config" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(
        f'[roles.chat]\nmodel = "{home.chat_model}"\nn_ctx = 256\nn_threads = 1\n\n'
        f"[pool]\nshutdown_grace_s = {grace_s:g}\n", encoding="utf-8")


def gone(proc: psutil.Process) -> bool:
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


class Daemon:
    """One ``hivetray daemon`` with a live chat worker."""

    def __init__(self, home: BenchHome, log_path: Path) -> None:
        from hivetray.paths import app_paths

        self.home = home
        self.env = home.env()
        self.socket = app_paths().socket_path
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen(hivetray("daemon"), env=self.env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.worker: psutil.Process | None = None
        self.descendants: list[psutil.Process] = []

    def cli(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(hivetray(*args), env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=False)

    def wait_ready(self, timeout: float = 20) -> None:
        from hivetray import ipc

        deadline = time.monotonic() + timeout
        while not ipc.instance_alive(self.socket):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"daemon did not come up (exit {self.proc.returncode})")
            time.sleep(0.01)
        status = self.cli("status", "--json")
        if status.returncode != 0 or json.loads(status.stdout)["pid"] != self.proc.pid:
            raise RuntimeError(f"status --json did not answer for the daemon: {status}")

    def start_worker(self) -> None:
        from hivetray import ipc

        chat = self.cli("chat", "hello", "--max-tokens", "4")
        if chat.returncode != 0:
            raise RuntimeError(f"chat failed: {chat.stderr.strip()}")
        status = asyncio.run(ipc.call(self.socket, "status"))
        pid = next(r["pid"] for r in status["roles"] if r["role"] == "chat")
        self.worker = psutil.Process(pid)
        self.descendants = psutil.Process(self.proc.pid).children(recursive=True)

    def close(self) -> None:
        """Leave nothing behind, whatever happened."""
        for proc in self.descendants:
            if not gone(proc):
                proc.kill()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.log.close()


def wait_all(checks: dict[str, Callable[[], bool]], t0: float,
             timeout: float) -> dict[str, float]:
    """Poll until every check is true; return each one's first-true time in ms after t0."""
    done: dict[str, float] = {}
    while len(done) < len(checks):
        now = time.perf_counter()
        for name, check in checks.items():
            if name not in done and check():
                done[name] = (now - t0) * 1000
        if now - t0 > timeout:
            raise TimeoutError(f"still waiting for {sorted(set(checks) - set(done))}")
        time.sleep(POLL_S)
    return {k: round(v, 2) for k, v in done.items()}


def quit_run(daemon: Daemon, hang: bool, timeout: float) -> dict[str, Any]:
    assert daemon.worker is not None
    worker, others = daemon.worker, daemon.descendants
    if hang:
        os.kill(worker.pid, signal.SIGSTOP)
    t0 = time.perf_counter()
    cli = subprocess.Popen(hivetray("quit"), env=daemon.env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE)
    times = wait_all({"cli_exit_ms": lambda: cli.poll() is not None,
                      "daemon_exit_ms": lambda: daemon.proc.poll() is not None,
                      "worker_gone_ms": lambda: gone(worker),
                      "all_gone_ms": lambda: all(gone(p) for p in others)}, t0, timeout)
    times["total_ms"] = max(times["daemon_exit_ms"], times["worker_gone_ms"])
    return {**times, "cli_rc": cli.returncode, "daemon_rc": daemon.proc.returncode}


def killed_run(daemon: Daemon, timeout: float) -> dict[str, Any]:
    assert daemon.worker is not None
    worker, others = daemon.worker, daemon.descendants
    t0 = time.perf_counter()
    daemon.proc.send_signal(signal.SIGKILL)
    daemon.proc.wait()
    return wait_all({"worker_gone_ms": lambda: gone(worker),
                     "all_gone_ms": lambda: all(gone(p) for p in others)}, t0, timeout)


def scenario(home: BenchHome, name: str, repeats: int,
             run: Callable[[Daemon], dict[str, Any]]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for i in range(repeats):
        daemon = Daemon(home, home.root / "daemon.log")
        try:
            daemon.wait_ready()
            daemon.start_worker()
            row = run(daemon)
        finally:
            daemon.close()
        log(f"{name} #{i}: {row}")
        rows.append(row)
    return rows


def digest(rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    values = [float(r[key]) for r in rows]
    return {"median_ms": round(median(values), 2), **summarize(values, 2)}


def main() -> int:
    parser = arg_parser(__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=5, help="repeats of the idle and killed cases")
    parser.add_argument("--grace", type=float, default=2.0, help="[pool] shutdown_grace_s")
    parser.add_argument("--skip-hung", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    hung_target_ms = (args.grace + HUNG_EXTRA_S) * 1000
    result: dict[str, Any] = {"n": args.n, "grace_s": args.grace,
                              "targets_ms": {"idle": TARGET_IDLE_S * 1000,
                                             "hung": hung_target_ms,
                                             "killed": TARGET_KILLED_S * 1000}}
    with bench_home() as home:
        write_config(home, args.grace)
        idle = scenario(home, "idle quit", args.n, lambda d: quit_run(d, False, 15))
        result["idle"] = {"runs": idle, "total": digest(idle, "total_ms"),
                          "all_gone": digest(idle, "all_gone_ms"),
                          "cli_exit": digest(idle, "cli_exit_ms")}
        if not args.skip_hung:
            hung = scenario(home, "hung quit", 1, lambda d: quit_run(d, True, 30))
            result["hung"] = {"runs": hung, "total": digest(hung, "total_ms")}
        killed = scenario(home, "app SIGKILLed", args.n, lambda d: killed_run(d, 15))
        result["killed"] = {"runs": killed, "worker_gone": digest(killed, "worker_gone_ms"),
                            "all_gone": digest(killed, "all_gone_ms")}
    met = {"idle": result["idle"]["total"]["median_ms"] <= TARGET_IDLE_S * 1000,
           "killed": result["killed"]["worker_gone"]["median_ms"] <= TARGET_KILLED_S * 1000}
    if "hung" in result:
        met["hung"] = result["hung"]["total"]["max"] <= hung_target_ms
    result["target_met"] = {**met, "all": all(met.values())}
    emit("quit_time", result, args.out, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
