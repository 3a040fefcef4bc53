"""``config.toml``: reading it forgivingly, writing it atomically and privately.

A user's hand-edited file must never stop the app: a file that is not valid TOML is moved aside as
a backup and the app runs on defaults; a single bad value is reported by key and replaced by its
default. Both cases produce human-readable warnings the caller shows (CLI stderr, tray message).

Writing must never lose or expose what the user wrote: files go through :func:`write_atomic`
(a crash mid-write leaves the old file; a symlinked file stays a symlink; files are 0600 and new
folders 0700 whatever the umask, since model paths, tokens and worker records are private).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import tempfile
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

import tomli_w

from hivetray import ROLES
from hivetray.paths import PRIVATE_FILE_MODE, ensure_private_dir
from hivetray.sampling import DEFAULT_SAMPLING, SAMPLING_KEYS, Sampling, sampling_problem

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
    # the deadline for loading the model; 0 = automatic (grows with the files' size, see
    # hivetray.pool.health.start_timeout_s), so a frozen load never hangs the role for ever
    start_timeout_s: float = 0.0
    # sampling defaults of the chat and vision roles (hivetray.sampling); a request may override
    # each; changing them never restarts the worker
    temperature: float = DEFAULT_SAMPLING.temperature
    top_k: int = DEFAULT_SAMPLING.top_k
    top_p: float = DEFAULT_SAMPLING.top_p
    min_p: float = DEFAULT_SAMPLING.min_p
    repeat_penalty: float = DEFAULT_SAMPLING.repeat_penalty
    repeat_last_n: int = DEFAULT_SAMPLING.repeat_last_n
    seed: int | None = DEFAULT_SAMPLING.seed
    # "local" (a worker process runs the model file) or "remote" (an OpenAI-compatible engine
    # at ``url`` serves ``model``, its model id there: hivetray.pool.remote)
    engine: str = "local"
    url: str | None = None
    # the name of the environment variable (or OS keyring entry) holding the remote key: the
    # key itself is never written into config.toml
    api_key_env: str | None = None
    # a remote engine's deadline for connecting and for each answer to begin
    timeout_s: float = 30.0

    @property
    def remote(self) -> bool:
        return self.engine == "remote"

    @property
    def configured(self) -> bool:
        return bool(self.url) if self.remote else bool(self.model)

    @property
    def launch_key(self) -> tuple[object, ...]:
        """The settings a running worker (or remote connection) was started with: a change
        to any of them restarts it; the others apply to the next request."""
        return (self.engine, self.model, self.mmproj, self.n_ctx, self.n_threads, self.url,
                self.api_key_env, self.timeout_s)

    @property
    def sampling(self) -> Sampling:
        return Sampling(**{key: getattr(self, key) for key in SAMPLING_KEYS})


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


#: the HTTP API's default port: clear of Ollama (11434), LM Studio (1234) and llama-server
#: (8080), so Hivetray can run beside any of them without a setting
DEFAULT_API_PORT = 11480


@dataclass(frozen=True)
class ApiConfig:
    """The local OpenAI-compatible HTTP API (``hivetray.api``): off unless enabled."""

    enabled: bool = False
    host: str = "127.0.0.1"
    #: 0 = any free port (the address is printed and shown in the tray menu)
    port: int = DEFAULT_API_PORT
    #: web pages (origins such as "http://localhost:3000") allowed to call the API from a
    #: browser; empty = no CORS headers at all
    cors_origins: tuple[str, ...] = ()
    #: a host that is not a loopback address is refused unless this is true (and a key is
    #: required): other machines must never reach the workers by accident
    allow_remote: bool = False
    #: callers must send ``Authorization: Bearer <key>`` (``hivetray api key``)
    require_key: bool = True

    @property
    def loopback(self) -> bool:
        return is_loopback_host(self.host)


def is_loopback_host(host: str) -> bool:
    """True for a name or address only this machine can reach ("localhost", 127.x, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Config:
    roles: dict[str, RoleConfig] = field(default_factory=dict)
    pool: PoolConfig = field(default_factory=PoolConfig)
    hotkeys: HotkeyConfig = field(default_factory=HotkeyConfig)
    api: ApiConfig = field(default_factory=ApiConfig)

    def role(self, name: str) -> RoleConfig:
        return self.roles.get(name) or default_role(name)

    def with_role(self, name: str, **changes: Any) -> Config:
        """This config with role ``name``'s settings changed (the config is frozen: a copy)."""
        return replace(self, roles={**self.roles, name: replace(self.role(name), **changes)})


def default_role(name: str) -> RoleConfig:
    return RoleConfig(idle_timeout_s=DEFAULT_IDLE_TIMEOUT_S.get(name, 900.0))


def default_config() -> Config:
    return Config(roles={name: default_role(name) for name in ROLES})


@dataclass
class LoadResult:
    config: Config
    warnings: list[str] = field(default_factory=list)
    backup: Path | None = None


def load_config(path: Path, clock: Callable[[], float] = time.time) -> LoadResult:
    """Read ``path``; never raises for bad content, only reports it in ``warnings``.

    ``utf-8-sig`` because Windows editors (Notepad) save UTF-8 with a byte-order mark, which
    tomllib refuses; a BOM is not a reason to throw the user's settings away. ``clock`` names
    the backup of a malformed file (injectable for tests).
    """
    if not path.exists():
        return LoadResult(default_config())
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        try:
            backup = _keep_aside(path, clock())
        except OSError as err:  # e.g. a link into a read-only store: leave it, run on defaults
            return LoadResult(default_config(), [
                f"{path}: {exc}. Hivetray runs on defaults; fix the file (it could not be "
                f"kept aside: {err.strerror or err})."])
        return LoadResult(
            default_config(),
            [f"{path}: {exc}. The file was kept as {backup}; Hivetray runs on defaults. "
             "Fix the backup and move it back, or set things again in Settings."],
            backup,
        )
    warnings: list[str] = []
    return LoadResult(_from_dict(raw, path, warnings), warnings)


def _keep_aside(path: Path, now: float) -> Path:
    """Move a malformed config to ``<name>.bad-<time>`` next to the real file; return it.

    The symlink's target is moved, not the link: the link then dangles, and the next save
    writes through it (see :func:`write_atomic`), so a config kept in a dotfiles repository
    stays there. An existing backup is never overwritten (two bad loads in one second), and
    the backup is made private: a rename keeps the old mode, which may be 0644.
    """
    real = Path(os.path.realpath(path))
    stem = f"{real.name}.bad-{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}"
    backup = real.with_name(stem)
    counter = 1
    while os.path.lexists(backup):
        backup = real.with_name(f"{stem}-{counter}")
        counter += 1
    os.replace(real, backup)
    with contextlib.suppress(OSError):  # not ours to chmod (another owner): keep the content
        os.chmod(backup, PRIVATE_FILE_MODE)
    return backup


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
    api = _section(ApiConfig(), raw.get("api", {}), "api", path, warnings)
    return Config(roles=roles, pool=pool, hotkeys=hotkeys, api=api)


T = TypeVar("T", RoleConfig, PoolConfig, HotkeyConfig, ApiConfig)


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
        if key in SAMPLING_KEYS:
            problem = sampling_problem(key, value)
            if problem is None:
                values[key] = float(value) if expected is float else value
            else:
                warnings.append(f"{path}: {where}.{key} = {value!r}: {problem}; using the "
                                f"default {getattr(default, key)!r}.")
            continue
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
    if key == "port":
        return "port number (0 to 65535; 0 = any free port)"
    if key == "host":
        return "host name or address (a non-empty string)"
    if key == "cors_origins":
        return 'list of origins such as ["http://localhost:3000"]'
    if key == "engine":
        return 'engine ("local" or "remote")'
    if key == "url":
        return 'URL such as "http://gpu-box:8080"'
    return {bool: "true/false", int: "whole number", float: "number"}.get(expected, "string")


def _coerce(value: Any, expected: type, key: str) -> Any:
    if key in ("model", "mmproj"):
        if value == "" or value is None:
            return None
        # "~/models/x.gguf" written by hand must reach the pool as a path it can open
        return os.path.expanduser(value) if isinstance(value, str) else _BAD
    if key == "cors_origins":
        return _origins(value)
    if key == "engine":
        return value if value in ("local", "remote") else _BAD
    if key == "url":
        ok = isinstance(value, str) and value.startswith(("http://", "https://"))
        return value.strip().rstrip("/") if ok else _BAD
    if key == "port":
        ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 65535
        return value if ok else _BAD
    if key == "host":
        return value.strip() if isinstance(value, str) and value.strip() else _BAD
    if expected is bool:
        return value if isinstance(value, bool) else _BAD
    if expected is int:
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 \
            else _BAD
    if expected is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
        return float(value) if ok else _BAD
    return value if isinstance(value, str) else _BAD


def _origins(value: Any) -> Any:
    """``[api] cors_origins``: a list of "scheme://host[:port]" strings (or "*"), kept as a
    tuple so the config stays hashable; a trailing slash is dropped, as browsers send none."""
    if not isinstance(value, list):
        return _BAD
    origins: list[str] = []
    for item in value:
        if not isinstance(item, str):
            return _BAD
        origin = item.strip().rstrip("/")
        if origin != "*" and not origin.startswith(("http://", "https://")):
            return _BAD
        origins.append(origin)
    return tuple(origins)


def to_toml(config: Config) -> str:
    """Serialise ``config``; only non-default role settings, all pool, hotkey and api
    settings.

    ``tomli_w`` escapes what a hand-rolled writer forgets (a newline or tab in a path would
    break the whole file). ``None`` is left out: TOML has no null, and a missing key reads
    back as the default (no model).
    """
    document: dict[str, Any] = {}
    roles: dict[str, dict[str, Any]] = {}
    for name in ROLES:
        role = config.role(name)
        base = default_role(name)
        changed = {f.name: getattr(role, f.name) for f in fields(role)
                   if getattr(role, f.name) != getattr(base, f.name)
                   and getattr(role, f.name) is not None}
        if changed:
            roles[name] = changed
    if roles:
        document["roles"] = roles
    sections: tuple[tuple[str, PoolConfig | HotkeyConfig | ApiConfig], ...] = (
        ("pool", config.pool), ("hotkeys", config.hotkeys), ("api", config.api))
    for title, section in sections:
        document[title] = {f.name: _toml_value(getattr(section, f.name)) for f in fields(section)
                           if getattr(section, f.name) is not None}
    return tomli_w.dumps(document)


def _toml_value(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def save_config(path: Path, config: Config) -> None:
    """Write atomically: a crash mid-write leaves the old file, never half a new one."""
    write_atomic(path, to_toml(config))


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) so readers see the old or the new file, never half.

    Why each step: the symlink is resolved first so ``os.replace`` lands on its target and the
    link survives; the temp file is created 0600 next to the target (same filesystem, so the
    replace is atomic) and chmod-ed in case the umask took bits away; any failure removes the
    temp file and re-raises, leaving the old file untouched. Folders created on the way are 0700.
    """
    target = Path(os.path.realpath(path))
    ensure_private_dir(target.parent)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp",
                                    dir=target.parent)
    try:
        handle = open(fd, "w", encoding="utf-8")  # closed by the ``with`` below
    except BaseException:
        os.close(fd)
        _remove_quietly(tmp_name)
        raise
    try:
        with handle:
            if hasattr(os, "fchmod"):  # POSIX; Windows has no group/other bits to take away
                os.fchmod(handle.fileno(), PRIVATE_FILE_MODE)
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        _remove_quietly(tmp_name)
        raise
    _fsync_dir(target.parent)


def _remove_quietly(name: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(name)


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable too (POSIX); folders cannot be opened this way on Windows."""
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
