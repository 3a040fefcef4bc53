"""``hivetray self-test``: spawn every configured role through the real path, one tiny request each.

Why: a packaged build (PyInstaller one-dir, .deb, AppImage, Windows/macOS installers) can look
fine and still fail only when a worker starts: a missing llama.cpp library, a Qt-free worker that
cannot import its module inside the frozen app, ``freeze_support()`` not reached. The self-test
runs each configured role exactly as the app would — a private :class:`~hivetray.pool.WorkerPool`
in *this* process spawning ``spawn``-method workers — and sends one small request per role:

- ``chat``: a few tokens;
- ``vision``: a short chat about a generated 32×32 PNG;
- ``embed``: one text;
- ``rerank``: a query and two documents.

It never talks to a running instance (that would test the instance's workers, not the spawn
path of this executable), and it never touches the instance's files or workers: it runs a
private pool (no lock, no sweep, no worker record) whose workers log to
``cache/self-test/logs/``. Every worker is stopped at the
end, and the report says whether any child process was left (it is then killed and the run
fails).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import struct
import sys
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hivetray import ROLES, __version__, buildinfo
from hivetray.config import Config, load_config
from hivetray.errors import WorkerCrashed
from hivetray.images import ChatImage
from hivetray.instance import Instance
from hivetray.paths import AppPaths
from hivetray.pool.events import Event, EventKind

#: how long one role may take to start and answer before it is reported as failed
DEFAULT_TIMEOUT_S = 120.0
CHAT_TOKENS = 8
VISION_TOKENS = 4


@dataclass
class RoleResult:
    role: str
    status: str  # "ok" | "fail" | "skipped"
    model: str | None = None
    mmproj: str | None = None
    worker_pid: int | None = None
    spawn_to_ready_s: float | None = None
    load_s: float | None = None
    request_s: float | None = None
    result: str | None = None
    error: str | None = None
    log: str | None = None


@dataclass
class Report:
    roles: list[RoleResult] = field(default_factory=list)
    orphans: list[int] = field(default_factory=list)
    total_s: float = 0.0

    @property
    def ok(self) -> bool:
        tested = [r for r in self.roles if r.status != "skipped"]
        return bool(tested) and all(r.status == "ok" for r in tested) and not self.orphans

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "version": __version__,
            "frozen": is_frozen(),
            "executable": sys.executable,
            "pid": os.getpid(),
            "total_s": round(self.total_s, 3),
            "orphans": self.orphans,
            "roles": [dataclasses.asdict(r) for r in self.roles],
            # which build ran: a report from a user's machine names its commit and llama.cpp
            "build": buildinfo.current().to_dict(),
        }


def is_frozen() -> bool:
    """True inside a PyInstaller build."""
    return bool(getattr(sys, "frozen", False))


def self_test_paths(paths: AppPaths) -> AppPaths:
    """The user's config and cache, but a data folder of its own (logs, worker record)."""
    return dataclasses.replace(paths, data_dir=paths.cache_dir / "self-test")


