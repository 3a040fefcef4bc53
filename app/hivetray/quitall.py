"""``hivetray quit --all-homes``: make every running Hivetray instance of this user quit, whatever
its ``HIVETRAY_HOME`` and ``XDG_RUNTIME_DIR`` — the uninstaller's step, so that nothing keeps
running from deleted files.

Why scan sockets rather than guess homes: an instance is the one process listening on an
instance socket, ``<runtime>/hivetray-<uid>/<home key>.sock`` (``AppPaths.socket_path``). The
kernel lists every bound AF_UNIX path with the process holding it (``/proc/net/unix`` and
``/proc/PID/fd``, read by psutil), so no home or environment has to be reconstructed. Workers,
CLI commands and private pools listen on nothing, so they are never taken for an instance.

Each instance is asked to quit over its own socket (it stops its workers and exits, as for
``hivetray quit``); one that does not answer, or does not exit, gets SIGTERM (its graceful quit),
then SIGKILL, and so do the workers it had, so no process outlives the command.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psutil

from hivetray import ipc
from hivetray.errors import HivetrayError, first_line

#: how long an instance may take to answer ``quit`` (it stops its workers first: a shutdown
#: grace, then SIGTERM and SIGKILL for a hung one)
ANSWER_S = 20.0
#: then how long it may take to exit, and how long SIGTERM gets before SIGKILL
EXIT_S = 5.0
TERM_S = 5.0


@dataclass(frozen=True)
class FoundInstance:
    """A process listening on an instance socket."""

    pid: int
    socket: Path


@dataclass(frozen=True)
class QuitOutcome:
    """What became of one instance: it answered ``quit``, or why not, and whether it (or one
    of its workers) had to be signalled."""

    instance: FoundInstance
    answered: bool
    error: str | None = None
    signalled: bool = False
    survivors: tuple[int, ...] = ()

    def line(self) -> str:
        how = "quit" if self.answered else f"did not answer ({self.error})"
        if self.signalled:
            how += "; terminated"
        if self.survivors:
            how += f"; still running: {', '.join(map(str, self.survivors))}"
        return f"pid {self.instance.pid} ({self.instance.socket}): {how}"


def is_instance_socket(path: str, uid: int) -> bool:
    """``…/hivetray-<uid>/<key>.sock``: the shape of ``AppPaths.socket_path``."""
    if not path or path.startswith("\0"):  # unbound, or an abstract socket
        return False
    socket = Path(path)
    return socket.parent.name == f"hivetray-{uid}" and socket.suffix == ".sock"


def find_instances(under: Path | None = None) -> list[FoundInstance]:
    """Every instance of this user, by the instance socket it listens on; with ``under``, only
    those whose socket lies below that folder (tests sharing a user with other runs).

    Unix only: on Windows the instance socket is loopback TCP and the uninstaller stops
    Hivetray itself (packaging/windows/hivetray.iss), so there is nothing to find here."""
    if sys.platform == "win32":
        return []
    uid = os.getuid()
    me = os.getpid()
    under = under.resolve() if under is not None else None
    found: dict[tuple[int, str], FoundInstance] = {}
    for conn in psutil.net_connections(kind="unix"):
        path = conn.laddr if isinstance(conn.laddr, str) else ""
        if conn.pid is None or conn.pid == me or not is_instance_socket(path, uid):
            continue
        if under is not None and not Path(path).is_relative_to(under):
            continue
        try:
            owner = psutil.Process(conn.pid)
            if owner.uids().real != uid:
                continue
        except psutil.Error:
            continue
        found.setdefault((conn.pid, path), FoundInstance(conn.pid, Path(path)))
    return sorted(found.values(), key=lambda f: f.pid)


def _family(pid: int) -> list[psutil.Process]:
    """The instance and every process it started (its workers), while it still has them."""
    try:
        app = psutil.Process(pid)
        return [app, *app.children(recursive=True)]
    except psutil.Error:
        return []


def _gone(proc: psutil.Process) -> bool:
    """Exited, or a zombie nobody reaps (an orphan under an init that does not reap)."""
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def _wait_gone(procs: Iterable[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Poll until every process is gone or ``timeout`` passes; the ones still running."""
    left = list(procs)
    deadline = time.monotonic() + timeout
    while True:
        left = [proc for proc in left if not _gone(proc)]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)


def _signal_all(procs: Iterable[psutil.Process], kill: bool) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill() if kill else proc.terminate()


async def _ask_to_quit(instance: FoundInstance, answer_s: float) -> str | None:
    """None when the instance answered ``quit``; else why it did not."""
    try:
        await asyncio.wait_for(ipc.call(instance.socket, "quit"), answer_s)
    except TimeoutError:
        return f"no answer in {answer_s:g} s"
    except (HivetrayError, OSError) as exc:
        return first_line(exc)
    return None


async def quit_all(under: Path | None = None, answer_s: float = ANSWER_S,
                   exit_s: float = EXIT_S, term_s: float = TERM_S) -> list[QuitOutcome]:
    """Ask every instance to quit, all at once; then make sure each, and its workers, are gone."""
    instances = find_instances(under)
    families = {instance.pid: _family(instance.pid) for instance in instances}
    errors = await asyncio.gather(*(_ask_to_quit(i, answer_s) for i in instances))
    outcomes: list[QuitOutcome] = []
    for instance, error in zip(instances, errors, strict=True):
        family = families[instance.pid]
        left = await asyncio.to_thread(_wait_gone, family, exit_s)
        signalled = bool(left)
        if left:
            _signal_all(left, kill=False)
            left = await asyncio.to_thread(_wait_gone, left, term_s)
        if left:
            _signal_all(left, kill=True)
            left = await asyncio.to_thread(_wait_gone, left, term_s)
        outcomes.append(QuitOutcome(instance, error is None, error, signalled,
                                    tuple(proc.pid for proc in left)))
    return outcomes


async def run(under: Path | None = None) -> int:
    """The command: one line per instance on stdout; exit 1, with one line on stderr, when a
    process could not be stopped (another user's, say)."""
    outcomes = await quit_all(under)
    for outcome in outcomes:
        print(f"hivetray: {outcome.line()}", flush=True)
    survivors = [pid for outcome in outcomes for pid in outcome.survivors]
    if survivors:
        print(f"hivetray: could not stop pid {', '.join(map(str, survivors))}", file=sys.stderr)
        return 1
    return 0
