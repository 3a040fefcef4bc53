"""The first run: when the welcome window opens by itself, and setting a model from it.

Why a rule of its own: a person who installs Hivetray and starts it has no model, and the
first thing they would otherwise meet is a failed chat reply. The welcome window is shown at
start-up while Hivetray cannot know the person has found their way:

* no role has a model in ``config.toml`` (a local ``model``, or a remote ``url``): once any is
  set, by any means (the welcome's buttons, Settings, ``hivetray models``), it is not shown;
* and the person has not dismissed it: closing it (Esc, Close) or choosing "Try the built-in
  model now" writes ``data/welcome.json``, and it is not shown again by itself.
* and config.toml read cleanly (absent, or without a warning): a file that could not be read
  whole is somebody's settings, not a first run; the notice about it is what they need to see,
  not a welcome on top of it.

The built-in demo model does not count as "a model is set": it is never in ``config.toml``, and
the welcome is where the person learns it exists and how to get a real one. Settings can always
reopen the window, whatever this rule says. Nothing here imports Qt.
"""

from __future__ import annotations

import json
import time
from enum import StrEnum
from pathlib import Path

from hivetray.config import Config, load_config, save_config, write_atomic
from hivetray.models.validate import check_role
from hivetray.paths import AppPaths

#: the flag's file name in the data folder (beside workers.json, never in config.toml)
FLAG_NAME = "welcome.json"


class Dismissal(StrEnum):
    """How the person left the welcome window (written to the flag, for support)."""

    CLOSED = "closed"
    BUILTIN = "builtin"


def flag_path(paths: AppPaths) -> Path:
    return paths.data_dir / FLAG_NAME


def any_model_set(config: Config) -> bool:
    """Whether ``config`` (as read from config.toml, never the pool's copy with the built-in
    model) gives any role a model or a remote engine."""
    return any(role.configured for role in config.roles.values())


def dismissed(paths: AppPaths) -> bool:
    return flag_path(paths).exists()


def should_welcome(config: Config, paths: AppPaths, *, config_warnings: bool = False) -> bool:
    """The rule of this module's docstring: no role set in ``config``, not dismissed, and
    config.toml read without a warning (``config_warnings``)."""
    return not config_warnings and not any_model_set(config) and not dismissed(paths)


def remember_dismissed(paths: AppPaths, how: Dismissal) -> None:
    """Write the flag atomically (0600, as everything Hivetray writes); an existing flag is
    kept as it is, so it says how the window was first left."""
    path = flag_path(paths)
    if path.exists():
        return
    write_atomic(path, json.dumps({"dismissed": how.value, "at": round(time.time())}) + "\n")


def set_role_model(paths: AppPaths, role: str, model: str) -> Config:
    """Check ``model`` for ``role`` as the pool will (``check_role``: a ``ModelLoadError``
    saying what is wrong with the file, and nothing written), then write it into config.toml
    atomically, keeping every other setting; return the new config.

    What ``hivetray models set`` does, minus its printing and its reload over the socket:
    the caller is the running instance, which applies the file itself.
    """
    check_role(role, model, None)
    config = load_config(paths.config_file).config.with_role(role, model=model, engine="local",
                                                             url=None)
    save_config(paths.config_file, config)
    return config
