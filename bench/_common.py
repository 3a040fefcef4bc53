"""Shared helpers for the benchmark scripts in ``bench/`` (not part of the pytest suite).

Kept import-light on purpose: the pool spawns workers with the ``spawn`` start method, which
re-imports the benchmark script (and so this module) in every worker; heavy imports (hivetray,
Qt, llama.cpp) happen inside functions instead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import importlib.metadata
import json
import logging
import math
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from hivetray.config import Config, PoolConfig
    from hivetray.paths import AppPaths

T = TypeVar("T")
BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"


# -- statistics -------------------------------------------------------------------------------
def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile (numpy's default) of already sorted values."""
    if not sorted_values:
        return math.nan
    pos = (len(sorted_values) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summarize(values: Sequence[float], digits: int = 4) -> dict[str, float | int]:
    """n, min, mean, p50/p90/p95/p99 and max of ``values`` (same unit as the input)."""
    data = sorted(values)
    if not data:
        return {"n": 0}
    out: dict[str, float | int] = {"n": len(data), "min": round(data[0], digits),
                                   "mean": round(sum(data) / len(data), digits)}
    for name, q in (("p50", 0.5), ("p90", 0.9), ("p95", 0.95), ("p99", 0.99)):
        out[name] = round(quantile(data, q), digits)
    out["max"] = round(data[-1], digits)
    return out


def median(values: Sequence[float]) -> float:
    return quantile(sorted(values), 0.5)


# -- environment --------------------------------------------------------------------------------
def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "llama_cpp": _version("llama_cpp_python"),
        "qasync": _version("qasync"),
        "pyside6": _version("PySide6_Essentials") or _version("PySide6"),
        # differs from the installed one when PYTHONPATH points at another build (--qt-site)
        "pyside6_imported": getattr(sys.modules.get("PySide6"), "__version__", None),
        "hivetray": _version("hivetray"),
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


@dataclass
class BenchHome:
    """A throw-away HIVETRAY_HOME plus a runtime dir for the socket and a tiny chat model."""

    root: Path
    home: Path
    runtime: Path
    chat_model: Path

    def env(self) -> dict[str, str]:
        """Environment for a ``python -m hivetray`` subprocess using this home."""
        env = dict(os.environ)
        env.update(HIVETRAY_HOME=str(self.home), XDG_RUNTIME_DIR=str(self.runtime),
                   GGML_NO_BACKTRACE="1", PYTHONUNBUFFERED="1")
        return env

    def paths(self) -> AppPaths:
        from hivetray.paths import app_paths

        paths = app_paths()
        paths.ensure()
        return paths


@contextlib.contextmanager
def bench_home(prefix: str = "hvb-") -> Iterator[BenchHome]:
    """Create the temp home, point this process's environment at it, clean up afterwards."""
    from hivetray.devtools.tinymodels import write_chat_model

    # pool events are logged (errors for crashes, with a 4 KiB log tail); keep stderr readable
    logging.getLogger("hivetray").addHandler(logging.NullHandler())
    root = Path(tempfile.mkdtemp(prefix=prefix))  # short: the socket path must fit AF_UNIX
    saved = {k: os.environ.get(k) for k in ("HIVETRAY_HOME", "XDG_RUNTIME_DIR",
                                            "GGML_NO_BACKTRACE")}
    try:
        runtime = root / "run"
        runtime.mkdir(mode=0o700)
        home = root / "home"
        home.mkdir()
        model = write_chat_model(root / "chat.gguf")
        os.environ.update(HIVETRAY_HOME=str(home), XDG_RUNTIME_DIR=str(runtime),
                          GGML_NO_BACKTRACE="1")
        yield BenchHome(root, home, runtime, model)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(root, ignore_errors=True)


def chat_config(model: Path, pool: PoolConfig | None = None, **chat: Any) -> Config:
    """Default config whose chat role uses ``model`` with n_ctx=256, n_threads=1."""
    from hivetray.config import Config, PoolConfig, RoleConfig, default_config

    base = default_config()
    roles = dict(base.roles)
    roles["chat"] = RoleConfig(model=str(model), **{"n_ctx": 256, "n_threads": 1, **chat})
    return Config(roles=roles, pool=pool or PoolConfig(), hotkeys=base.hotkeys)


# -- event loops ------------------------------------------------------------------------------
def run_on_loop(kind: str, main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``main()`` on plain asyncio or on a qasync loop over a QCoreApplication.

    ``kind``: ``asyncio``, ``qasync`` (stock wakeup path) or ``qasync_pipe`` (self-pipe
    wakeup); see ``_qtloops`` for why the qasync loops are subclassed at all.
    """
    if kind == "asyncio":
        return asyncio.run(main())
    from _qtloops import make_loop

    loop = make_loop(kind)
    asyncio.set_event_loop(loop)
    try:
        result: T = loop.run_until_complete(main())
        loop.run_until_complete(loop.shutdown_asyncgens())
        return result
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def qt_dispatcher_name() -> str | None:
    """Class name of Qt's event dispatcher for the main thread (glib or unix)."""
    try:
        from PySide6.QtCore import QAbstractEventDispatcher, QCoreApplication
    except ImportError:
        return None
    app = QCoreApplication.instance()
    dispatcher = QAbstractEventDispatcher.instance(app.thread()) if app else None
    return str(dispatcher.metaObject().className()) if dispatcher is not None else None


# -- raw pipe baseline ------------------------------------------------------------------------
def echo_main(conn: Connection) -> None:
    """Child of :func:`raw_pipe_rtt_ms`: echo every message until EOF."""
    with contextlib.suppress(EOFError, OSError):
        while True:
            msg = conn.recv()
            conn.send({"op": "pong", "seq": msg.get("seq")})


def raw_pipe_rtt_ms(n: int, warmup: int = 100) -> list[float]:
    """Ping→pong over a bare multiprocessing Pipe to a spawned echo process, no event loop.

    The floor for the control channel: pickling plus two pipe hops and two process wakeups.
    """
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=True)
    proc = ctx.Process(target=echo_main, args=(child,), daemon=True)
    proc.start()
    child.close()
    samples: list[float] = []
    try:
        for k in range(warmup + n):
            t0 = time.perf_counter()
            parent.send({"op": "ping", "seq": k})
            parent.recv()
            if k >= warmup:
                samples.append((time.perf_counter() - t0) * 1000)
    finally:
        parent.close()
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join()
    return samples


# -- output --------------------------------------------------------------------------------------
#: where bench/build_llama_server.sh leaves llama-server (its default cache folder)
DEFAULT_LLAMA_SERVER = (Path.home() / ".cache" / "hivetray-bench" / "llama-server-0.3.36"
                        / "build" / "bin" / "llama-server")


def add_llama_server_option(parser: argparse.ArgumentParser) -> None:
    """``--llama-server PATH``: $LLAMA_SERVER, else where build_llama_server.sh builds it."""
    parser.add_argument("--llama-server", type=Path, default=Path(
        os.environ.get("LLAMA_SERVER", DEFAULT_LLAMA_SERVER)))


def arg_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", type=Path, help="also write the JSON result to this file")
    return parser


def emit(name: str, result: dict[str, Any], out: Path | None, started: float) -> None:
    """Print one JSON object (with machine info) to stdout; write it to ``out`` too."""
    doc = {"bench": name, "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
           "duration_s": round(time.perf_counter() - started, 2), "machine": machine_info(),
           **result}
    text = json.dumps(doc, indent=2)
    print(text, flush=True)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n", encoding="utf-8")


def log(message: str) -> None:
    """Progress on stderr so stdout stays one JSON object."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


@dataclass
class SseTimes:
    """What one OpenAI-style SSE chat stream showed: when text came, and how much."""

    first: float | None = None  # perf_counter() of the first text
    last: float = 0.0  # ... of the last text (the request's start when none came)
    usage_tokens: int = 0  # completion_tokens of the usage chunk (0 without one)
    deltas: int = 0  # chunks that carried text


def read_sse(lines: Iterable[bytes], started: float) -> SseTimes:
    """Read an SSE chat stream (Hivetray's API, llama-server, any OpenAI-compatible engine)
    to its end: the one parser the stream benches share."""
    times = SseTimes(last=started)
    for raw in lines:
        line = raw.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        doc = json.loads(line[6:])
        if doc.get("usage"):
            times.usage_tokens = int(doc["usage"]["completion_tokens"])
        for choice in doc.get("choices") or []:
            if (choice.get("delta") or {}).get("content"):
                times.last = time.perf_counter()
                times.first = times.first or times.last
                times.deltas += 1
    return times


# -- llama-server, the reference engine --------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_healthy(port: int) -> bool:
    with contextlib.suppress(OSError):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        conn.request("GET", "/health")
        return conn.getresponse().status == 200
    return False


def start_llama_server(binary: Path, model: Path, port: int, n_ctx: int, threads: int,
                       *extra: str) -> subprocess.Popen[bytes]:
    """llama-server on 127.0.0.1:``port``, returned once ``/health`` answers 200 (the benches
    that restart it — remote.py — call this again on the same port)."""
    proc = subprocess.Popen([str(binary), "-m", str(model), "-c", str(n_ctx), "-t", str(threads),
                             "-tb", str(threads), "--host", "127.0.0.1", "--port", str(port),
                             "--no-webui", *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not server_healthy(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_process(proc)
            raise RuntimeError(f"llama-server did not start ({binary}, {model.name})")
        time.sleep(0.02)
    return proc


def stop_process(proc: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``grace_s``; always reaped."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def llama_server(binary: Path, model: Path, n_ctx: int, threads: int,
                 *extra: str) -> Iterator[tuple[int, int]]:
    """A llama-server for the length of a ``with``: yields (port, pid)."""
    port = free_port()
    proc = start_llama_server(binary, model, port, n_ctx, threads, *extra)
    try:
        yield port, proc.pid
    finally:
        stop_process(proc)
