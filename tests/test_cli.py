"""The command line's failure contract, in-process: every failure is one line and an exit code,
never a traceback."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from hivetray import cli
from hivetray.errors import ReplyTooLarge
from hivetray.paths import AppPaths


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
