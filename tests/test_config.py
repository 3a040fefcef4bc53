"""config.toml: defaults, bad values by key, malformed files kept aside, atomic writes."""

from __future__ import annotations

import os
import stat
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest

from hivetray import config as config_module
from hivetray.config import (
    DEFAULT_API_PORT,
    ApiConfig,
    Config,
    PoolConfig,
    RoleConfig,
    default_config,
    load_config,
    save_config,
    to_toml,
    write_atomic,
)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


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


def test_sampling_defaults_are_read_per_role_and_written_back_when_changed(
        tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[roles.chat]\ntemperature = 0\ntop_k = 20\ntop_p = 0.9\nmin_p = 0\n"
                    "repeat_penalty = 1.3\nrepeat_last_n = 128\nseed = 42\n")
    result = load_config(path)
    assert result.warnings == []
    chat = result.config.role("chat").sampling
    assert (chat.temperature, chat.top_k, chat.top_p, chat.min_p, chat.repeat_penalty,
            chat.repeat_last_n, chat.seed) == (0.0, 20, 0.9, 0.0, 1.3, 128, 42)
    assert isinstance(chat.temperature, float)  # a TOML integer is still a float setting
    assert result.config.role("vision").sampling == RoleConfig().sampling  # per role
    written = tomllib.loads(to_toml(result.config))
    assert written["roles"]["chat"]["seed"] == 42
    assert "vision" not in written.get("roles", {})  # defaults are not written out


@pytest.mark.parametrize(("line", "says"), [
    ("top_p = 1.5", "'top_p' must be a number above 0 and at most 1"),
    ("seed = -1", "'seed' must be a whole number"),
    ("temperature = \"hot\"", "'temperature' must be a number from 0 to 5"),
    ("top_k = 2.5", "'top_k' must be a whole number"),
])
def test_a_bad_sampling_value_says_its_range_and_keeps_the_default(
        tmp_path: Path, line: str, says: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f"[roles.chat]\n{line}\n")
    result = load_config(path)
    assert len(result.warnings) == 1
    assert "roles.chat." in result.warnings[0] and says in result.warnings[0]
    assert result.config.role("chat").sampling == RoleConfig().sampling


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


def test_a_file_with_a_utf8_bom_is_read_not_thrown_away(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('\ufeff[roles.chat]\nmodel = "/m/chat.gguf"\nn_ctx = 2048\n', encoding="utf-8")
    result = load_config(path)
    assert result.warnings == [] and result.backup is None
    assert result.config.role("chat").model == "/m/chat.gguf"
    assert result.config.role("chat").n_ctx == 2048
    assert path.exists()


def test_a_tilde_in_a_hand_written_model_path_is_expanded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "me"))
    path = tmp_path / "config.toml"
    path.write_text('[roles.vision]\nmodel = "~/v.gguf"\nmmproj = "~/p.gguf"\n')
    vision = load_config(path).config.role("vision")
    assert (vision.model, vision.mmproj) == (str(tmp_path / "me" / "v.gguf"),
                                             str(tmp_path / "me" / "p.gguf"))


MODEL_PATHS = [
    "/models/new\nline.gguf",
    "/models/tab\tand\rreturn.gguf",
    '/models/"quoted" \\ back\\slash.gguf',
    "C:\\Users\\zoë\\Modèles\\chat.gguf",
    "/models/\x00\x01\x1f\x7f\b\f nul and friends.gguf",
    "/modèles/蜂 🐝 \u2028 \x85.gguf",
    "/models/''' triple.gguf",
]


@pytest.mark.parametrize("model", MODEL_PATHS)
def test_any_model_path_round_trips_through_the_file(tmp_path: Path, model: str) -> None:
    path = tmp_path / "config.toml"
    roles = dict(default_config().roles)
    roles["vision"] = RoleConfig(model=model, mmproj=model + ".mmproj")
    config = Config(roles=roles)
    save_config(path, config)
    again = load_config(path)
    assert again.warnings == []
    assert again.config == config
    assert again.config.role("vision").model == model


