"""Shared fixtures: tiny generated GGUF models, an isolated HIVETRAY_HOME, and a rule that a
warning logged by Hivetray during a test fails that test (events have their own logger and are
expected output, so they are exempt)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from hivetray.config import Config, PoolConfig, RoleConfig, default_config, save_config
from hivetray.paths import AppPaths, app_paths

# shared fixtures: real pools (make_pool, long_chat_model) and real daemons (start_daemon)
pytest_plugins = ["tests.helpers.realpool", "tests.helpers.daemon", "tests.helpers.llama_server"]


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """chat/embed/rerank/mmproj/crash/random models, generated once per session (milliseconds)."""
    from hivetray.devtools import tinymodels

    folder = tmp_path_factory.mktemp("models")
    return {
        "chat": tinymodels.write_chat_model(folder / "chat.gguf"),
        "crash": tinymodels.write_crash_model(folder / "crash.gguf"),
        "random": tinymodels.write_random_bytes(folder / "random.gguf"),
        "embed": tinymodels.write_embed_model(folder / "embed.gguf"),
        "rerank": tinymodels.write_rerank_model(folder / "rerank.gguf"),
        "mmproj": tinymodels.write_mmproj(folder / "mmproj.gguf"),
    }


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AppPaths:
    """A private HIVETRAY_HOME (and runtime dir for the socket) for one test."""
    monkeypatch.setenv("HIVETRAY_HOME", str(tmp_path / "home"))
    # a machine with the optional demo model installed must not fill the chat role by itself
    monkeypatch.setenv("HIVETRAY_NO_BUILTIN_MODEL", "1")
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    paths = app_paths()
    paths.ensure()
    return paths


def make_config(chat_model: Path | str | None, *, pool: PoolConfig | None = None,
                **chat: object) -> Config:
    """A config whose chat role uses ``chat_model`` with test-friendly settings."""
    base = default_config()
    roles = dict(base.roles)
    if chat_model is not None:
        settings: dict[str, object] = {"n_ctx": 256, "n_threads": 1, **chat}
        roles["chat"] = RoleConfig(model=str(chat_model), **settings)  # type: ignore[arg-type]
    return Config(roles=roles, pool=pool or PoolConfig(), hotkeys=base.hotkeys)


@pytest.fixture
def write_config(home: AppPaths):  # type: ignore[no-untyped-def]
    def write(config: Config) -> Path:
        save_config(home.config_file, config)
        return home.config_file

    return write


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual desktop umask, under which plain ``open``/``mkdir`` give 0644/0755: files
    Hivetray writes must still be private."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.fixture(autouse=True)
def _fail_on_logged_warnings(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.INFO)
    yield
    bad = [r for r in caplog.get_records("call")
           if r.levelno >= logging.WARNING and r.name.startswith("hivetray")
           and not r.name.startswith("hivetray.events")]
    if bad:
        pytest.fail("warnings were logged: " + "; ".join(r.getMessage() for r in bad))


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
