"""Recorded worker pids, so a launch after a crash can stop workers an old instance left.

Only the instance that owns the home (holds its lock, see ``hivetray.homelock``) writes this
record and sweeps it; private pools (a CLI command with no instance reachable, the self-test)
never touch it. Each entry holds the worker's pid and start time *and* its app's pid and start
time: a pid alone may have been reused by an unrelated process since, and a worker whose app
is still alive belongs to that app, not to us — we must never kill either.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import psutil

from hivetray.config import write_atomic

log = logging.getLogger(__name__)


def create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, ValueError):
        return None


def same_process(pid: Any, started: Any) -> psutil.Process | None:
    """The live process ``pid`` if it is the one that started at ``started``, else None (a
    zombie nobody reaped — under an init that does not reap — is gone, not alive)."""
    try:
        proc = psutil.Process(int(pid))
        if (started is not None and abs(proc.create_time() - float(started)) < 0.01
                and proc.status() != psutil.STATUS_ZOMBIE):
            return proc
    except (psutil.Error, TypeError, ValueError):
        pass
    return None


class WorkerRecord:
    """``workers.json``: one entry per live worker of the owning instance, keyed by pid."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._live: dict[str, dict[str, Any]] = {}
        self._app = {"app_pid": os.getpid(), "app_create_time": create_time(os.getpid())}

    def add(self, role: str, pid: int) -> None:
        self._live[str(pid)] = {"role": role, "pid": pid, "create_time": create_time(pid),
                                **self._app}
        self._write()

    def remove(self, pid: int) -> None:
        if self._live.pop(str(pid), None) is not None:
            self._write()

    def _write(self) -> None:
        try:
            write_atomic(self.path, json.dumps(self._live, indent=1))
        except OSError:
            log.warning("could not write %s; leftover workers may not be swept after a crash",
                        self.path, exc_info=True)

    def sweep_leftovers(self, grace_s: float = 2.0) -> list[int]:
        """Stop recorded workers whose app is gone but who still run; return their pids.

        Called by the home's owner at launch, before any worker of its own exists.
        """
        try:
            recorded = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            recorded = {}
        victims: list[psutil.Process] = []
        for entry in recorded.values() if isinstance(recorded, dict) else []:
            if not isinstance(entry, dict):
                continue
            if same_process(entry.get("app_pid"), entry.get("app_create_time")) is not None:
                continue  # its app is alive: not a leftover (and not ours to judge)
            proc = same_process(entry.get("pid"), entry.get("create_time"))
            if proc is not None and proc.pid != os.getpid():
                victims.append(proc)
        for proc in victims:
            try:
                proc.terminate()
                proc.resume()  # a stopped leftover acts on SIGTERM only once continued
            except psutil.Error:
                pass
        _gone, alive = psutil.wait_procs(victims, timeout=grace_s)
        for proc in alive:
            try:
                proc.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(alive, timeout=grace_s)
        self._live.clear()
        self._write()
        return [p.pid for p in victims]
