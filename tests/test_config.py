"""config.toml: defaults, bad values by key, malformed files kept aside, atomic writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from hivetray.config import (
    Config,
    PoolConfig,
    RoleConfig,
    default_config,
    load_config,
    save_config,
)


def test_missing_file_gives_defaults(tmp_path: Path) -> None:
    result = load_config(tmp_path / "config.toml")
    assert result.warnings == []
    assert result.config.role("chat").idle_timeout_s == 900
    assert result.config.role("embed").idle_timeout_s == 300
    assert result.config.pool == PoolConfig()
    assert result.config.hotkeys.quick_chat == "Ctrl+Alt+Space"
    assert not result.config.role("chat").configured


def test_brief_keys_are_read(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[roles.chat]\nmodel = "/m/chat.gguf"\nn_ctx = 2048\nn_threads = 2\n'
                    'idle_timeout_s = 0\npinned = true\n'
                    '[roles.vision]\nmodel = "/m/v.gguf"\nmmproj = "/m/p.gguf"\n'
                    '[pool]\nrestart_budget = 5\nrestart_window_s = 30\ncooldown_s = 10\n'
                    'health_interval_s = 2\nping_timeout_s = 1\nshutdown_grace_s = 3\n'
                    '[hotkeys]\nquick_chat = "Meta+Space"\n')
    result = load_config(path)
    assert result.warnings == []
    chat = result.config.role("chat")
    assert (chat.model, chat.n_ctx, chat.n_threads, chat.idle_timeout_s, chat.pinned) == (
        "/m/chat.gguf", 2048, 2, 0.0, True)
    assert result.config.role("vision").mmproj == "/m/p.gguf"
    assert result.config.pool == PoolConfig(5, 30, 10, 2, 1, 3)
    assert result.config.hotkeys.quick_chat == "Meta+Space"


def test_malformed_file_is_kept_aside_and_defaults_apply(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[roles.chat]\nmodel = "/m/chat.gguf"\nn_ctx = = 3\n')
    result = load_config(path)
    assert result.config == default_config()
    assert result.backup is not None and result.backup.exists()
    assert result.backup.read_text().startswith("[roles.chat]")  # nothing the user wrote lost
    assert not path.exists()
    assert len(result.warnings) == 1
    assert "line 3" in result.warnings[0] and str(result.backup) in result.warnings[0]


@pytest.mark.parametrize(("line", "key"), [
    ('n_ctx = "big"', "roles.chat.n_ctx"),
    ("pinned = 1", "roles.chat.pinned"),
    ("idle_timeout_s = -5", "roles.chat.idle_timeout_s"),
    ("model = 3", "roles.chat.model"),
])
def test_bad_value_is_reported_by_key_and_defaulted(tmp_path: Path, line: str,
                                                    key: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f'[roles.chat]\n{line}\n')
    result = load_config(path)
    assert len(result.warnings) == 1 and key in result.warnings[0]
    assert "default" in result.warnings[0]
    assert path.exists()  # a bad value is not a malformed file: keep it in place


def test_unknown_keys_and_roles_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[roles.chatt]\nmodel = "x"\n[pool]\nbudget = 3\n')
    warnings = load_config(path).warnings
    assert any("roles.chatt" in w for w in warnings)
    assert any("pool.budget" in w for w in warnings)


def test_save_then_load_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "config.toml"
    roles = dict(default_config().roles)
    roles["chat"] = RoleConfig(model='/models/a "quoted" \\ path.gguf', n_ctx=512, pinned=True)
    config = Config(roles=roles, pool=PoolConfig(cooldown_s=2.5))
    save_config(path, config)
    again = load_config(path)
    assert again.warnings == []
    assert again.config == config
    assert list(path.parent.iterdir()) == [path]  # no temp file left behind
