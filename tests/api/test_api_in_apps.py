"""The API inside the real apps: the tray app (qasync's loop, offscreen) and the daemon, each
started through its real entry point in a fresh interpreter. With the API off neither
``hivetray.api`` nor aiohttp is loaded (the idle tray's memory must not grow); with it on, the
server answers on the app's own loop. A taken port is one line and the daemon runs on."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from hivetray.config import ApiConfig
from hivetray.paths import AppPaths
from tests.conftest import make_config
from tests.helpers.daemon import StartDaemon, cli, status

pytestmark = pytest.mark.real

#: run an app's real entry point; once its instance has started, print which API modules
#: are loaded and what GET /health answers (asked on the app's own loop), then quit
PROBE = """
import json, sys
from hivetray.lean_imports import without_openssl
from hivetray.paths import app_paths
with without_openssl():  # as the tray app imports it (app.py): the probe must not load it
    import asyncio
    import hivetray.instance as instance_module

started = instance_module.Instance.start

async def health(url):
    host, port = url.split("//")[1].rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /health HTTP/1.0\\r\\n\\r\\n")
    await writer.drain()
    line = (await reader.readline()).decode().strip()
    writer.close()
    return line

async def start(self):
    await started(self)
    modules = sorted(m for m in sys.modules if m.startswith(("hivetray.api.", "aiohttp"))
                     or m == "hivetray.api")
    answer = await health(self.api.url) if self.api.url else None
    print("PROBE " + json.dumps({"modules": modules, "health": answer,
                                 "line": self.api.line(),
                                 "openssl": sys.modules.get("_ssl") is not None}), flush=True)
    asyncio.get_running_loop().call_soon(self.request_quit)

instance_module.Instance.start = start
if sys.argv[1] == "tray":
    from hivetray.app import run_desktop
    sys.exit(run_desktop(app_paths()))
from hivetray.daemon import run_daemon
sys.exit(run_daemon(app_paths()))
"""


def probe(app: str) -> dict[str, Any]:
    result = subprocess.run([sys.executable, "-c", PROBE, app], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("PROBE ")]
    assert len(lines) == 1, result.stdout
    found: dict[str, Any] = json.loads(lines[0][len("PROBE "):])
    return found


@pytest.mark.parametrize("app", ["tray", "daemon"])
def test_with_the_api_off_neither_the_api_nor_aiohttp_is_loaded(
        app: str, write_config: Any, tiny_models: dict[str, Path]) -> None:
    write_config(make_config(tiny_models["chat"]))
    found = probe(app)
    assert (found["modules"], found["health"], found["line"]) == ([], None, "HTTP API: off")
    if app == "tray":
        assert not found["openssl"]


@pytest.mark.parametrize("app", ["tray", "daemon"])
def test_with_the_api_on_it_answers_on_the_apps_own_loop(
        app: str, write_config: Any, tiny_models: dict[str, Path]) -> None:
    write_config(replace(make_config(tiny_models["chat"]), api=ApiConfig(enabled=True, port=0)))
    found = probe(app)
    assert "hivetray.api.server" in found["modules"] and "aiohttp" in found["modules"]
    assert found["health"] == "HTTP/1.0 200 OK"
    assert found["line"].startswith("HTTP API: http://127.0.0.1:")
    if app == "tray":  # the API needs no TLS: the tray still keeps OpenSSL out
        assert not found["openssl"]


def test_a_taken_port_is_one_line_and_the_daemon_runs_on(
        start_daemon: StartDaemon, write_config: Any, tiny_models: dict[str, Path],
        home: AppPaths) -> None:
    write_config(make_config(tiny_models["chat"]))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        daemon = start_daemon("--api", "--port", str(port))
        assert status()["pid"] == daemon.proc.pid  # running, serving the socket
        chat = cli("chat", "hi", "--max-tokens", "2")
        assert chat.returncode == 0, chat.stderr
    lines = daemon.stderr().strip().splitlines()
    assert len(lines) == 1 and f"could not listen on 127.0.0.1:{port}" in lines[0]
    assert "choose another port" in lines[0]
    assert "HTTP API on" not in daemon.stdout()


def test_api_key_command(home: AppPaths) -> None:
    first = cli("api", "key")
    assert first.returncode == 0 and first.stderr == ""
    key = first.stdout.strip()
    assert key.startswith("hivetray-") and cli("api", "key").stdout.strip() == key
    assert home.api_key_file.stat().st_mode & 0o777 == 0o600
    new = cli("api", "key", "--new")
    assert new.returncode == 0 and new.stdout.strip() not in ("", key)
    home.api_key_file.unlink()
    home.api_key_file.mkdir()  # something in the way: the key cannot be written
    failed = cli("api", "key", "--new")
    assert failed.returncode == 1 and failed.stdout == ""
    assert failed.stderr.count("\n") == 1 and "could not write the API key" in failed.stderr


def test_daemon_port_needs_api(home: AppPaths) -> None:
    for args in (("--port", "9000"), ("--api", "--port", "70000")):
        result = cli("daemon", *args)
        assert result.returncode == 2 and "--port needs --api" in result.stderr
