"""A real ``hivetray daemon`` for end-to-end tests, driven only through the command line.

Registered for every test module by the root conftest:
``start_daemon()`` starts one in the test's home and waits until ``hivetray status`` is
answered by it; afterwards every daemon is stopped (SIGTERM, then SIGKILL) and any worker it
ever started is killed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hivetray.paths import AppPaths
from tests.helpers.waiting import kill_quietly, wait_until

HIVETRAY = [sys.executable, "-m", "hivetray"]


def cli(*args: str, stdin: str | None = None, timeout: float = 30.0,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HIVETRAY, *args], input=stdin, capture_output=True, text=True,
                          env=env or os.environ.copy(), timeout=timeout, check=False)


def status(env: dict[str, str] | None = None) -> dict[str, Any]:
    result = cli("status", "--json", env=env)
    assert result.returncode == 0, result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def role_row(role: str, doc: dict[str, Any] | None = None) -> dict[str, Any]:
    rows: list[dict[str, Any]] = [row for row in (doc or status())["roles"]
                                   if row["role"] == role]
    assert len(rows) == 1
    return rows[0]


def one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    text = result.stderr.strip()
    assert text and "\n" not in text, text
    return text


def worker_pids(home: AppPaths, role: str = "chat") -> list[int]:
    """Every worker this home ever started for ``role``, from its log's start lines."""
    log = home.worker_log(role)
    text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
    return [int(pid) for pid in re.findall(r"worker pid (\d+) starting", text)]


@dataclass
class Daemon:
    proc: subprocess.Popen[bytes]
    stderr_path: Path
    home: AppPaths
    stdout_path: Path

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def stdout(self) -> str:
        return self.stdout_path.read_text(encoding="utf-8", errors="replace")

    def worker_pids(self, role: str = "chat") -> list[int]:
        return worker_pids(self.home, role)


StartDaemon = Callable[..., Daemon]


@pytest.fixture
def start_daemon(home: AppPaths, tmp_path: Path) -> Iterator[StartDaemon]:
    daemons: list[Daemon] = []

    def start(*args: str, env: dict[str, str] | None = None, new_session: bool = False,
              umask: int | None = None) -> Daemon:
        """``args`` go after ``hivetray daemon`` (``--api --port 0``)."""
        err = tmp_path / f"daemon-{len(daemons)}.stderr"
        out = tmp_path / f"daemon-{len(daemons)}.stdout"

        def before_exec() -> None:
            if umask is not None:
                os.umask(umask)

        with open(err, "wb") as stderr, open(out, "ab") as stdout:
            proc = subprocess.Popen([*HIVETRAY, "daemon", *args], stdout=stdout, stderr=stderr,
                                    env=env or os.environ.copy(), start_new_session=new_session,
                                    preexec_fn=before_exec)
        daemon = Daemon(proc, err, home, out)
        daemons.append(daemon)

        def answering() -> bool:
            assert proc.poll() is None, f"daemon exited early: {daemon.stderr()}"
            # not before the socket exists: a status without it would run a private pool
            # (which, for one, would keep a malformed config aside before the daemon could)
            return home.socket_path.exists() and status(env)["pid"] == proc.pid

        wait_until(answering, 20.0, interval=0.05, what="daemon answering status")
        return daemon

    yield start
    for daemon in daemons:
        if daemon.proc.poll() is None:
            daemon.proc.send_signal(signal.SIGTERM)
            try:
                daemon.proc.wait(10)
            except subprocess.TimeoutExpired:
                daemon.proc.kill()
                daemon.proc.wait(5)
        for role in ("chat", "vision", "embed", "rerank"):
            for pid in daemon.worker_pids(role):
                kill_quietly(pid)
