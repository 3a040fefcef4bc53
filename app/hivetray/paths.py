"""Where Hivetray keeps its files.

One function decides every location so that ``HIVETRAY_HOME`` (tests, portable installs) can
move *all* of them under a single folder, and the platformdirs defaults apply otherwise.
"""

from __future__ import annotations

import os
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import platformdirs

APP_NAME = "hivetray"
#: what Hivetray gives what it creates: only the user may read or enter it
PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700


@dataclass(frozen=True)
class AppPaths:
    """The folders and files of one Hivetray home."""

    config_dir: Path
    data_dir: Path
    cache_dir: Path
    home_key: str

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.toml"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def app_log(self) -> Path:
        return self.log_dir / "hivetray.log"

    @property
    def workers_record(self) -> Path:
        """Pids and start times of live workers, read at launch to sweep leftovers."""
        return self.data_dir / "workers.json"

    @property
    def history_db(self) -> Path:
        return self.data_dir / "history.sqlite3"

    @property
    def api_key_file(self) -> Path:
        """The HTTP API's bearer key (``hivetray.api.keys``): private, never in config.toml."""
        return self.data_dir / "api-key"

    def worker_log(self, role: str) -> Path:
        return self.log_dir / f"worker-{role}.log"

    @property
    def socket_path(self) -> Path:
        """A per-user, per-home socket path short enough for AF_UNIX (108 bytes)."""
        uid = os.getuid() if hasattr(os, "getuid") else 0
        base = Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir())
        return base / f"hivetray-{uid}" / f"{self.home_key}.sock"

    def ensure(self) -> None:
        """Create the folders, private to the user (0700) whatever the umask; folders made
        readable by an older version are closed too."""
        for folder in (self.config_dir, self.data_dir, self.cache_dir, self.log_dir):
            ensure_private_dir(folder)
            make_private(folder)


def make_private(path: Path) -> None:
    """chmod 0700 (folders) / 0600 (files); a no-op on Windows, where ACLs decide."""
    if os.name == "nt":
        return
    try:
        os.chmod(path, PRIVATE_DIR_MODE if path.is_dir() else PRIVATE_FILE_MODE)
    except OSError:
        pass  # not ours (a shared HIVETRAY_HOME set up by someone else): leave it


def app_paths() -> AppPaths:
    """Resolve the paths for this process, honouring ``HIVETRAY_HOME``."""
    home = os.environ.get("HIVETRAY_HOME")
    if home:
        root = Path(home).expanduser().resolve()
        paths = AppPaths(root / "config", root / "data", root / "cache", _key(str(root)))
    else:
        paths = AppPaths(
            Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)),
            Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)),
            Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False)),
            "default",
        )
    return paths


def _key(text: str) -> str:
    """A short stable name for a home folder (64 bits of two CRC-32s).

    Not hashlib: importing it maps OpenSSL's libcrypto (~4 MiB) into the tray app for nothing.
    """
    data = text.encode()
    return f"{zlib.crc32(data):08x}{zlib.crc32(data[::-1], 0x9E3779B9):08x}"


def ensure_private_dir(folder: Path) -> None:
    """Create ``folder`` and its missing parents as 0700; leave existing folders alone.

    ``mkdir(mode=...)`` is filtered by the umask and ``parents=True`` ignores ``mode`` for the
    parents, so each created level is created one by one and chmod-ed explicitly.
    """
    missing: list[Path] = []
    current = folder
    while not current.is_dir():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for level in reversed(missing):
        try:
            level.mkdir(mode=PRIVATE_DIR_MODE)
        except FileExistsError:
            if level.is_dir():
                continue  # made by someone else meanwhile: not ours to chmod
            raise
        os.chmod(level, PRIVATE_DIR_MODE)
