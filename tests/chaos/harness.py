"""The chaos suite's world: folders, tiny models and config, the daemon, the CLI and raw
socket clients — everything with a deadline, since a hang is one of the things we look for.

Shared by ``tests/chaos`` and ``bench/chaos.py``; nothing here knows about pytest fixtures.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hivetray.config import Config, PoolConfig, RoleConfig, default_config, save_config
from hivetray.paths import AppPaths, app_paths
from tests.helpers.daemon import HIVETRAY, cli

#: the product's promises the invariants are checked against (BRIEF §1, issue 9)
STATUS_DEADLINE_S = 1.0  # the instance answers `status` within 1 s
ORPHAN_DEADLINE_S = 2.0  # a worker is gone within 2 s of its app's death
CRASH_NOTICE_S = 1.0  # a dead worker is noticed within 1 s
ROLES = ("chat", "vision", "embed", "rerank")
#: a daemon (re)launch must answer within this (cold interpreter on a busy 2-core machine)
LAUNCH_DEADLINE_S = 30.0

#: the daemon under test: launched with the env, returns once it answers ``status``
Launcher = Callable[[dict[str, str]], "subprocess.Popen[bytes]"]


@dataclass(frozen=True)
class ChaosSettings:
    """[pool] and role settings that make the breaker and the deadlines checkable quickly."""

    restart_budget: int = 3
    restart_window_s: float = 30.0
    cooldown_s: float = 2.0
    health_interval_s: float = 1.0
    ping_timeout_s: float = 1.0
    shutdown_grace_s: float = 1.0
    start_timeout_s: float = 5.0
    #: the chat role's context: room for a generation of ~3 s (2000 tokens), so a request
    #: that is not cancelled when its client leaves is told apart from one that is (100 ms)
    chat_n_ctx: int = 2048


class ChaosEnv:
    """Folders, models and config of one chaos run.

    ``home``/``runtime`` default to folders under ``root``; the tests pass the ones the
    ``home`` fixture exported. ``private_home`` holds the same models for CLI commands that
    must run a private pool (the CLI finds an instance of its own home even through another
    ``XDG_RUNTIME_DIR``, via the owner record, so only another home forces a private pool).
    """

    def __init__(self, root: Path, settings: ChaosSettings, *, home: Path | None = None,
                 runtime: Path | None = None) -> None:
        self.root = root
        self.settings = settings
        self.home = home or root / "home"
        self.runtime = runtime or _private_dir(root / "run")
        self.private_home = root / "ph"
        self.foreign_runtime = _private_dir(root / "fr")
        self.models = write_models(root / "models")
        self.config = build_config(self.models, settings)

    def env(self, *, home: Path | None = None, runtime: Path | None = None) -> dict[str, str]:
        return {**os.environ, "HIVETRAY_HOME": str(home or self.home),
                "XDG_RUNTIME_DIR": str(runtime or self.runtime),
                "HIVETRAY_NO_BUILTIN_MODEL": "1", "GGML_NO_BACKTRACE": "1"}

    def paths(self, home: Path | None = None) -> AppPaths:
        with environ(HIVETRAY_HOME=str(home or self.home), XDG_RUNTIME_DIR=str(self.runtime)):
            return app_paths()

    @property
    def socket_path(self) -> Path:
        with environ(HIVETRAY_HOME=str(self.home), XDG_RUNTIME_DIR=str(self.runtime)):
            return app_paths().socket_path

    def write_configs(self) -> None:
        for home in (self.home, self.private_home):
            save_config(self.paths(home).config_file, self.config)


def _private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


@contextmanager
def environ(**values: str) -> Iterator[None]:
    """Set environment variables for the duration (paths are computed from them)."""
    old = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def write_models(folder: Path) -> dict[str, Path]:
    """The tiny models (milliseconds), the damaged files and the non-images the faults use.

    Roles point at ``live-*`` copies, so a fault can swap a role's file on disk behind the
    instance's back and put it back afterwards.
    """
    from PIL import Image

    from hivetray.devtools import tinymodels

    folder.mkdir(parents=True, exist_ok=True)
    models = {
        "long": tinymodels.write_chat_model(folder / "long.gguf", n_ctx=4096),
        "chat256": tinymodels.write_chat_model(folder / "chat256.gguf"),
        "embed": tinymodels.write_embed_model(folder / "embed.gguf"),
        "rerank": tinymodels.write_rerank_model(folder / "rerank.gguf"),
        "mmproj": tinymodels.write_mmproj(folder / "mmproj.gguf"),
        "crash": tinymodels.write_crash_model(folder / "crash.gguf"),
        "random": tinymodels.write_random_bytes(folder / "random.gguf"),
    }
    for role, source in (("chat", "long"), ("embed", "embed"), ("rerank", "rerank")):
        live = folder / f"live-{role}.gguf"
        live.write_bytes(models[source].read_bytes())
        models[f"live-{role}"] = live
        models[f"truncated-{role}"] = tinymodels.write_truncated(
            models[source], folder / f"truncated-{role}.gguf", fraction=0.6)
    notes = folder / "notes.txt"
    notes.write_text("shopping list: eggs, milk\n", encoding="utf-8")
    models["notes"] = notes
    fake = folder / "fake.png"
    fake.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)  # a PNG header, no image
    models["fake_png"] = fake
    image = folder / "red.png"
    Image.new("RGB", (32, 32), (200, 30, 30)).save(image)
    models["image"] = image
    return models


def build_config(models: dict[str, Path], settings: ChaosSettings) -> Config:
    base = default_config()
    common: dict[str, Any] = {"n_threads": 1, "start_timeout_s": settings.start_timeout_s}
    roles = dict(base.roles)
    roles["chat"] = RoleConfig(model=str(models["live-chat"]), n_ctx=settings.chat_n_ctx,
                               **common)
    roles["vision"] = RoleConfig(model=str(models["chat256"]), mmproj=str(models["mmproj"]),
                                 n_ctx=256, **common)
    roles["embed"] = RoleConfig(model=str(models["live-embed"]), idle_timeout_s=0.0, **common)
    # pinned: starts at launch and again after each crash (the eager paths get their share)
    roles["rerank"] = RoleConfig(model=str(models["live-rerank"]), pinned=True, **common)
    pool = PoolConfig(restart_budget=settings.restart_budget,
                      restart_window_s=settings.restart_window_s,
                      cooldown_s=settings.cooldown_s,
                      health_interval_s=settings.health_interval_s,
                      ping_timeout_s=settings.ping_timeout_s,
                      shutdown_grace_s=settings.shutdown_grace_s)
    return Config(roles=roles, pool=pool, hotkeys=base.hotkeys)


# -- the command line ---------------------------------------------------------------------
@dataclass
class CliOutcome:
    """One CLI run; ``returncode`` None means it was still running at its deadline (killed)."""

    args: tuple[str, ...]
    returncode: int | None
    stdout: str
    stderr: str
    elapsed_s: float

    def brief(self) -> str:
        args = " ".join(a if len(a) < 40 else a[:37] + "..." for a in self.args)
        return (f"`hivetray {args}` -> {self.returncode} in {self.elapsed_s:.2f} s, "
                f"stderr {self.stderr.strip()[:300]!r}")


def run_cli(args: tuple[str, ...], env: dict[str, str], timeout: float,
            stdin: str | None = None) -> CliOutcome:
    started = time.monotonic()
    try:
        done = cli(*args, stdin=stdin, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else ""
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        return CliOutcome(args, None, out, err, time.monotonic() - started)
    return CliOutcome(args, done.returncode, done.stdout, done.stderr,
                      time.monotonic() - started)


def spawn_cli(args: tuple[str, ...], env: dict[str, str]) -> subprocess.Popen[str]:
    """A CLI run we need the pid of while it runs (a private pool's app)."""
    return subprocess.Popen([*HIVETRAY, *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def finish_cli(proc: subprocess.Popen[str], args: tuple[str, ...], started: float,
               timeout: float) -> CliOutcome:
    try:
        out, err = proc.communicate(timeout=max(0.1, started + timeout - time.monotonic()))
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        code = None
    return CliOutcome(args, code, out, err, time.monotonic() - started)


def launch_daemon(env: dict[str, str], log_dir: Path) -> subprocess.Popen[bytes]:
    """The default launcher (bench): ``hivetray daemon``, answering ``status`` with its pid."""
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / "daemon.stderr", "ab") as err, open(log_dir / "daemon.stdout", "ab") as out:
        proc = subprocess.Popen([*HIVETRAY, "daemon"], stdout=out, stderr=err, env=env)
    with environ(HIVETRAY_HOME=env["HIVETRAY_HOME"], XDG_RUNTIME_DIR=env["XDG_RUNTIME_DIR"]):
        path = app_paths().socket_path
    deadline = time.monotonic() + LAUNCH_DEADLINE_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"hivetray daemon exited with {proc.returncode} at launch")
        reply = exchange(path, {"cmd": "status"}, timeout=2.0)
        if reply.result is not None and reply.result.get("pid") == proc.pid:
            return proc
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"hivetray daemon did not answer within {LAUNCH_DEADLINE_S:g} s")


