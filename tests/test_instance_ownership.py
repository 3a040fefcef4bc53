"""One owner per home: a second launch, concurrent private pools and a status during start-up
never hurt a running instance; only the owner sweeps, and only workers whose app is gone.
Real daemons, real CLI processes, real workers."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from hivetray.homelock import HomeLock, read_owner
from hivetray.paths import AppPaths
from hivetray.pool import WorkerPool
from hivetray.pool.sweep import create_time
from tests.conftest import make_config
from tests.helpers.daemon import HIVETRAY, StartDaemon, cli, one_line_error, role_row, status
from tests.helpers.waiting import kill_quietly, process_gone

pytestmark = pytest.mark.real


def chat_ok(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = cli("chat", *args, env=env)
    assert result.returncode == 0, result.stderr
    return result


def test_a_second_daemon_refuses_at_once_and_leaves_the_first_ones_workers_alone(
        start_daemon: StartDaemon, write_config: Any, tiny_models: dict[str, Path]) -> None:
    write_config(make_config(tiny_models["chat"]))
    first = start_daemon()
    chat_ok("hi", "--max-tokens", "2")
    worker = role_row("chat")["pid"]
    started = time.monotonic()
    second = subprocess.run([*HIVETRAY, "daemon"], capture_output=True, text=True, timeout=30,
                            check=False)
    message = one_line_error(second, 1)
    assert time.monotonic() - started < 10.0  # "at once": no pool, no socket wait
    assert f"pid {first.proc.pid}" in message and "hivetray quit" in message
    row = role_row("chat")
    assert row["pid"] == worker and row["state"] == "ready" and row["crashes_in_window"] == 0
    assert not process_gone(worker) and first.proc.poll() is None


def test_two_private_pools_at_once_do_not_kill_each_others_workers(
        home: AppPaths, write_config: Any, tiny_models: dict[str, Path]) -> None:
    write_config(make_config(tiny_models["chat"]))
    for _round in range(3):
        procs = [subprocess.Popen([*HIVETRAY, "chat", "hello", "--max-tokens", "64"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
        results = [proc.communicate(timeout=60) for proc in procs]
        assert [proc.returncode for proc in procs] == [0, 0], results
    assert not home.workers_record.exists()  # private pools never write the owner's record


def test_a_status_while_the_instance_starts_keeps_its_worker_record(
        home: AppPaths, write_config: Any, tiny_models: dict[str, Path]) -> None:
    """The owner holds the lock and has a worker, but no socket yet: a CLI status runs a
    private pool, which must not wipe the owner's record (a later crash would leave leftovers
    nobody sweeps)."""
    config = make_config(tiny_models["chat"])
    write_config(config)
    lock = HomeLock(home)
    lock.acquire()
    pool = WorkerPool(config, home)

    async def scenario() -> dict[str, Any]:
        await pool.start()
        try:
            await pool.ensure_started("chat")
            done = await asyncio.to_thread(cli, "status", "--json")
            assert done.returncode == 0, done.stderr
            assert json.loads(done.stdout)["pid"] != os.getpid()  # answered privately
            recorded: dict[str, Any] = json.loads(home.workers_record.read_text("utf-8"))
            return recorded
        finally:
            await pool.shutdown()
            lock.release()

    recorded = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert [entry["role"] for entry in recorded.values()] == ["chat"]
    assert [entry["app_pid"] for entry in recorded.values()] == [os.getpid()]


def test_the_owner_never_sweeps_a_worker_whose_app_is_alive(
        home: AppPaths, tiny_models: dict[str, Path]) -> None:
    """A recorded worker (pid and start time right) whose app still runs is that app's."""
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        home.workers_record.write_text(json.dumps({str(bystander.pid): {
            "role": "chat", "pid": bystander.pid, "create_time": create_time(bystander.pid),
            "app_pid": os.getpid(), "app_create_time": create_time(os.getpid())}}), "utf-8")
        # its app is this test process, alive: a new owner (another process) must skip it
        code = ("import asyncio, sys\n"
                "from hivetray.paths import app_paths\n"
                "from hivetray.pool import WorkerPool\n"
                "from hivetray.config import default_config\n"
                "pool = WorkerPool(default_config(), app_paths())\n"
                "async def main():\n"
                "    await pool.start(); await pool.shutdown()\n"
                "asyncio.run(main())\n"
                "print([e.kind for e in pool.events.recent()])\n")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=30, check=False)
        assert done.returncode == 0, done.stderr
        assert "sweep" not in done.stdout
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait(5)


def test_the_cli_finds_the_instance_through_its_owner_record(
        start_daemon: StartDaemon, write_config: Any, tiny_models: dict[str, Path],
        tmp_path: Path) -> None:
    """A shell whose XDG_RUNTIME_DIR differs from the instance's still reaches it."""
    write_config(make_config(tiny_models["chat"]))
    daemon = start_daemon()
    other = tmp_path / "other-runtime"
    other.mkdir(mode=0o700)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(other)}
    assert status(env)["pid"] == daemon.proc.pid
    chat_ok("hi", "--max-tokens", "2", env=env)
    assert role_row("chat")["requests"] == 1  # served by the daemon's worker


def test_the_owner_record_names_the_running_instance(
        start_daemon: StartDaemon, home: AppPaths) -> None:
    daemon = start_daemon()
    owner = read_owner(home)
    assert owner is not None and owner.pid == daemon.proc.pid
    assert owner.socket == str(home.socket_path)
    assert cli("quit").returncode == 0
    assert daemon.proc.wait(10) == 0
    assert read_owner(home) is None  # released on quit


def test_a_daemon_killed_hard_leaves_the_home_to_the_next_launch(
        start_daemon: StartDaemon, write_config: Any, tiny_models: dict[str, Path],
        home: AppPaths) -> None:
    write_config(make_config(tiny_models["chat"]))
    first = start_daemon()
    chat_ok("hi", "--max-tokens", "2")
    worker = role_row("chat")["pid"]
    first.proc.kill()  # SIGKILL: the kernel drops the lock
    first.proc.wait(5)
    try:
        second = start_daemon()  # not refused: the lock died with the first daemon
        assert status()["pid"] == second.proc.pid
    finally:
        kill_quietly(worker)
