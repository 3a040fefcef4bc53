"""Recorded worker pids, so a launch after a crash can stop workers an old instance left.

The record holds each worker's pid *and* its process start time: a pid alone may have been
reused by an unrelated process since, and we must never kill that.
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


def _create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, ValueError):
        return None


class WorkerRecord:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._live: dict[str, dict[str, Any]] = {}

    def update(self, role: str, pid: int | None) -> None:
        if pid is None:
            self._live.pop(role, None)
        else:
            self._live[role] = {"pid": pid, "create_time": _create_time(pid),
                                "app_pid": os.getpid()}
        try:
            write_atomic(self.path, json.dumps(self._live, indent=1))
        except OSError:
            log.warning("could not write %s; leftover workers may not be swept after a crash",
                        self.path, exc_info=True)

    def sweep_leftovers(self, grace_s: float = 2.0) -> list[int]:
        """Stop workers recorded by a previous instance that are still running; return pids."""
        try:
            recorded = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        victims: list[psutil.Process] = []
        for entry in recorded.values() if isinstance(recorded, dict) else []:
            try:
                pid, started = int(entry["pid"]), entry.get("create_time")
                if entry.get("app_pid") == os.getpid():
                    continue
                proc = psutil.Process(pid)
                if started is not None and abs(proc.create_time() - float(started)) < 0.01:
                    victims.append(proc)
            except (psutil.Error, KeyError, TypeError, ValueError):
                continue
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
        write_atomic(self.path, "{}")
        return [p.pid for p in victims]
