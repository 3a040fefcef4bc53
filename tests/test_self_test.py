"""``hivetray self-test`` in normal (non-frozen) mode: ``python -m hivetray self-test`` against the
tiny generated models, all four roles configured, through the real spawn path.

The frozen build runs the same command in ``packaging/linux/check.sh``.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hivetray import __version__, buildinfo
from hivetray.config import Config, PoolConfig, RoleConfig, default_config, save_config
from hivetray.paths import AppPaths
from hivetray.selftest import tiny_png
from tests.helpers.waiting import kill_quietly, process_gone, wait_until

pytestmark = pytest.mark.real
HIVETRAY = [sys.executable, "-m", "hivetray"]
ROLE_KEYS = {"role", "status", "model", "mmproj", "worker_pid", "spawn_to_ready_s", "load_s",
             "request_s", "result", "error", "log"}


def all_roles(models: dict[str, Path], **override: str) -> Config:
    """Every role on a tiny model (test-friendly context and threads); ``override`` swaps a
    role's model for another fixture (``chat="crash"``)."""
    base = default_config()
    pick = {"chat": "chat", "vision": "chat", "embed": "embed", "rerank": "rerank", **override}
    roles = dict(base.roles)
    for role, key in pick.items():
        path = models[key] if key in models else Path(key)
        roles[role] = RoleConfig(model=str(path), n_ctx=512 if role == "embed" else 256,
                                 n_threads=1,
                                 mmproj=str(models["mmproj"]) if role == "vision" else None)
    return Config(roles=roles, pool=PoolConfig(), hotkeys=base.hotkeys)


def self_test(*args: str, timeout: float = 90.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HIVETRAY, "self-test", *args], capture_output=True, text=True,
                          env={**os.environ, "GGML_NO_BACKTRACE": "1"}, timeout=timeout,
                          check=False)


