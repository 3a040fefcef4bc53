"""The command line's failure contract, in-process: every failure is one line and an exit code,
never a traceback."""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from hivetray import __version__, cli, ipc
from hivetray.commands import chat_params
from hivetray.errors import InsufficientMemory, ReplyTooLarge
from hivetray.paths import AppPaths
from hivetray.pool.states import RoleState
from hivetray.pool.status import PoolStatus, RoleStatus
from tests.conftest import make_config
from tests.helpers.daemon import StartDaemon, one_line_error, role_row, worker_pids
from tests.helpers.daemon import cli as run_cli


@pytest.mark.parametrize(("error", "code", "says"), [
    (ReplyTooLarge(64 * 2**20), 1, "larger than 64 MiB"),
    (KeyError("bug"), 1, "internal error (KeyError"),
    (KeyboardInterrupt(), 130, ""),
])
def test_any_failure_is_one_line_and_an_exit_code(
        home: AppPaths, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        error: BaseException, code: int, says: str) -> None:
    async def failing(paths: AppPaths, args: argparse.Namespace) -> Any:
        raise error

    monkeypatch.setitem(cli.COMMANDS, "status", failing)
    assert cli.main(["status"]) == code
    err = capsys.readouterr().err
    assert says in err and err.count("\n") <= 1 and "Traceback" not in err


# -- memory admission, end to end (a real daemon; no worker is ever spawned) ----------------------
@pytest.mark.real
def test_a_model_too_big_for_the_memory_is_refused_with_the_numbers(
        start_daemon: StartDaemon, write_config: Any, tiny_models: dict[str, Path],
        home: AppPaths) -> None:
    huge = 2**30  # a billion tokens of context: terabytes of KV cache and attention scores
    write_config(make_config(tiny_models["chat"], n_ctx=huge))
    start_daemon()
    line = one_line_error(run_cli("chat", "hello"), cli.EXIT_FAIL)
    assert re.fullmatch(rf"hivetray: chat needs ~[\d.]+ TiB of memory, [\d.]+ [MGT]iB free; "
                        rf"(stop .+|close other programs) or lower n_ctx \({huge}\) in "
                        r"Settings, then: hivetray retry chat", line), line
    row = role_row("chat")
    assert row["state"] == "error" and row["pid"] is None and line.endswith(row["last_error"])
    assert row["mem_estimate_bytes"] > psutil.virtual_memory().total
    assert worker_pids(home) == []  # refused before a worker was spawned
    text = run_cli("status").stdout
    assert re.search(r"^chat +error +- +est\. [\d.]+ TiB ", text, re.MULTILINE), text
    # retry checks again; the typed error, with its numbers, reaches a socket client
    assert run_cli("retry", "chat").returncode == 0
    with pytest.raises(InsufficientMemory) as refused:
        asyncio.run(ipc.call(home.socket_path, "chat", params=chat_params("hello")))
    assert refused.value.needed_bytes == row["mem_estimate_bytes"]
    assert 0 < refused.value.available_bytes <= psutil.virtual_memory().total
    assert worker_pids(home) == []


def test_status_text_shows_the_rss_next_to_the_estimate(
        home: AppPaths, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    rows = (RoleStatus("chat", RoleState.READY, pid=4242, model="/m/chat.gguf",
                       rss_bytes=212 * 2**20, mem_estimate_bytes=240 * 2**20),
            RoleStatus("vision", RoleState.ERROR, model="/m/vision.gguf",
                       mem_estimate_bytes=3 * 2**30, last_error="vision needs ~3.0 GiB"),
            RoleStatus("embed", RoleState.STOPPED, model="/m/embed.gguf"))

    async def reply(paths: AppPaths, cmd: str, payload: dict[str, Any]) -> AsyncIterator[
            dict[str, Any]]:
        yield {"result": PoolStatus(1, rows).to_dict()}

    monkeypatch.setattr(cli, "_with_instance_or_private", reply)
    assert cli.main(["status"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "MEMORY" in lines[0]
    assert re.match(r"chat +ready +4242 +212 MiB \(est\. 240 MiB\) +0 ", lines[1]), lines[1]
    assert re.match(r"vision +error +- +est\. 3\.0 GiB +0 ", lines[2]), lines[2]
    assert re.match(r"embed +stopped +- +- +0 ", lines[4]), lines[4]  # after vision's error line


def test_version_names_the_commit_build_and_llama_cpp() -> None:
    """``python -m hivetray --version`` in a real process: the first line stays exactly
    ``hivetray <version>`` (scripts read it), then the git commit of this checkout, the build
    date (none from source), the llama.cpp build and whether it is packaged."""
    proc = run_cli("--version")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"hivetray {__version__}"
    fields = dict(line.split(None, 1) for line in lines[1:])
    assert fields["built"] == "not built (source checkout)"
    assert fields["packaged"] == "no"
    assert re.fullmatch(r"\S+ \(.+\) via llama-cpp-python \S+", fields["llama.cpp"]), lines
    repo = Path(__file__).resolve().parent.parent
    if not (repo / ".git").exists() or shutil.which("git") is None:
        pytest.skip("the test tree is not a git checkout: no commit to compare")
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    # "+dirty" follows whatever is being edited in this checkout right now
    assert fields["commit"] in (head[:12], head[:12] + "+dirty"), lines
