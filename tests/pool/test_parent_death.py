"""Workers never outlive the app: the parent-death watchdog, and the launch-time sweep of
workers left by an instance that died while its watchdog could not run."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from hivetray.paths import AppPaths
from hivetray.pool import WorkerPool
from hivetray.pool.events import EventKind
from tests.conftest import make_config
from tests.helpers.waiting import is_stopped, kill_quietly, process_gone, wait_until

pytestmark = pytest.mark.real
HOST = Path(__file__).resolve().parent.parent / "helpers" / "pool_host.py"


def read_json_line(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise AssertionError(f"the pool host printed nothing within {timeout:g} s")
    line = proc.stdout.readline()
    if not line:
        raise AssertionError(f"the pool host exited with {proc.wait()} before printing")
    doc: dict[str, Any] = json.loads(line)
    return doc


PR_SET_CHILD_SUBREAPER = 36


@pytest.fixture(autouse=True)
def _adopt_orphans() -> Iterator[None]:
    """Become the subreaper while a test runs: workers orphaned by a killed host become our
    children, so they are reaped here instead of lingering as zombies under an init that
    does not reap (as in some containers)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    yield
    libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def reap(pid: int) -> None:
    kill_quietly(pid)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


@pytest.fixture
def start_host(home: AppPaths, tiny_models: dict[str, Path]) -> Iterator[Any]:
    """Start pool hosts; afterwards kill the hosts and any worker they reported."""
    started: list[tuple[subprocess.Popen[str], list[int]]] = []

    def start(*flags: str) -> tuple[subprocess.Popen[str], list[int]]:
        proc = subprocess.Popen([sys.executable, str(HOST), str(tiny_models["chat"]), *flags],
                                stdout=subprocess.PIPE, text=True, env=os.environ.copy())
        workers: list[int] = []
        started.append((proc, workers))
        doc = read_json_line(proc, 20.0)
        assert doc["host"] == proc.pid
        workers.extend(doc["workers"])
        return proc, workers

    yield start
    for proc, workers in started:
        proc.kill()
        proc.wait(5)
        assert proc.stdout is not None
        proc.stdout.close()
        for pid in workers:
            reap(pid)


def test_workers_exit_within_two_seconds_when_the_app_is_sigkilled(
        start_host: Any, home: AppPaths) -> None:
    host, workers = start_host()
    assert len(workers) == 1
    for pid in workers:
        assert psutil.Process(pid).ppid() == host.pid
    host.kill()  # SIGKILL: no cleanup code in the app can run
    host.wait(5)
    killed = time.monotonic()
    wait_until(lambda: all(process_gone(pid) for pid in workers), 2.0,
               what="every worker gone after the app died")
    assert time.monotonic() - killed < 2.0
    log = home.worker_log("chat").read_text(encoding="utf-8", errors="replace")
    # it stopped by itself (watchdog, or EOF on its channels), nobody had to kill it
    assert ("the app process is gone" in log) or ("worker stopping" in log)


def test_the_watchdog_alone_ends_a_worker_frozen_in_its_load_when_the_app_is_sigkilled(
        start_host: Any, home: AppPaths) -> None:
    """A loading worker reads neither pipe (no EOF can end it) and ignores shutdown: only the
    parent-death watchdog thread can notice the app is gone."""
    host, workers = start_host("--hang-load")
    (worker,) = workers
    host.kill()
    host.wait(5)
    wait_until(lambda: process_gone(worker), 2.0, what="the frozen worker gone after the app died")
    log = home.worker_log("chat").read_text(encoding="utf-8", errors="replace")
    assert "the app process is gone" in log  # the watchdog's last words, nobody else's


def test_launch_sweeps_a_worker_left_by_a_crashed_instance(
        start_host: Any, home: AppPaths, tiny_models: dict[str, Path]) -> None:
    host, workers = start_host()
    (worker,) = workers
    (recorded,) = json.loads(home.workers_record.read_text(encoding="utf-8")).values()
    assert recorded["role"] == "chat" and recorded["pid"] == worker
    assert recorded["app_pid"] == host.pid
    # a hung worker's watchdog cannot run, so killing the app leaves it behind
    os.kill(worker, signal.SIGSTOP)
    wait_until(lambda: is_stopped(worker), 2.0, what="worker stopped")
    host.kill()
    host.wait(5)
    assert not process_gone(worker)

    pool = WorkerPool(make_config(tiny_models["chat"]), home)

    async def launch() -> list[int]:
        await pool.start()
        try:
            return [int(pid) for e in pool.events.recent() if e.kind == EventKind.SWEEP
                    for pid in e.data["pids"]]
        finally:
            await pool.shutdown()

    started = time.monotonic()
    swept = asyncio.run(asyncio.wait_for(launch(), 15))
    assert swept == [worker]
    wait_until(lambda: process_gone(worker), 1.0, what="leftover worker gone")
    assert time.monotonic() - started < 6.0  # SIGTERM, then SIGKILL after 2 s
    assert json.loads(home.workers_record.read_text(encoding="utf-8")) == {}


def test_launch_never_kills_a_recorded_pid_that_is_now_another_process(
        home: AppPaths, tiny_models: dict[str, Path]) -> None:
    """A recorded pid whose start time does not match is someone else's process now."""
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        home.workers_record.write_text(json.dumps({"chat": {
            "pid": bystander.pid, "create_time": psutil.Process(bystander.pid).create_time() - 5,
            "app_pid": 1}}), encoding="utf-8")
        pool = WorkerPool(make_config(tiny_models["chat"]), home)

        async def launch() -> None:
            await pool.start()
            await pool.shutdown()

        asyncio.run(asyncio.wait_for(launch(), 15))
        assert [e for e in pool.events.recent() if e.kind == EventKind.SWEEP] == []
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait(5)
