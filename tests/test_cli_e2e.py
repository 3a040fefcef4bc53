"""End to end through the command line only: `hivetray daemon` in a subprocess, driven by
`python -m hivetray ...` calls, with real workers running the tiny chat model."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from hivetray.config import PoolConfig
from hivetray.paths import AppPaths
from tests.conftest import make_config
from tests.helpers.daemon import StartDaemon, cli, one_line_error, role_row, status
from tests.helpers.waiting import is_stopped, kill_quietly, process_gone, wait_until

pytestmark = pytest.mark.real
STATUS_KEYS = {"role", "state", "pid", "model", "in_flight", "crashes_in_window", "retry_in_s",
               "last_error", "rss_bytes", "requests", "tokens_per_s",
               "mem_estimate_bytes", "engine", "url", "rtt_ms"}
def chat_row(doc: dict[str, Any] | None = None) -> dict[str, Any]:
    return role_row("chat", doc)


def chat_row_without_worker() -> dict[str, Any] | None:
    row = chat_row()
    return row if row["pid"] is None else None


def chat_ok(*args: str) -> subprocess.CompletedProcess[str]:
    result = cli("chat", *args)
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(autouse=True)
def _no_builtin_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Defaults mean an unconfigured chat role here, not the built-in demo model."""
    monkeypatch.setenv("HIVETRAY_NO_BUILTIN_MODEL", "1")


def test_status_json_fields_and_lazy_spawn(
        start_daemon: StartDaemon, write_config: Any,
        tiny_models: dict[str, Path]) -> None:
    write_config(make_config(tiny_models["chat"]))
    daemon = start_daemon()
    doc = status()
    assert set(doc) == {"pid", "roles"} and doc["pid"] == daemon.proc.pid
    assert [row["role"] for row in doc["roles"]] == ["chat", "vision", "embed", "rerank"]
    assert all(set(row) == STATUS_KEYS for row in doc["roles"])
    assert {row["state"] for row in doc["roles"][1:]} == {"unconfigured"}
    before = chat_row(doc)
    assert before["state"] == "stopped" and before["pid"] is None
    assert before["model"] == str(tiny_models["chat"]) and before["requests"] == 0
    assert before["rss_bytes"] is None and before["tokens_per_s"] is None

    assert chat_ok("hello", "--max-tokens", "4").stdout.strip()
    after = chat_row()
    assert isinstance(after["pid"], int) and after["state"] == "ready"
    assert psutil.Process(after["pid"]).ppid() == daemon.proc.pid
    assert after["requests"] == 1 and after["in_flight"] == 0
    assert after["rss_bytes"] > 0 and after["tokens_per_s"] > 0
    assert after["crashes_in_window"] == 0
    assert after["retry_in_s"] is None and after["last_error"] is None
    chat_ok("again", "--max-tokens", "2")
    assert chat_row()["pid"] == after["pid"]  # reused, not respawned


def test_chat_json_lines_and_prompt_from_stdin(
        start_daemon: StartDaemon, write_config: Any,
        tiny_models: dict[str, Path]) -> None:
    write_config(make_config(tiny_models["chat"]))
    start_daemon()
    lines = [json.loads(line) for line in
             chat_ok("hi", "--json", "--max-tokens", "20").stdout.splitlines()]
    *chunks, done = lines
    assert chunks and all(set(c) == {"text"} and isinstance(c["text"], str) for c in chunks)
    assert "".join(c["text"] for c in chunks)
    assert set(done) == {"done", "usage", "finish_reason"} and done["done"] is True
    assert done["usage"]["completion_tokens"] == 20 and done["usage"]["prompt_tokens"] > 0
    assert done["finish_reason"] == "length"

    def prompt_tokens(prompt: str) -> int:
        result = cli("chat", "--json", "--max-tokens", "2", stdin=prompt)
        assert result.returncode == 0, result.stderr
        return int(json.loads(result.stdout.splitlines()[-1])["usage"]["prompt_tokens"])

    short, longer = prompt_tokens("a"), prompt_tokens("a much longer prompt read from stdin")
    assert longer > short  # the stdin text really is the prompt
    one_line_error(cli("chat", stdin=""), 2)


def test_four_kills_open_the_breaker_and_retry_closes_it(
        start_daemon: StartDaemon, write_config: Any,
        tiny_models: dict[str, Path]) -> None:
    write_config(make_config(tiny_models["chat"]))
    start_daemon()
    for n in range(1, 5):
        chat_ok("hi", "--max-tokens", "2")
        pid = chat_row()["pid"]
        os.kill(pid, signal.SIGKILL)
        row = wait_until(chat_row_without_worker, 3.0, what=f"crash {n} noticed")
    assert row is not None
    assert row["state"] == "cooling_down" and row["crashes_in_window"] == 4
    assert 0 < row["retry_in_s"] <= 60 and "SIGKILL" in row["last_error"]

    started = time.monotonic()
    refused = cli("chat", "hi")
    assert time.monotonic() - started < 5.0
    message = one_line_error(refused, 1)
    assert "retrying in" in message and "crashed 4 times" in message
    assert refused.stdout == "" and chat_row()["pid"] is None

    retried = cli("retry", "chat")
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout.strip() == "chat: stopped"
    chat_ok("hi", "--max-tokens", "2")
    row = chat_row()
    assert row["state"] == "ready" and row["crashes_in_window"] == 0 and row["pid"]


