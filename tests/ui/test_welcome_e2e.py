"""The first run end to end on Xvfb + trayer, as a person meets it after installing: the real
app (``python -m hivetray``) on an empty HIVETRAY_HOME with no built-in model
(HIVETRAY_NO_BUILTIN_MODEL=1, set by the ``home`` fixture) opens a top-level window titled
"Hivetray — Welcome"; with a model in config.toml it does not. Observed from outside with
xdotool/xwininfo; quit with ``hivetray quit``, nothing left running."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hivetray import first_run
from hivetray.models import builtin
from hivetray.paths import AppPaths
from tests.conftest import make_config
from tests.helpers.waiting import wait_until
from tests.helpers.x11 import XSession, visible_named, window_tree
from tests.ui.test_tray_e2e import (  # noqa: F401  (fixtures)
    AppRun,
    launch,
    quit_cleanly,
    status,
    tray_x,
)

pytestmark = pytest.mark.real
TITLE = "Hivetray — Welcome"


def test_a_first_start_without_any_model_opens_the_welcome_window(
        tray_x: XSession, launch: Callable[[XSession], AppRun],  # noqa: F811
        home: AppPaths) -> None:
    assert os.environ[builtin.DISABLE_ENV] == "1" and not home.config_file.exists()
    app = launch(tray_x)
    app.wait_docked()
    [window] = wait_until(lambda: visible_named(tray_x, TITLE), 10,
                          what="the welcome window mapped")
    assert window.parent == 0, window  # a top-level window: a child of the root window
    assert tray_x.x("xdotool", "getwindowpid", str(window.wid)).strip() == str(app.pid)
    assert window.w >= 300 and window.h >= 200, window
    assert [row["state"] for row in status(tray_x)["roles"]] == ["unconfigured"] * 4
    quit_cleanly(tray_x, app)
    assert not first_run.dismissed(home)  # quitting is not closing it: the next start shows it


def test_a_start_with_a_model_set_shows_no_welcome_window(
        tray_x: XSession, launch: Callable[[XSession], AppRun],  # noqa: F811
        write_config: Any, tiny_models: dict[str, Path]) -> None:
    write_config(make_config(tiny_models["chat"]))
    app = launch(tray_x)
    app.wait_docked()  # the running line is printed after the welcome decision
    assert status(tray_x)["roles"][0]["state"] == "stopped"  # a round trip through its loop
    # it would have been built before the running line: no such window exists at all
    assert tray_x.x("xdotool", "search", "--name", TITLE).split() == []
    assert not [w for w in window_tree(tray_x).values() if TITLE in w.name]
    quit_cleanly(tray_x, app)