def test_the_file_keeps_its_shape(tmp_path: Path) -> None:
    roles = dict(default_config().roles)
    roles["chat"] = replace(roles["chat"], model="/m/c.gguf", pinned=True)
    raw = tomllib.loads(to_toml(Config(roles=roles)))
    assert raw["roles"] == {"chat": {"model": "/m/c.gguf", "pinned": True}}  # only what changed
    assert set(raw["pool"]) == set(PoolConfig.__dataclass_fields__)  # every pool setting
    assert raw["hotkeys"] == {"quick_chat": "Ctrl+Alt+Space"}
    assert "roles" not in tomllib.loads(to_toml(default_config()))  # no empty table


def test_a_symlinked_config_stays_a_symlink(tmp_path: Path) -> None:
    dotfiles = tmp_path / "dotfiles"
    dotfiles.mkdir()
    target = dotfiles / "hivetray.toml"
    target.write_text("[pool]\ncooldown_s = 9\n")
    link = tmp_path / "conf" / "config.toml"
    link.parent.mkdir()
    link.symlink_to(target)
    config = Config(roles=dict(default_config().roles), pool=PoolConfig(cooldown_s=2.5))
    save_config(link, config)
    assert link.is_symlink() and link.resolve() == target.resolve()
    assert load_config(link).config == config
    assert sorted(p.name for p in dotfiles.iterdir()) == ["hivetray.toml"]  # no temp left
    assert sorted(p.name for p in link.parent.iterdir()) == ["config.toml"]


def fail_fsync(_fd: int) -> None:
    raise OSError(28, "No space left on device")


def fail_replace(_src: object, _dst: object) -> None:
    raise PermissionError(13, "Permission denied")


@pytest.mark.parametrize("breakage", ["fsync", "replace", "encode"])
def test_a_failed_write_leaves_the_old_file_and_no_temp_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, breakage: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[pool]\ncooldown_s = 9\n")
    config = default_config()
    if breakage == "fsync":
        monkeypatch.setattr(config_module.os, "fsync", fail_fsync)
    elif breakage == "replace":
        monkeypatch.setattr(config_module.os, "replace", fail_replace)
    else:  # a path with undecodable bytes (surrogate-escaped) cannot be written as UTF-8
        roles = dict(config.roles)
        roles["chat"] = RoleConfig(model="/models/\udcff.gguf")
        config = Config(roles=roles)
    with pytest.raises((OSError, UnicodeEncodeError)):
        save_config(path, config)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["config.toml"]
    assert path.read_text() == "[pool]\ncooldown_s = 9\n"


def test_written_files_and_created_folders_are_private_whatever_the_umask(
        tmp_path: Path, umask_022: None) -> None:
    tmp_path.chmod(0o755)
    fresh = tmp_path / "new" / "deeper" / "workers.json"
    write_atomic(fresh, "{}")
    assert mode(fresh) == 0o600
    assert mode(tmp_path / "new") == 0o700 and mode(tmp_path / "new" / "deeper") == 0o700
    assert mode(tmp_path) == 0o755  # a folder that was already there is not ours to change
    shared = tmp_path / "config.toml"
    shared.write_text("[pool]\n")
    shared.chmod(0o644)
    save_config(shared, default_config())
    assert mode(shared) == 0o600


def test_the_temp_file_is_private_before_anything_is_written_to_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, umask_022: None) -> None:
    seen: list[int] = []
    real_fsync = os.fsync

    def spy_fsync(fd: int) -> None:
        seen.append(stat.S_IMODE(os.fstat(fd).st_mode))
        real_fsync(fd)

    monkeypatch.setattr(config_module.os, "fsync", spy_fsync)
    write_atomic(tmp_path / "hivetray.port", '{"token": "secret"}')
    assert seen and seen[0] == 0o600


