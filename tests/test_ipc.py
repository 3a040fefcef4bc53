"""The instance socket on both transports: AF_UNIX (POSIX) and loopback TCP with a token
(Windows; forced here with HIVETRAY_IPC=tcp)."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hivetray import ipc
from hivetray.probe import read_endpoint
from tests.helpers.waiting import wait_until


async def echo(request: dict[str, Any], reply: ipc.Reply) -> Any:
    await reply({"text": "chunk"})
    return {"echo": request.get("value")}


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_round_trip_and_single_owner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     transport: str) -> None:
    if transport == "tcp":
        monkeypatch.setenv("HIVETRAY_IPC", "tcp")
    path = tmp_path / "run" / "instance.sock"

    async def scenario() -> None:
        server = await ipc.serve(path, echo)
        try:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
            assert ipc.instance_alive(path)
            items = [item async for item in ipc.request(path, "anything", value=7)]
            assert items == [{"text": "chunk"}, {"result": {"echo": 7}}]
            with pytest.raises(ipc.AlreadyRunning):
                await ipc.serve(path, echo)
        finally:
            await server.close()
        assert not ipc.instance_alive(path)
        with pytest.raises(ipc.NoInstance):
            await ipc.call(path, "anything")

    asyncio.run(scenario())


def test_tcp_refuses_a_connection_without_the_token(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIVETRAY_IPC", "tcp")
    path = tmp_path / "instance.sock"

    async def scenario() -> None:
        server = await ipc.serve(path, echo)
        try:
            endpoint = read_endpoint(path)
            assert endpoint is not None and len(endpoint.token) == 32
            reader, writer = await asyncio.open_connection("127.0.0.1", endpoint.port)
            writer.write(json.dumps({"token": "guess"}).encode() + b"\n")
            writer.write(json.dumps({"cmd": "anything", "value": 1}).encode() + b"\n")
            await writer.drain()
            assert await reader.read() == b""  # closed without an answer
            writer.close()
        finally:
            await server.close()

    asyncio.run(scenario())


@pytest.mark.real
def test_daemon_and_cli_over_tcp(home: Any, write_config: Any, tiny_models: dict[str, Path],
                                 tmp_path: Path) -> None:
    from tests.conftest import make_config

    write_config(make_config(tiny_models["chat"]))
    env = {**os.environ, "HIVETRAY_IPC": "tcp", "HIVETRAY_NO_BUILTIN_MODEL": "1"}
    log = open(tmp_path / "daemon.log", "wb")
    daemon = subprocess.Popen([sys.executable, "-m", "hivetray", "daemon"], env=env,
                              stdout=log, stderr=log)
    try:
        def status() -> dict[str, Any] | None:
            done = subprocess.run([sys.executable, "-m", "hivetray", "status", "--json"],
                                  env=env, capture_output=True, text=True, check=False)
            doc = json.loads(done.stdout) if done.returncode == 0 else None
            return doc if doc and doc["pid"] == daemon.pid else None

        doc = wait_until(status, 30, what="status from the daemon over TCP")
        assert [r["role"] for r in doc["roles"]] == ["chat", "vision", "embed", "rerank"]
        chat = subprocess.run([sys.executable, "-m", "hivetray", "chat", "hi", "--max-tokens",
                               "4", "--json"], env=env, capture_output=True, text=True,
                              timeout=60, check=False)
        assert chat.returncode == 0, chat.stderr
        assert json.loads(chat.stdout.splitlines()[-1])["usage"]["completion_tokens"] == 4
        quit_ = subprocess.run([sys.executable, "-m", "hivetray", "quit"], env=env,
                               capture_output=True, text=True, timeout=30, check=False)
        assert quit_.returncode == 0, quit_.stderr
        assert daemon.wait(15) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(10)
        log.close()