# -- raw socket clients ---------------------------------------------------------------------
@dataclass
class Exchange:
    """What one raw connection got back.

    ``result``/``error`` come from the final line; ``closed`` means the instance hung up
    without one; ``timed_out`` means nothing final arrived within the deadline.
    """

    chunks: int = 0
    result: dict[str, Any] | Any = None
    error: dict[str, Any] | None = None
    final: bool = False
    closed: bool = False
    timed_out: bool = False
    bad_lines: list[bytes] = field(default_factory=list)
    extra_lines: int = 0  # lines after the final one (there must be none)
    oserror: str | None = None
    elapsed_s: float = 0.0


def exchange(path: Path, request: dict[str, Any] | bytes, *, timeout: float,
             on_chunk: Callable[[int], bool] | None = None) -> Exchange:
    """Send one request line (a dict, or raw bytes for hostile input) and read the reply.

    The connection stays open while waiting (a client that hangs up cancels its request).
    ``on_chunk(n)`` is called after the n-th chunk; returning False hangs up there.
    """
    started = time.monotonic()
    out = Exchange()
    payload = request if isinstance(request, bytes) else (json.dumps(request) + "\n").encode()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    buffer = b""
    try:
        sock.connect(str(path))
        try:
            sock.sendall(payload)
        except (BrokenPipeError, ConnectionResetError) as exc:  # it stopped reading: fine
            out.oserror = type(exc).__name__
        while not out.final:
            if time.monotonic() - started > timeout:
                out.timed_out = True
                break
            data = sock.recv(1 << 20)
            if not data:
                out.closed = True
                break
            buffer += data
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if out.final:
                    out.extra_lines += 1
                    continue
                if not _take_line(out, line):
                    continue
                if on_chunk is not None and out.chunks and not out.final \
                        and not on_chunk(out.chunks):
                    return _done(out, started)
    except TimeoutError:
        out.timed_out = True
    except OSError as exc:
        out.oserror = type(exc).__name__
        out.closed = not out.final
    finally:
        sock.close()
    if buffer.strip():
        out.bad_lines.append(buffer[:200])
    return _done(out, started)


