"""A real daemon against its terminal's signals, a loose umask, and prompts that must stay out
of every log: workers ignore the process group's Ctrl-C, everything under the home is private,
no prompt text is written anywhere but the user's own history."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from hivetray.config import Config, RoleConfig
from hivetray.paths import AppPaths
from tests.conftest import make_config
from tests.helpers.daemon import HIVETRAY, StartDaemon, cli, role_row
from tests.helpers.waiting import process_gone, wait_until

pytestmark = pytest.mark.real


def test_ctrl_c_to_the_daemons_process_group_is_a_graceful_quit(
        start_daemon: StartDaemon, write_config: Any, tiny_models: dict[str, Path]) -> None:
    """The terminal sends SIGINT to the whole foreground group; the workers must not take it:
    the daemon stops them itself (no crash, no pinned respawn while quitting)."""
    write_config(make_config(tiny_models["chat"], pinned=True))
    daemon = start_daemon(new_session=True)  # its own group, like a shell's foreground job
    row = wait_until(lambda: (r := role_row("chat"))["state"] == "ready" and r, 20.0,
                     what="pinned chat worker ready")
    worker = row["pid"]
    os.killpg(daemon.proc.pid, signal.SIGINT)
    assert daemon.proc.wait(20) == 0
    assert process_gone(worker)
    log = daemon.home.worker_log("chat").read_text(encoding="utf-8", errors="replace")
    assert "worker stopping (asked to shut down)" in log  # stopped by the app, gracefully
    assert "KeyboardInterrupt" not in log
    assert daemon.worker_pids() == [worker]  # the pinned role was not respawned
    app_log = daemon.home.app_log.read_text(encoding="utf-8")
    assert '"kind": "crash"' not in app_log


def test_a_service_managers_sigterm_to_the_group_is_a_graceful_quit(
        start_daemon: StartDaemon, write_config: Any, tiny_models: dict[str, Path]) -> None:
    write_config(make_config(tiny_models["chat"], pinned=True))
    daemon = start_daemon(new_session=True)
    row = wait_until(lambda: (r := role_row("chat"))["state"] == "ready" and r, 20.0,
                     what="pinned chat worker ready")
    os.killpg(daemon.proc.pid, signal.SIGTERM)
    assert daemon.proc.wait(20) == 0
    assert process_gone(row["pid"])
    assert '"kind": "crash"' not in daemon.home.app_log.read_text(encoding="utf-8")
    assert daemon.worker_pids() == [row["pid"]]


def private_violations(root: Path) -> list[str]:
    """Every file or folder under ``root`` that another user could read, or enter."""
    found: list[str] = []
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(folder) / name
            mode = stat.S_IMODE(path.lstat().st_mode)
            if mode & 0o077:
                found.append(f"{path} {mode:o}")
    return found


def test_everything_hivetray_writes_is_private_whatever_the_umask(
        start_daemon: StartDaemon, write_config: Any, tiny_models: dict[str, Path],
        home: AppPaths) -> None:
    write_config(make_config(tiny_models["chat"]))
    start_daemon(umask=0o022)
    assert cli("chat", "hi", "--max-tokens", "2").returncode == 0
    assert cli("quit").returncode == 0
    assert private_violations(Path(os.environ["HIVETRAY_HOME"])) == []
    sock_dir = home.socket_path.parent
    assert stat.S_IMODE(sock_dir.stat().st_mode) == 0o700


def test_a_private_cli_pool_writes_private_files_whatever_the_umask(
        home: AppPaths, write_config: Any, tiny_models: dict[str, Path]) -> None:
    write_config(make_config(tiny_models["chat"]))
    done = subprocess.run([*HIVETRAY, "chat", "hi", "--max-tokens", "2"], capture_output=True,
                          text=True, timeout=60, check=False, preexec_fn=lambda: os.umask(0o022))
    assert done.returncode == 0, done.stderr
    assert private_violations(Path(os.environ["HIVETRAY_HOME"])) == []


def test_no_prompt_text_reaches_any_log_event_or_error_tail(
        start_daemon: StartDaemon, write_config: Any, tiny_models: dict[str, Path],
        home: AppPaths, tmp_path: Path) -> None:
    """Verbose llama.cpp, a vision chat (whose handler prints the rendered conversation) and
    a crash that copies the log tail into the app log and the events: the user's words must
    appear nowhere under the home."""
    from PIL import Image

    config = make_config(tiny_models["chat"])
    roles = dict(config.roles)
    roles["vision"] = RoleConfig(model=str(tiny_models["chat"]), mmproj=str(tiny_models["mmproj"]),
                                 n_ctx=256, n_threads=1)
    write_config(Config(roles=roles, pool=config.pool, hotkeys=config.hotkeys))
    start_daemon()
    image = tmp_path / "red.png"
    Image.new("RGB", (32, 32), (200, 30, 30)).save(image)
    secret_chat, secret_vision = "zebra-quartz-7341", "walrus-onyx-9027"
    assert cli("chat", f"tell me about {secret_chat}", "--max-tokens", "3").returncode == 0
    done = cli("chat", f"what is {secret_vision}", "--image", str(image), "--max-tokens", "3")
    assert done.returncode == 0, done.stderr
    for role in ("chat", "vision"):  # crash reports copy the worker log's tail around
        os.kill(role_row(role)["pid"], signal.SIGKILL)
        wait_until(lambda role=role: role_row(role)["pid"] is None, 5.0,  # type: ignore[misc]
                   what=f"{role} crash noticed")
    events = cli("events", "--limit", "500").stdout
    status_text = cli("status").stdout
    for secret in (secret_chat, secret_vision):
        assert secret not in events and secret not in status_text
        for path in Path(os.environ["HIVETRAY_HOME"]).rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), f"{secret} found in {path}"
    vision_log = home.worker_log("vision").read_text(encoding="utf-8", errors="replace")
    assert "clip" in vision_log.lower() or "mtmd" in vision_log.lower()  # diagnostics kept