def test_the_malformed_file_backup_is_private(tmp_path: Path, umask_022: None) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[roles.chat]\nmodel = \n")
    path.chmod(0o644)
    result = load_config(path)
    assert result.backup is not None and mode(result.backup) == 0o600
    assert result.backup.read_text() == "[roles.chat]\nmodel = \n"


def test_two_malformed_loads_in_one_second_keep_both_backups(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    backups = []
    for text in ("first = = 1\n", "second = = 2\n"):
        path.write_text(text)
        backup = load_config(path, clock=lambda: 1_700_000_000.0).backup
        assert backup is not None
        backups.append(backup)
    assert backups[0] != backups[1]
    assert [b.read_text() for b in backups] == ["first = = 1\n", "second = = 2\n"]


def test_a_malformed_symlinked_config_is_kept_beside_its_target(tmp_path: Path) -> None:
    target = tmp_path / "dotfiles" / "hivetray.toml"
    target.parent.mkdir()
    target.write_text("oops = = 1\n")
    link = tmp_path / "config.toml"
    link.symlink_to(target)
    result = load_config(link)
    assert result.backup is not None and result.backup.parent == target.parent
    assert not result.backup.is_symlink()
    assert result.backup.read_text() == "oops = = 1\n"
    save_config(link, default_config())  # settings saved again go where the user keeps them
    assert link.is_symlink() and load_config(link).config == default_config()


# -- [api] --------------------------------------------------------------------------------------
def test_the_api_is_off_by_default_on_loopback_with_a_key_and_no_cors(tmp_path: Path) -> None:
    api = load_config(tmp_path / "config.toml").config.api
    assert api == ApiConfig()
    assert (api.enabled, api.host, api.cors_origins, api.allow_remote, api.require_key) == (
        False, "127.0.0.1", (), False, True)
    assert api.loopback
    # clear of the peers' defaults, so Hivetray runs beside any of them
    assert api.port == DEFAULT_API_PORT and api.port not in (11434, 1234, 8080)


def test_api_keys_are_read_and_written_back(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[api]\nenabled = true\nhost = "::1"\nport = 9000\n'
                    'cors_origins = ["http://localhost:3000/", "https://app.example"]\n'
                    "allow_remote = false\nrequire_key = false\n")
    result = load_config(path)
    assert result.warnings == []
    api = result.config.api
    assert api == ApiConfig(enabled=True, host="::1", port=9000, require_key=False,
                            cors_origins=("http://localhost:3000", "https://app.example"))
    assert api.loopback
    save_config(path, result.config)
    assert load_config(path).config == result.config
    written = tomllib.loads(path.read_text())["api"]
    assert written["cors_origins"] == ["http://localhost:3000", "https://app.example"]


@pytest.mark.parametrize(("line", "key"), [
    ("port = 70000", "api.port"),
    ("port = -1", "api.port"),
    ('port = "8000"', "api.port"),
    ('host = ""', "api.host"),
    ("enabled = 1", "api.enabled"),
    ('cors_origins = "http://localhost:3000"', "api.cors_origins"),
    ('cors_origins = ["localhost:3000"]', "api.cors_origins"),
    ("cors_origins = [3000]", "api.cors_origins"),
])
def test_a_bad_api_value_is_reported_by_key_and_defaulted(tmp_path: Path, line: str,
                                                         key: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f"[api]\n{line}\n")
    result = load_config(path)
    assert len(result.warnings) == 1 and key in result.warnings[0]
    assert "default" in result.warnings[0]
    assert result.config.api == ApiConfig()


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.1.2.3", True), ("localhost", True), ("::1", True),
    ("[::1]", True), ("0.0.0.0", False), ("::", False), ("192.168.1.5", False),
    ("myhost.lan", False),
])
def test_which_hosts_are_loopback(host: str, loopback: bool) -> None:
    assert ApiConfig(host=host).loopback is loopback


def test_saving_settings_keeps_the_api_section(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    config = replace(default_config(), api=ApiConfig(enabled=True, port=12000))
    save_config(path, config)
    assert load_config(path).config.api == ApiConfig(enabled=True, port=12000)