def tiny_png(size: int = 32) -> bytes:
    """A ``size``×``size`` RGB gradient as PNG, written without Pillow (the app process never
    imports it; the vision worker decodes the image)."""
    rows = b"".join(
        b"\x00" + bytes(c for x in range(size) for c in (x * 255 // size, y * 255 // size, 128))
        for y in range(size))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


def _clip(text: str, limit: int = 40) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _reason(exc: BaseException) -> str:
    """The error's first line, plus the log's last telling line for a crash."""
    lines = [ln for ln in str(exc).splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__
    first = lines[0]
    if isinstance(exc, WorkerCrashed) and len(lines) > 1:
        first += f" — last log line: {lines[-1].strip()[:300]}"
    return first


# -- the tiny request per role ----------------------------------------------------------------
async def _chat_text(instance: Instance, params: dict[str, Any],
                     images: list[ChatImage] | None = None) -> tuple[str, dict[str, Any]]:
    texts: list[str] = []
    async for chunk in instance.chat(params, images):
        if chunk.get("done"):
            return "".join(texts), chunk
        texts.append(str(chunk.get("text", "")))
    raise RuntimeError("the reply ended without a result")


async def _chat(instance: Instance) -> str:
    text, result = await _chat_text(instance, {
        "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": CHAT_TOKENS,
        "temperature": 0.0})
    usage = result.get("usage") or {}
    return f"{usage.get('completion_tokens', '?')} tokens: {_clip(text)!r}"


async def _vision(instance: Instance) -> str:
    text, result = await _chat_text(instance, {
        "messages": [{"role": "user", "content": "What colour is this?"}],
        "max_tokens": VISION_TOKENS, "temperature": 0.0},
        [ChatImage("self-test.png", tiny_png())])
    usage = result.get("usage") or {}
    return (f"32 px PNG, {usage.get('prompt_tokens', '?')} prompt tokens → "
            f"{usage.get('completion_tokens', '?')} tokens: {_clip(text)!r}")


async def _embed(instance: Instance) -> str:
    vectors = (await instance.embed(["Hivetray self-test"]))["embeddings"]
    if len(vectors) != 1 or not vectors[0]:
        raise RuntimeError(f"expected one non-empty vector, got {len(vectors)}")
    return f"1 vector × {len(vectors[0])} dims"


async def _rerank(instance: Instance) -> str:
    rows = (await instance.rerank("what keeps models warm?", [
        "Hivetray keeps local models warm.", "Bees live in hives."]))["results"]
    if len(rows) != 2:
        raise RuntimeError(f"expected 2 scores, got {len(rows)}")
    return "scores " + ", ".join(f"doc{r['index']}={r['score']:.3f}" for r in rows)


PROBES: dict[str, Callable[[Instance], Awaitable[str]]] = {
    "chat": _chat, "vision": _vision, "embed": _embed, "rerank": _rerank,
}


# -- the run ---------------------------------------------------------------------------------
async def run_self_test(paths: AppPaths, config: Config, *,
                        timeout_s: float = DEFAULT_TIMEOUT_S,
                        progress: Callable[[RoleResult], None] | None = None) -> Report:
    """Test every configured role, one after the other (so spawn times are not contended)."""
    started = time.perf_counter()
    test_paths = self_test_paths(paths)
    instance = Instance(test_paths, config, private=True)
    report = Report()
    spawned: list[int] = []
    spawned_roles: set[str] = set()

    def on_event(event: Event) -> None:
        if event.kind is EventKind.SPAWN and event.data.get("pid"):
            spawned.append(int(event.data["pid"]))
            spawned_roles.add(str(event.role))

    instance.pool.events.subscribe(on_event)
    try:
        await instance.start()
        for role in ROLES:
            result = await _test_role(instance, role, timeout_s)
            if role not in spawned_roles:
                result.log = None  # refused before spawning: there is no worker log to read
            report.roles.append(result)
            if progress is not None:
                progress(result)
    finally:
        await instance.close()
        report.orphans = await asyncio.to_thread(_reap_leftovers, spawned)
        report.total_s = time.perf_counter() - started
    return report


async def _test_role(instance: Instance, role: str, timeout_s: float) -> RoleResult:
    supervisor = instance.pool.role(role)
    cfg = supervisor.config
    result = RoleResult(role, "skipped", cfg.model, cfg.mmproj,
                        log=str(supervisor.log_path))
    if not cfg.configured:
        result.result = "no model set"
        result.log = None
        return result

    phase = "starting the worker"
    t0 = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            await instance.pool.ensure_started(role)
            result.spawn_to_ready_s = round(time.perf_counter() - t0, 3)
            result.worker_pid = supervisor.pid
            result.load_s = (round(supervisor.usage.load_s, 3)
                             if supervisor.usage.load_s is not None else None)
            phase = "the request"
            t1 = time.perf_counter()
            result.result = await PROBES[role](instance)
            result.request_s = round(time.perf_counter() - t1, 3)
        result.status = "ok"
    except TimeoutError:
        result.status = "fail"
        result.error = f"{phase} took longer than {timeout_s:g} s"
    except Exception as exc:
        result.status = "fail"
        result.error = f"{phase} failed: {_reason(exc)}"
    finally:
        # free the memory before the next role starts; not counted in the timings
        await instance.pool.stop_role(role, "self-test done")
    return result


def _reap_leftovers(pids: list[int]) -> list[int]:
    """Worker pids still alive after shutdown (a bug): killed, and reported.

    Only the workers this run spawned count; multiprocessing's own helper (the resource
    tracker) is not a worker and exits with this process.
    """
    import psutil

    alive: list[psutil.Process] = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            if proc.ppid() == os.getpid() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except psutil.Error:
            continue
    _gone, alive = psutil.wait_procs(alive, timeout=2.0)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=2.0)
    return [p.pid for p in alive]


# -- the command -----------------------------------------------------------------------------
def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "self-test",
        help="spawn each configured role, run one tiny request each, print a report",
        description="Spawn each configured role's worker through the real path in this process "
                    "(a private pool: a running instance is not used, nor are its workers or logs "
                    "touched), run one tiny request per role (chat: a few tokens; vision: a chat "
                    "about a generated PNG; embed: one text; rerank: a query and two documents), "
                    "print a report and stop every worker. Roles without a model are skipped. "
                    "Exit code 0 when every configured role passed, 1 otherwise (also when no "
                    "role has a model). Worker logs: cache/self-test/logs/.")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="S",
                        help=f"seconds allowed per role (default {DEFAULT_TIMEOUT_S:g})")