def test_a_worker_killed_while_idle_leaves_status_within_a_second(
        start_daemon: StartDaemon, write_config: Any,
        tiny_models: dict[str, Path]) -> None:
    write_config(make_config(tiny_models["chat"]))
    start_daemon()
    chat_ok("hi", "--max-tokens", "2")
    pid = chat_row()["pid"]
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    while True:  # poll; the status call that first shows it gone must have started < 1 s
        asked = time.monotonic()
        row = chat_row()
        if row["pid"] is None:
            break
        assert asked - killed < 1.0, "the dead worker was still listed after 1 s"
    assert asked - killed < 1.0
    assert row["state"] == "stopped" and row["crashes_in_window"] == 1


def test_quit_stops_every_worker_and_exits_zero(
        start_daemon: StartDaemon, write_config: Any,
        tiny_models: dict[str, Path]) -> None:
    write_config(make_config(tiny_models["chat"]))
    daemon = start_daemon()
    chat_ok("hi", "--max-tokens", "2")
    pid = chat_row()["pid"]
    started = time.monotonic()
    assert cli("quit").returncode == 0
    assert process_gone(pid)  # quit answers once every worker has stopped
    assert daemon.proc.wait(5) == 0
    assert time.monotonic() - started < 2.0
    assert not daemon.home.socket_path.exists()
    one_line_error(cli("quit"), 3)  # nobody left to quit


def test_quit_with_a_stopped_worker_finishes_within_grace_plus_six_seconds(
        start_daemon: StartDaemon, write_config: Any,
        tiny_models: dict[str, Path]) -> None:
    write_config(make_config(tiny_models["chat"], pool=PoolConfig(shutdown_grace_s=1.0)))
    daemon = start_daemon()
    chat_ok("hi", "--max-tokens", "2")
    pid = chat_row()["pid"]
    os.kill(pid, signal.SIGSTOP)
    wait_until(lambda: is_stopped(pid), 2.0, what="worker stopped")
    started = time.monotonic()
    quit_result = cli("quit", timeout=20)
    assert daemon.proc.wait(10) == 0
    assert quit_result.returncode == 0, quit_result.stderr
    assert time.monotonic() - started <= 1.0 + 6.0
    assert process_gone(pid)


@pytest.mark.parametrize("args", [["retry", "chat"], ["restart", "chat"], ["stop", "chat"],
                                  ["quit"], ["events"], ["toggle-chat"]])
def test_commands_needing_an_instance_exit_3_without_one(
        home: AppPaths, args: list[str]) -> None:
    message = one_line_error(cli(*args), 3)
    assert "no Hivetray instance is running" in message


def test_chat_and_status_work_without_an_instance(
        home: AppPaths, write_config: Any, tiny_models: dict[str, Path]) -> None:
    write_config(make_config(tiny_models["chat"]))
    doc = status()
    assert all(set(row) == STATUS_KEYS for row in doc["roles"])
    assert chat_row(doc)["state"] == "stopped" and chat_row(doc)["pid"] is None
    result = cli("chat", "hi", "--json", "--max-tokens", "5")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["usage"]["completion_tokens"] == 5
    log = home.worker_log("chat").read_text(encoding="utf-8", errors="replace")
    (pid,) = [int(p) for p in re.findall(r"worker pid (\d+) starting", log)]
    try:
        assert process_gone(pid)  # the private pool stopped its worker before exiting
        # and it left the home's worker record alone: that belongs to the home's owner
        assert not home.workers_record.exists()
    finally:
        kill_quietly(pid)


def test_a_malformed_config_is_reported_kept_aside_and_the_daemon_runs(
        start_daemon: StartDaemon, home: AppPaths) -> None:
    home.config_file.write_text('[pool]\ncooldown_s = 5\n[roles.chat\nmodel = "x.gguf"\n',
                                encoding="utf-8")
    daemon = start_daemon()
    stderr = daemon.stderr()
    assert "line 3" in stderr and str(home.config_file) in stderr
    backups = list(home.config_dir.glob("config.toml.bad-*"))
    assert len(backups) == 1 and "[roles.chat\n" in backups[0].read_text(encoding="utf-8")
    assert not home.config_file.exists()
    row = chat_row()
    assert row["state"] == "unconfigured" and daemon.proc.poll() is None


def test_no_argument_without_a_display_says_to_use_the_daemon(home: Any) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    done = subprocess.run([sys.executable, "-m", "hivetray"], env=env, capture_output=True,
                          text=True, timeout=30, check=False)
    assert done.returncode == 1
    assert "no graphical session" in done.stderr and "hivetray daemon" in done.stderr
