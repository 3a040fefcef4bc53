"""The real process link: signals that race the spawn thread still reach the process."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import pytest

from hivetray.pool.transport import ProcessLink
from hivetray.workers.spec import WorkerSpec
from tests.helpers.realpool import run

pytestmark = pytest.mark.real


class RecordingSink:
    """Collects what the link reports; ``exited`` resolves with the exit code."""

    def __init__(self) -> None:
        self.started: list[int] = []
        self.exited: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()

    def on_message(self, msg: dict[str, Any]) -> None:
        pass

    def on_control(self, msg: dict[str, Any]) -> None:
        pass

    def on_exit(self, exitcode: int | None) -> None:
        self.exited.set_result(exitcode)

    def on_started(self, pid: int) -> None:
        self.started.append(pid)

    def on_spawn_failed(self, reason: str) -> None:
        self.exited.set_exception(RuntimeError(reason))


def test_a_kill_sent_before_the_process_exists_is_delivered_when_it_starts(
        tiny_models: dict[str, Path], tmp_path: Path) -> None:
    """A stop can reach SIGKILL while the spawn thread is still starting the process; the
    process must die anyway (ignoring the shutdown message), not load its model and live on."""
    spec = WorkerSpec("chat", str(tiny_models["chat"]), None, 256, 1,
                      str(tmp_path / "worker-chat.log"), frozenset({"ignore_shutdown"}))

    async def body() -> None:
        sink = RecordingSink()
        link = ProcessLink(spec)
        link.kill()  # before start(): there is no process yet
        link.start(sink)
        exitcode = await asyncio.wait_for(sink.exited, 20)
        link.close()
        assert exitcode == -signal.SIGKILL
        assert len(sink.started) == 1

    run(body())
