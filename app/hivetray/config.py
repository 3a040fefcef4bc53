"""``config.toml``: reading it forgivingly, writing it atomically.

A user's hand-edited file must never stop the app: a file that is not valid TOML is moved aside as
a backup and the app runs on defaults; a single bad value is reported by key and replaced by its
default. Both cases produce human-readable warnings the caller shows (CLI stderr, tray message).
"""

from __future__ import annotations

import os
import time
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from hivetray import ROLES

DEFAULT_IDLE_TIMEOUT_S: dict[str, float] = {
    "chat": 900.0, "vision": 900.0, "embed": 300.0, "rerank": 300.0,
}


@dataclass(frozen=True)
class RoleConfig:
    """Settings of one role; ``model=None`` means the role is unconfigured."""

    model: str | None = None
    mmproj: str | None = None
    n_ctx: int = 4096
    n_threads: int = 0  # 0 = let llama.cpp decide
    idle_timeout_s: float = 900.0
    pinned: bool = False

    @property
    def configured(self) -> bool:
        return bool(self.model)


@dataclass(frozen=True)
class PoolConfig:
    restart_budget: int = 3
    restart_window_s: float = 60.0
    cooldown_s: float = 60.0
    health_interval_s: float = 10.0
    ping_timeout_s: float = 5.0
    shutdown_grace_s: float = 5.0


@dataclass(frozen=True)
class HotkeyConfig:
    quick_chat: str = "Ctrl+Alt+Space"


@dataclass(frozen=True)
class Config:
    roles: dict[str, RoleConfig] = field(default_factory=dict)
    pool: PoolConfig = field(default_factory=PoolConfig)
    hotkeys: HotkeyConfig = field(default_factory=HotkeyConfig)

    def role(self, name: str) -> RoleConfig:
        return self.roles.get(name) or default_role(name)


def default_role(name: str) -> RoleConfig:
    return RoleConfig(idle_timeout_s=DEFAULT_IDLE_TIMEOUT_S.get(name, 900.0))


def default_config() -> Config:
    return Config(roles={name: default_role(name) for name in ROLES})


@dataclass
class LoadResult:
    config: Config
    warnings: list[str] = field(default_factory=list)
    backup: Path | None = None


def load_config(path: Path) -> LoadResult:
    """Read ``path``; never raises for bad content, only reports it in ``warnings``."""
    if not path.exists():
        return LoadResult(default_config())
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        backup = path.with_name(f"{path.name}.bad-{time.strftime('%Y%m%d-%H%M%S')}")
        os.replace(path, backup)
        return LoadResult(
            default_config(),
            [f"{path}: {exc}. The file was kept as {backup}; Hivetray runs on defaults. "
             "Fix the backup and move it back, or set things again in Settings."],
            backup,
        )
    warnings: list[str] = []
    return LoadResult(_from_dict(raw, path, warnings), warnings)


def _from_dict(raw: dict[str, Any], path: Path, warnings: list[str]) -> Config:
    roles_raw = raw.get("roles", {})
    roles: dict[str, RoleConfig] = {}
    for name in ROLES:
        section = roles_raw.get(name, {}) if isinstance(roles_raw, dict) else {}
        roles[name] = _section(default_role(name), section, f"roles.{name}", path, warnings)
    if isinstance(roles_raw, dict):
        for unknown in sorted(set(roles_raw) - set(ROLES)):
            warnings.append(f"{path}: [roles.{unknown}] is not a role "
                            f"(known: {', '.join(ROLES)}); it is ignored.")
    pool = _section(PoolConfig(), raw.get("pool", {}), "pool", path, warnings)
    hotkeys = _section(HotkeyConfig(), raw.get("hotkeys", {}), "hotkeys", path, warnings)
    return Config(roles=roles, pool=pool, hotkeys=hotkeys)


T = TypeVar("T", RoleConfig, PoolConfig, HotkeyConfig)


def _section(
    default: T, section: Any, where: str, path: Path, warnings: list[str]
) -> T:
    if not isinstance(section, dict):
        warnings.append(f"{path}: [{where}] must be a table; using defaults for it.")
        return default
    known = {f.name: f for f in fields(default)}
    values: dict[str, Any] = {}
    for key, value in section.items():
        if key not in known:
            warnings.append(f"{path}: unknown key {where}.{key}; it is ignored.")
            continue
        expected = type(getattr(default, key))
        coerced = _coerce(value, expected, key)
        if coerced is _BAD:
            warnings.append(f"{path}: {where}.{key} = {value!r} is not a valid "
                            f"{_type_name(expected, key)}; using the default "
                            f"{getattr(default, key)!r}.")
            continue
        values[key] = coerced
    return replace(default, **values)


_BAD = object()


def _type_name(expected: type, key: str) -> str:
    if key in ("model", "mmproj"):
        return "file path (string)"
    return {bool: "true/false", int: "whole number", float: "number"}.get(expected, "string")


def _coerce(value: Any, expected: type, key: str) -> Any:
    if key in ("model", "mmproj"):
        if value == "" or value is None:
            return None
        return value if isinstance(value, str) else _BAD
    if expected is bool:
        return value if isinstance(value, bool) else _BAD
    if expected is int:
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 \
            else _BAD
    if expected is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
        return float(value) if ok else _BAD
    return value if isinstance(value, str) else _BAD


def to_toml(config: Config) -> str:
    """Serialise ``config``; only non-default role settings and all pool settings are written."""
    lines: list[str] = []
    for name in ROLES:
        role = config.role(name)
        base = default_role(name)
        changed = [(f.name, getattr(role, f.name)) for f in fields(role)
                   if getattr(role, f.name) != getattr(base, f.name)]
        if changed:
            lines.append(f"[roles.{name}]")
            lines += [f"{key} = {_toml_value(value)}" for key, value in changed]
            lines.append("")
    for title, section in (("pool", config.pool), ("hotkeys", config.hotkeys)):
        lines.append(f"[{title}]")
        lines += [f"{f.name} = {_toml_value(getattr(section, f.name))}" for f in fields(section)]
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def save_config(path: Path, config: Config) -> None:
    """Write atomically: a crash mid-write leaves the old file, never half a new one."""
    write_atomic(path, to_toml(config))


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