def _done(out: Exchange, started: float) -> Exchange:
    out.elapsed_s = time.monotonic() - started
    return out


def _take_line(out: Exchange, line: bytes) -> bool:
    """Parse one reply line into ``out``; True when it was a chunk."""
    try:
        message = json.loads(line)
    except ValueError:
        out.bad_lines.append(line[:200])
        return False
    if not isinstance(message, dict):
        out.bad_lines.append(line[:200])
        return False
    if "chunk" in message:
        out.chunks += 1
        return True
    out.final = True
    if message.get("ok") is True:
        out.result = message.get("result")
    else:
        error = message.get("error")
        out.error = error if isinstance(error, dict) else {"type": None, "raw": repr(error)}
    return False


class Streamer(threading.Thread):
    """A chat stream in the background; ``first_chunk`` is set when the first chunk arrives."""

    def __init__(self, path: Path, request: dict[str, Any], timeout: float,
                 hang_up_after: int | None = None) -> None:
        super().__init__(daemon=True, name="chaos-stream")
        self.path, self.request, self.timeout = path, request, timeout
        self.hang_up_after = hang_up_after
        self.first_chunk = threading.Event()
        self.outcome: Exchange | None = None

    def _chunk(self, n: int) -> bool:
        self.first_chunk.set()
        return self.hang_up_after is None or n < self.hang_up_after

    def run(self) -> None:
        try:
            self.outcome = exchange(self.path, self.request, timeout=self.timeout,
                                    on_chunk=self._chunk)
        finally:
            self.first_chunk.set()  # a stream that ended before any chunk wakes the waiter too


def chat_request(prompt: str, max_tokens: int, image: Path | None = None) -> dict[str, Any]:
    request: dict[str, Any] = {"cmd": "chat", "params": {
        "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens}}
    if image is not None:
        import base64

        request["images"] = [{"name": image.name,
                              "data_b64": base64.b64encode(image.read_bytes()).decode()}]
    return request
