"""A real llama-server for the remote-engine tests: built once per machine (cached) by
bench/build_llama_server.sh, started on the tiny generated models, and stopped, killed, frozen
(SIGSTOP) or restarted on the same port by the test.

The root conftest registers the ``llama_server_bin`` and ``start_llama_server`` fixtures.
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: a clean CI machine builds llama-server first (about 5 minutes on 2 cores), once
BUILD_TIMEOUT_S = 1500


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def llama_server_bin() -> Path:
    """The llama-server binary built from the llama.cpp the workers run (cached)."""
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(ROOT / "bench" / "build_llama_server.sh")], env=env,
                          capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False)
    assert done.returncode == 0, f"building llama-server failed:\n{done.stderr[-4000:]}"
    path = Path(done.stdout.strip().splitlines()[-1])
    assert path.is_file(), path
    return path


class LlamaServer:
    """One llama-server process on a fixed port (so a restart is the same engine again)."""

    def __init__(self, binary: Path, model: Path, *extra: str) -> None:
        self.binary = binary
        self.model = model
        self.extra = extra
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LlamaServer:
        command = [str(self.binary), "-m", str(self.model), "-c", "256", "-t", "1", "-tb", "1",
                   "--host", "127.0.0.1", "--port", str(self.port), "-np", "1", "--no-webui",
                   *self.extra]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "llama-server exited while starting"
            if self.get("/health")[0] == 200:
                return self
            time.sleep(0.05)
        raise AssertionError("llama-server did not answer /health within 60 s")

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read()
        except OSError:
            return 0, b""

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL (it works on a stopped process too) and reap."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None


@pytest.fixture
def start_llama_server(llama_server_bin: Path) -> Iterator[Callable[..., LlamaServer]]:
    """``start_llama_server(model, *extra)``: a started llama-server on ``model``; every one
    this test started is killed after it (registered before it starts, so a failed start is
    cleaned up too)."""
    servers: list[LlamaServer] = []

    def start(model: Path, *extra: str) -> LlamaServer:
        server = LlamaServer(llama_server_bin, model, *extra)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.kill()
