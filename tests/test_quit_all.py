"""``hivetray quit --all-homes`` (the uninstaller's step): real ``hivetray daemon`` processes
with different ``HIVETRAY_HOME`` (and runtime folders), each with a pinned tiny chat model, so a
live worker each; the command run from yet another home quits them all, workers included.

The command really quits every instance of this user; these tests confine it with the hidden
``--only-under`` to their own folder, so instances of other test runs on the machine are left
alone."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hivetray import quitall
from hivetray.config import save_config
from tests.conftest import make_config
from tests.helpers.daemon import cli
from tests.helpers.waiting import kill_quietly, process_gone, wait_until

pytestmark = pytest.mark.real
HIVETRAY = [sys.executable, "-m", "hivetray"]


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    env: dict[str, str]
    socket: Path
    worker: int


def environment(tmp_path: Path, name: str, runtime: str) -> dict[str, str]:
    run = tmp_path / runtime
    run.mkdir(mode=0o700, exist_ok=True)
    return {**os.environ, "HIVETRAY_HOME": str(tmp_path / name), "XDG_RUNTIME_DIR": str(run),
            "HIVETRAY_NO_BUILTIN_MODEL": "1"}


@pytest.fixture
def start(tmp_path: Path, tiny_models: dict[str, Path]) -> Iterator[Callable[..., Running]]:
    """``start(name, runtime)``: a daemon in home ``name`` whose chat worker is up."""
    started: list[Running] = []

    def run(name: str, runtime: str = "run") -> Running:
        env = environment(tmp_path, name, runtime)
        config = Path(env["HIVETRAY_HOME"]) / "config" / "config.toml"
        config.parent.mkdir(parents=True)
        save_config(config, make_config(tiny_models["chat"], pinned=True))
        with open(tmp_path / f"{name}.log", "wb") as log:
            proc = subprocess.Popen([*HIVETRAY, "daemon"], stdout=log, stderr=log, env=env)

        def chat_ready() -> dict[str, Any] | None:
            assert proc.poll() is None, (tmp_path / f"{name}.log").read_text()
            result = cli("status", "--json", env=env)
            if result.returncode != 0:
                return None
            doc: dict[str, Any] = json.loads(result.stdout)
            chat = doc["roles"][0]
            return chat if doc["pid"] == proc.pid and chat["state"] == "ready" else None

        chat = wait_until(chat_ready, 60, interval=0.1, what=f"daemon {name} with its worker")
        sockets = list((Path(env["XDG_RUNTIME_DIR"]) / f"hivetray-{os.getuid()}").glob("*.sock"))
        running = Running(proc, env, next(s for s in sockets if _listening(proc.pid, s)),
                          chat["pid"])
        started.append(running)
        return running

    yield run
    for running in started:
        if running.proc.poll() is None:
            running.proc.kill()
        running.proc.wait(10)
        kill_quietly(running.worker)


def _listening(pid: int, socket: Path) -> bool:
    return any(found.pid == pid and found.socket == socket
               for found in quitall.find_instances(socket.parent))


def test_quit_all_homes_quits_every_instance_and_its_workers(
        start: Callable[..., Running], tmp_path: Path) -> None:
    first = start("home-a")
    second = start("home-b")  # same runtime folder, another home: another socket
    third = start("home-c", runtime="other-run")  # another XDG_RUNTIME_DIR too
    everyone = [first, second, third]
    # found without any filter, whatever their homes (other runs' instances may be there too)
    found = {(f.pid, f.socket) for f in quitall.find_instances()}
    assert {(r.proc.pid, r.socket) for r in everyone} <= found
    # the plain `quit` of yet another home reaches none of them
    elsewhere = environment(tmp_path, "home-d", "run")
    assert cli("quit", env=elsewhere).returncode == 3
    result = cli("quit", "--all-homes", "--only-under", str(tmp_path), env=elsewhere,
                 timeout=60)
    assert result.returncode == 0, result.stderr
    for running in everyone:
        assert running.proc.wait(15) == 0  # a clean quit, not a kill
        assert f"hivetray: pid {running.proc.pid} ({running.socket}): quit" in result.stdout
    wait_until(lambda: all(process_gone(r.worker) for r in everyone), 10,
               what="every instance's worker is gone")
    assert result.stdout.count("\n") == 3 and not result.stderr


def test_an_instance_that_does_not_answer_is_killed_with_its_worker(
        start: Callable[..., Running], tmp_path: Path) -> None:
    hung = start("home-hung")
    fine = start("home-fine")
    hung.proc.send_signal(signal.SIGSTOP)  # alive, but answers nothing and ignores SIGTERM
    try:
        outcomes = asyncio.run(quitall.quit_all(tmp_path, answer_s=1.0, exit_s=1.0, term_s=1.0))
    finally:
        if hung.proc.poll() is None:
            hung.proc.send_signal(signal.SIGCONT)
    by_pid = {outcome.instance.pid: outcome for outcome in outcomes}
    assert set(by_pid) == {hung.proc.pid, fine.proc.pid}
    assert by_pid[fine.proc.pid].answered and not by_pid[fine.proc.pid].signalled
    stuck = by_pid[hung.proc.pid]
    assert not stuck.answered and stuck.error == "no answer in 1 s"
    assert stuck.signalled and stuck.survivors == ()
    assert hung.proc.wait(5) == -signal.SIGKILL
    assert fine.proc.wait(5) == 0
    wait_until(lambda: process_gone(hung.worker) and process_gone(fine.worker), 10,
               what="both workers are gone")


def test_nothing_running_is_success(tmp_path: Path) -> None:
    result = cli("quit", "--all-homes", "--only-under", str(tmp_path / "none"))
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    usage = cli("quit", "--only-under", str(tmp_path))
    assert usage.returncode == 2 and usage.stderr.strip() == \
        "hivetray: --only-under needs --all-homes"


def test_only_instance_sockets_count() -> None:
    uid = os.getuid()
    assert quitall.is_instance_socket(f"/run/user/{uid}/hivetray-{uid}/0a1b.sock", uid)
    assert quitall.is_instance_socket(f"/tmp/hivetray-{uid}/default.sock", uid)
    assert not quitall.is_instance_socket(f"/tmp/hivetray-{uid + 1}/default.sock", uid)
    assert not quitall.is_instance_socket(f"/tmp/hivetray-{uid}/endpoint.json", uid)
    assert not quitall.is_instance_socket("\0hivetray-abstract", uid)
    assert not quitall.is_instance_socket("", uid)
