"""The API's switch: it follows the config (start, leave, restart, stop), refuses to expose the
workers to other machines unless told to (and never without a key), makes the key on first
enable, and survives a port that is taken — one line in the log, an event, the app runs on."""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from hivetray.api_control import ApiOverride, ApiState, ApiSwitch, refusal
from hivetray.config import ApiConfig
from hivetray.paths import AppPaths
from hivetray.pool.events import EventKind, EventLog
from tests.api.fakes import FakeInstance


@pytest_asyncio.fixture
async def switch(home: AppPaths) -> AsyncIterator[ApiSwitch]:
    api = ApiSwitch(FakeInstance(), home, EventLog())
    yield api
    await api.stop()


def on(**settings: object) -> ApiConfig:
    return ApiConfig(enabled=True, **{"port": 0, **settings})  # type: ignore[arg-type]


@pytest.mark.parametrize(("config", "refused"), [
    (ApiConfig(host="127.0.0.1"), None),
    (ApiConfig(host="::1", require_key=False), None),  # loopback: the user's choice
    (ApiConfig(host="0.0.0.0"), "allow_remote = true"),
    (ApiConfig(host="192.168.1.4", allow_remote=True, require_key=False),
     "require_key = true"),
    (ApiConfig(host="0.0.0.0", allow_remote=True), None),
])
def test_other_machines_only_when_allowed_and_with_a_key(config: ApiConfig,
                                                         refused: str | None) -> None:
    problem = refusal(config)
    assert (problem is None) is (refused is None)
    if refused is not None:
        assert problem is not None and refused in problem and "\n" not in problem


def test_daemon_api_overrides_the_config_for_the_run() -> None:
    assert ApiOverride().applied(ApiConfig()) == ApiConfig()
    assert ApiOverride(True).applied(ApiConfig(port=9000)) == ApiConfig(enabled=True,
                                                                         port=9000)
    assert ApiOverride(True, 0).applied(ApiConfig()).port == 0


@pytest.mark.asyncio
async def test_it_follows_the_config(switch: ApiSwitch, home: AppPaths) -> None:
    await switch.apply(ApiConfig())
    assert switch.state is ApiState.OFF and switch.line() == "HTTP API: off"
    assert not home.api_key_file.exists()  # no key until the API is enabled

    await switch.apply(on())
    assert switch.state is ApiState.LISTENING and switch.url is not None
    assert switch.line() == f"HTTP API: {switch.url}"
    assert stat.S_IMODE(os.stat(home.api_key_file).st_mode) == 0o600  # made on first enable
    first = switch.url
    async with aiohttp.ClientSession() as http, http.get(first + "/health") as response:
        assert response.status == 200

    await switch.apply(on())  # unchanged: left running
    assert switch.url == first
    await switch.apply(on(cors_origins=("http://localhost:1",)))  # changed: restarted
    assert switch.state is ApiState.LISTENING

    await switch.apply(ApiConfig())
    assert switch.state is ApiState.OFF and switch.url is None
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientConnectionError):
            await http.get(first + "/health")


@pytest.mark.asyncio
async def test_no_key_is_made_when_none_is_required(switch: ApiSwitch, home: AppPaths) -> None:
    await switch.apply(on(require_key=False))
    assert switch.state is ApiState.LISTENING and not home.api_key_file.exists()


@pytest.mark.asyncio
async def test_a_taken_port_is_one_line_and_an_event(
        switch: ApiSwitch, caplog: pytest.LogCaptureFixture) -> None:
    events = []
    switch.events.subscribe(events.append)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        await switch.apply(on(port=port))  # no exception: the app runs on
    assert switch.state is ApiState.FAILED and switch.url is None
    assert switch.error is not None and f"127.0.0.1:{port}" in switch.error
    assert "choose another port" in switch.error and "\n" not in switch.error
    assert switch.line() == "HTTP API: not running (see the log)"
    assert [e.kind for e in events] == [EventKind.API] and events[0].level == "error"
    logged = [r for r in caplog.records if r.name == "hivetray.api_control"]
    assert [r.getMessage() for r in logged] == [switch.error]
    caplog.clear()  # the expected error
    await switch.apply(on())  # fixed in Settings: it starts
    assert switch.state is ApiState.LISTENING and switch.error is None


@pytest.mark.asyncio
async def test_a_remote_host_without_permission_is_refused(
        switch: ApiSwitch, caplog: pytest.LogCaptureFixture) -> None:
    await switch.apply(on(host="0.0.0.0"))
    assert switch.state is ApiState.FAILED and switch.error is not None
    assert "allow_remote" in switch.error
    caplog.clear()  # the expected error


def test_the_api_package_is_not_imported_by_the_switch(tmp_path: Path) -> None:
    """With the API off, neither ``hivetray.api`` nor aiohttp is loaded by the instance's
    modules (run in a fresh interpreter: this test process imports them for other tests)."""
    import subprocess
    import sys

    code = ("import sys; import hivetray.instance, hivetray.daemon, hivetray.api_control; "
            "print(sorted(m for m in sys.modules if m.startswith(('hivetray.api', 'aiohttp'))"
            " and m != 'hivetray.api_control'))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=60)
    assert result.stdout.strip() == "[]"


@pytest.mark.asyncio
async def test_a_reload_queued_behind_quit_does_not_start_it_again(switch: ApiSwitch) -> None:
    await switch.apply(on())
    await switch.stop()  # quit
    await switch.apply(on())  # a Settings save that was still queued
    assert switch.state is ApiState.OFF and switch.url is None