def _fmt_s(value: float | None) -> str:
    return f"{value:.2f} s" if value is not None else "-"


def _print_row(row: RoleResult) -> None:
    model = Path(row.model).name if row.model else "-"
    status = {"ok": "ok", "fail": "FAIL", "skipped": "skipped"}[row.status]
    detail = row.error if row.status == "fail" else (row.result or "")
    print(f"{row.role:7} {_clip(model, 28):28} {_fmt_s(row.spawn_to_ready_s):>9} "
          f"{_fmt_s(row.request_s):>9}  {status:7} {detail}", flush=True)
    if row.status == "fail" and row.log:
        print(f"{'':7} └ worker log: {row.log}", flush=True)


def run(paths: AppPaths, args: argparse.Namespace) -> int:
    """Entry of ``hivetray self-test``; returns the exit code."""
    loaded = load_config(paths.config_file)
    for warning in loaded.warnings:
        print(f"hivetray: warning: {warning}", file=sys.stderr)
    # pool events (a load error, a crash with its log tail) are in the report already
    logging.getLogger("hivetray.events").addHandler(logging.NullHandler())
    from hivetray.models.builtin import with_builtin_chat

    config = with_builtin_chat(loaded.config, paths)
    if not args.json:
        print("\n".join(buildinfo.current().lines()), flush=True)
        print(f"Hivetray {__version__} self-test — {'frozen build' if is_frozen() else 'Python'} "
              f"{sys.executable}, pid {os.getpid()}, private pool", flush=True)
        print(f"{'ROLE':7} {'MODEL':28} {'SPAWN→RDY':>9} {'REQUEST':>9}  {'RESULT':7} DETAIL",
              flush=True)
    report = asyncio.run(run_self_test(paths, config, timeout_s=args.timeout,
                                       progress=None if args.json else _print_row))
    tested = [r for r in report.roles if r.status != "skipped"]
    if args.json:
        print(json.dumps(report.to_dict()), flush=True)
    else:
        failed = sum(r.status == "fail" for r in report.roles)
        skipped = sum(r.status == "skipped" for r in report.roles)
        print(f"{len(tested) - failed} ok, {failed} failed, {skipped} skipped in "
              f"{report.total_s:.1f} s; every worker stopped"
              + (f"; LEFT RUNNING (killed): {report.orphans}" if report.orphans else ""),
              flush=True)
    if not tested:
        print("hivetray: no role has a model, so nothing was tested; set one with "
              "`hivetray models set ROLE PATH`", file=sys.stderr)
        return 1
    if not report.ok:
        reasons = [f"{r.role}: {r.error}" for r in report.roles if r.status == "fail"]
        if report.orphans:
            reasons.append(f"worker processes were left running: {report.orphans}")
        print(f"hivetray: self-test failed — {reasons[0]}", file=sys.stderr)
        return 1
    return 0