def json_report(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, f"--json prints one object, got: {proc.stdout!r}"
    doc: dict[str, Any] = json.loads(lines[0])
    return doc


def rows_by_role(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["role"]: row for row in doc["roles"]}


def assert_gone(pids: list[int]) -> None:
    """Every worker the self-test spawned is gone once the command returned (no orphans)."""
    for pid in pids:
        assert process_gone(pid), f"worker {pid} still runs"


def test_all_four_roles_pass_with_a_report(home: AppPaths, tiny_models: dict[str, Path]) -> None:
    save_config(home.config_file, all_roles(tiny_models))
    proc = self_test()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "self-test" in out and "private pool" in out
    for role, detail in (("chat", "8 tokens"), ("vision", "32 px PNG"),
                         ("embed", "1 vector × 64 dims"), ("rerank", "scores doc")):
        line = next(ln for ln in out.splitlines() if ln.startswith(role + " "))
        assert " ok " in line and detail in line, line
        assert line.count(" s ") >= 2, f"timings missing: {line}"
    assert "4 ok, 0 failed, 0 skipped" in out
    assert "every worker stopped" in out and "LEFT RUNNING" not in out
    # the self-test's workers log beside the instance's files, not over them
    assert (home.cache_dir / "self-test" / "logs" / "worker-chat.log").exists()
    assert not home.worker_log("chat").exists()


def test_json_report_has_timings_and_no_orphans(home: AppPaths,
                                                tiny_models: dict[str, Path]) -> None:
    save_config(home.config_file, all_roles(tiny_models))
    proc = self_test("--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json_report(proc)
    assert doc["ok"] is True and doc["frozen"] is False and doc["orphans"] == []
    rows = rows_by_role(doc)
    assert list(rows) == ["chat", "vision", "embed", "rerank"]
    for role, row in rows.items():
        assert set(row) == ROLE_KEYS
        assert row["status"] == "ok", row
        assert row["error"] is None
        assert 0 < row["spawn_to_ready_s"] < 60 and 0 <= row["request_s"] < 60, row
        assert row["load_s"] is not None and row["load_s"] <= row["spawn_to_ready_s"]
        assert isinstance(row["worker_pid"], int), role
    assert rows["vision"]["mmproj"] == str(tiny_models["mmproj"])
    assert rows["embed"]["result"] == "1 vector × 64 dims"
    assert_gone([row["worker_pid"] for row in rows.values()])


def test_a_native_crash_fails_with_the_reason(home: AppPaths,
                                              tiny_models: dict[str, Path]) -> None:
    """The chat model aborts llama.cpp (SIGABRT) while loading: FAIL with the signal and the
    log's assert line; the other roles still run and pass; exit code 1."""
    save_config(home.config_file, all_roles(tiny_models, chat="crash"))
    proc = self_test("--json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    rows = rows_by_role(json_report(proc))
    chat = rows["chat"]
    assert chat["status"] == "fail" and chat["spawn_to_ready_s"] is None
    assert "SIGABRT" in chat["error"] and "GGML_ASSERT" in chat["error"], chat["error"]
    assert chat["log"] and Path(chat["log"]).exists()
    assert [rows[r]["status"] for r in ("vision", "embed", "rerank")] == ["ok"] * 3
    assert proc.stderr.strip().splitlines()[-1].startswith("hivetray: self-test failed — chat:")
    assert "SIGABRT" in proc.stderr


def test_a_bad_model_file_fails_in_the_text_report(home: AppPaths,
                                                   tiny_models: dict[str, Path]) -> None:
    save_config(home.config_file, all_roles(tiny_models, embed="random"))
    proc = self_test()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("embed "))
    assert "FAIL" in line and str(tiny_models["random"]) in line, line
    assert "3 ok, 1 failed, 0 skipped" in proc.stdout
    assert "self-test failed — embed:" in proc.stderr


def test_unconfigured_roles_are_skipped(home: AppPaths, tiny_models: dict[str, Path]) -> None:
    base = default_config()
    roles = dict(base.roles)
    roles["chat"] = RoleConfig(model=str(tiny_models["chat"]), n_ctx=256, n_threads=1)
    save_config(home.config_file, Config(roles=roles, pool=PoolConfig(), hotkeys=base.hotkeys))
    proc = self_test("--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = rows_by_role(json_report(proc))
    assert rows["chat"]["status"] == "ok"
    for role in ("vision", "embed", "rerank"):
        assert rows[role]["status"] == "skipped" and rows[role]["result"] == "no model set"
        assert rows[role]["worker_pid"] is None


def test_nothing_configured_is_a_failure(home: AppPaths) -> None:
    proc = self_test()
    assert proc.returncode == 1
    assert "0 ok, 0 failed, 4 skipped" in proc.stdout
    assert "no role has a model" in proc.stderr


def test_the_report_names_the_build(home: AppPaths) -> None:
    """Both reports say which build ran (version, commit, build date, llama.cpp build,
    packaged): a self-test pasted from a user's machine identifies its build. No role is
    configured, so nothing spawns."""
    text = self_test()
    json_doc = json_report(self_test("--json"))
    expected = buildinfo.detect()  # this checkout, as the subprocesses saw it
    lines = text.stdout.splitlines()
    assert lines[0] == f"hivetray {__version__}"
    # the commit line may gain or lose "+dirty" while others edit this checkout
    commit = (expected.commit or "unknown").removesuffix("+dirty")
    assert lines[1].startswith(f"commit     {commit}"), lines
    assert lines[2:5] == expected.lines()[2:5]
    assert "self-test" in lines[5] and "private pool" in lines[5]
    build = json_doc["build"]
    assert set(build) == {*buildinfo.KEYS, "problem"}
    assert build["version"] == __version__ and build["packaged"] is False
    assert build["build_date"] is None and build["problem"] is None
    assert (build["llama_cpp_python"], build["llama_cpp_commit"]) == (
        expected.llama_cpp_python, expected.llama_cpp_commit)
    assert (build["commit"] or "unknown").removesuffix("+dirty") == commit


def test_a_running_instance_is_neither_used_nor_disturbed(
        home: AppPaths, tiny_models: dict[str, Path]) -> None:
    """The self-test runs its own pool: the instance's chat worker keeps running, with its pid,
    and is not swept as a leftover."""
    save_config(home.config_file, all_roles(tiny_models))
    daemon = subprocess.Popen([*HIVETRAY, "daemon"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env=os.environ.copy())
    try:
        wait_until(lambda: home.socket_path.exists(), 30, what="the daemon listens")
        chat = subprocess.run([*HIVETRAY, "chat", "hi", "--max-tokens", "2"],
                              capture_output=True, text=True, timeout=60, check=False)
        assert chat.returncode == 0, chat.stderr
        status = json.loads(subprocess.run([*HIVETRAY, "status", "--json"], capture_output=True,
                                           text=True, timeout=30, check=True).stdout)
        instance_chat_pid = next(r["pid"] for r in status["roles"] if r["role"] == "chat")
        assert instance_chat_pid
        proc = self_test("--json")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        tested_pid = rows_by_role(json_report(proc))["chat"]["worker_pid"]
        assert tested_pid != instance_chat_pid
        # a sweep by the self-test would have ended the worker before the self-test exited
        # (it waits for its victims): a killed worker is gone or a zombie by now
        assert not process_gone(instance_chat_pid)
        status = json.loads(subprocess.run([*HIVETRAY, "status", "--json"], capture_output=True,
                                           text=True, timeout=30, check=True).stdout)
        chat_row = next(r for r in status["roles"] if r["role"] == "chat")
        assert chat_row["pid"] == instance_chat_pid and chat_row["crashes_in_window"] == 0
        quit_ = subprocess.run([*HIVETRAY, "quit"], capture_output=True, text=True, timeout=30,
                               check=False)
        assert quit_.returncode == 0, quit_.stderr
        daemon.wait(30)
    finally:
        if daemon.poll() is None:
            kill_quietly(daemon.pid)
            daemon.wait(10)


def test_the_generated_png_is_a_real_image() -> None:
    from PIL import Image

    data = tiny_png()
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG" and image.size == (32, 32) and image.mode == "RGB"
        image.load()


def test_start_at_login_names_the_appimage_not_its_extracted_copy(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hivetray import autostart

    image = tmp_path / "Hivetray-x86_64.AppImage"
    image.write_bytes(b"\x7fELF")
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "cache" / "usr/lib/hivetray/hivetray"))
    monkeypatch.setenv("APPIMAGE", str(image))
    assert autostart.launch_command() == [str(image)]
    monkeypatch.delenv("APPIMAGE")
    assert autostart.launch_command() == [sys.executable]
