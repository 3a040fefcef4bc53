"""End to end on a real X server with a real tray host: ``Xvfb :N`` + ``trayer``, the real app
started as ``python -m hivetray`` (xcb platform), observed and driven from outside with
``xwininfo``/``xdotool`` and the command line only.

The X helpers (``x_session``, ``docked_icon``, ...) live in ``tests/helpers/x11.py``;
``bench/tray_start.py`` and ``scripts/screenshots`` import them from here, so they stay importable
under this module's name.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import make_config
from tests.helpers.waiting import process_gone, wait_until
from tests.helpers.x11 import (
    Win,
    XSession,
    click,
    docked_icon,
    missing_x_tools,
    popup_menus,
    stop_process,
    tray_selection_owner,
    trayer_panel,
    visible_named,
    x_session,
)

pytestmark = pytest.mark.real
HIVETRAY = [sys.executable, "-m", "hivetray"]
STATUS_TITLE = "Hivetray — Status"



# -- the app under test -----------------------------------------------------------------------
@dataclass
class AppRun:
    proc: subprocess.Popen[bytes]
    out: Path
    session: XSession

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> None:
        assert self.proc.poll() is None, (f"app exited {self.proc.returncode}: "
                                          + self.out.read_text(errors="replace"))

    def wait_running(self, timeout: float = 30.0) -> None:
        def running() -> bool:
            self.alive()
            return f"hivetray: running (pid {self.pid})" in self.out.read_text(errors="replace")

        wait_until(running, timeout, what="the app printed its running line", interval=0.05)

    def wait_docked(self, timeout: float = 30.0) -> Win:
        def docked() -> Win | None:
            self.alive()
            return docked_icon(self.session, self.pid)

        icon = wait_until(docked, timeout, what="icon docked in trayer", interval=0.05)
        self.wait_running()
        assert icon is not None
        return icon

    def menu(self) -> Win:
        menus = wait_until(lambda: popup_menus(self.session, self.pid), 10, what="menu mapped")
        return menus[0]

    def status_window(self, timeout: float = 10.0) -> Win:
        window: Win = wait_until(lambda: visible_named(self.session, STATUS_TITLE), timeout,
                                 what="status window visible")[0]
        assert self.session.x("xdotool", "getwindowpid", str(window.wid)).strip() == str(self.pid)
        return window

    def descendants(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []


def cli(session: XSession, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HIVETRAY, *args], capture_output=True, text=True, timeout=30,
                          env=session.env(), check=False)


def status(session: XSession) -> dict[str, Any]:
    result = cli(session, "status", "--json")
    assert result.returncode == 0, result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def _x_fixture(trayer: bool) -> Iterator[XSession]:
    if missing := missing_x_tools():
        pytest.skip(f"end-to-end tray tests need {', '.join(missing)} (Debian packages xvfb "
                    "trayer xdotool x11-utils)")
    with x_session(trayer=trayer) as session:
        yield session


@pytest.fixture
def tray_x() -> Iterator[XSession]:
    yield from _x_fixture(trayer=True)


@pytest.fixture
def bare_x() -> Iterator[XSession]:
    yield from _x_fixture(trayer=False)


@pytest.fixture
def launch(home: Any, tmp_path: Path) -> Iterator[Callable[[XSession], AppRun]]:
    """Start ``python -m hivetray`` on a display; afterwards kill it and everything it started."""
    runs: list[AppRun] = []

    def start(session: XSession) -> AppRun:
        out = tmp_path / f"app{len(runs)}.log"
        with open(out, "wb") as log:
            proc = subprocess.Popen(HIVETRAY, stdout=log, stderr=log, env=session.env())
        runs.append(AppRun(proc, out, session))
        return runs[-1]

    yield start
    for run in runs:
        leftovers = run.descendants()
        stop_process(run.proc)
        for child in leftovers + run.descendants():
            with contextlib.suppress(psutil.Error):
                child.kill()


# -- tests ----------------------------------------------------------------------------------------
def test_icon_docks_in_the_tray_and_status_lists_the_roles(
        tray_x: XSession, launch: Callable[[XSession], AppRun], write_config: Any,
        tiny_models: dict[str, Path]) -> None:
    write_config(make_config(tiny_models["chat"]))
    app = launch(tray_x)
    icon = app.wait_docked()
    panel = trayer_panel(tray_x)
    assert panel is not None
    assert panel.x <= icon.x and icon.x + icon.w <= panel.x + panel.w, (icon, panel)
    assert panel.y <= icon.y and icon.y + icon.h <= panel.y + panel.h, (icon, panel)
    assert icon.w >= 16 and icon.h >= 16
    assert not visible_named(tray_x, STATUS_TITLE)  # a tray exists: no window pops up
    doc = status(tray_x)
    assert doc["pid"] == app.pid
    assert [row["role"] for row in doc["roles"]] == ["chat", "vision", "embed", "rerank"]
    assert [row["state"] for row in doc["roles"]] == ["stopped"] + ["unconfigured"] * 3


def test_right_click_opens_the_menu_whose_last_item_quits(
        tray_x: XSession, launch: Callable[[XSession], AppRun]) -> None:
    app = launch(tray_x)
    icon = app.wait_docked()
    assert not popup_menus(tray_x, app.pid)
    click(tray_x, *icon.centre, button=3)
    menu = app.menu()
    assert menu.h >= 10 * 18, menu  # 4 role lines + at least 6 entries
    assert abs(menu.y - (icon.y + icon.h)) < 40 or menu.y + menu.h <= icon.y, (menu, icon)
    # close it by clicking elsewhere (after Escape, Qt/xcb without a window manager swallows
    # the next click on the icon: a bare PySide6 tray icon does the same)
    click(tray_x, 10, 400, button=1)
    wait_until(lambda: not popup_menus(tray_x, app.pid), 10, what="the menu closed")
    click(tray_x, *icon.centre, button=3)
    menu = app.menu()
    click(tray_x, menu.x + menu.w // 3, menu.y + menu.h - 10, button=1)  # "Quit Hivetray"
    assert app.proc.wait(15) == 0


def test_left_click_opens_the_status_window(
        tray_x: XSession, launch: Callable[[XSession], AppRun]) -> None:
    app = launch(tray_x)
    icon = app.wait_docked()
    assert not visible_named(tray_x, STATUS_TITLE)
    click(tray_x, *icon.centre, button=1)
    app.status_window()


def test_second_launch_exits_zero_and_shows_the_status_window(
        tray_x: XSession, launch: Callable[[XSession], AppRun]) -> None:
    app = launch(tray_x)
    app.wait_docked()
    assert not visible_named(tray_x, STATUS_TITLE)
    second = cli(tray_x)
    assert second.returncode == 0, second.stderr
    window = app.status_window()
    assert window.w >= 600 and window.h >= 400, window
    app.alive()  # the first instance keeps running


def quit_cleanly(session: XSession, app: AppRun) -> None:
    """``hivetray quit``: exit 0, and every process the app started is gone soon after."""
    family = app.descendants()
    result = cli(session, "quit")
    assert result.returncode == 0, result.stderr
    assert app.proc.wait(15) == 0
    wait_until(lambda: all(process_gone(p.pid) for p in family), 5,
               what="every process the app started is gone")


def test_quit_exits_zero_and_leaves_no_worker(
        tray_x: XSession, launch: Callable[[XSession], AppRun], write_config: Any,
        tiny_models: dict[str, Path]) -> None:
    write_config(make_config(tiny_models["chat"]))
    app = launch(tray_x)
    app.wait_docked()
    reply = cli(tray_x, "chat", "hello", "--max-tokens", "4")
    assert reply.returncode == 0 and reply.stdout.strip(), reply.stderr
    chat = status(tray_x)["roles"][0]
    assert chat["role"] == "chat" and chat["state"] == "ready", chat
    worker = psutil.Process(chat["pid"])
    assert worker.ppid() == app.pid
    assert worker in app.descendants()
    quit_cleanly(tray_x, app)


def test_malformed_config_is_kept_aside_and_the_app_still_starts(
        tray_x: XSession, launch: Callable[[XSession], AppRun], home: Any) -> None:
    bad = '[roles.chat]\nmodel = "unterminated\n'
    home.config_file.write_text(bad, encoding="utf-8")
    app = launch(tray_x)
    app.wait_docked()
    backups = list(home.config_file.parent.glob("config.toml.bad-*"))
    assert len(backups) == 1 and backups[0].read_text(encoding="utf-8") == bad
    assert not home.config_file.exists()
    assert {row["state"] for row in status(tray_x)["roles"]} == {"unconfigured"}  # defaults
    log = home.app_log.read_text(encoding="utf-8", errors="replace")
    assert "line 2" in log and backups[0].name in log, log[-2000:]


def test_without_a_tray_host_the_status_window_opens(
        bare_x: XSession, launch: Callable[[XSession], AppRun]) -> None:
    assert tray_selection_owner(bare_x.display) == 0
    app = launch(bare_x)
    app.status_window(timeout=30)
    app.wait_running()
    assert cli(bare_x, "quit").returncode == 0
    assert app.proc.wait(15) == 0
