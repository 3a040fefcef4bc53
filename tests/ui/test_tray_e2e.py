"""End to end on a real X server with a real tray host: ``Xvfb :N`` + ``trayer``, the real app
started as ``python -m hivetray`` (xcb platform), observed and driven from outside with
``xwininfo``/``xdotool`` and the command line only.

The X helpers at the top (``x_session``, ``docked_icon``, ...) are also used by
``bench/tray_start.py`` and ``scripts/screenshots`` so that "docked" means the same everywhere:
a window with the app's ``_NET_WM_PID`` that trayer has reparented into its panel (XEmbed).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import make_config
from tests.helpers.waiting import process_gone, wait_until

pytestmark = pytest.mark.real
HIVETRAY = [sys.executable, "-m", "hivetray"]
STATUS_TITLE = "Hivetray — Status"
X_TOOLS = ("Xvfb", "trayer", "xdotool", "xwininfo", "xdpyinfo", "xprop")
TRAYER_ARGS = ["--edge", "top", "--align", "right", "--widthtype", "pixel", "--width", "200",
               "--height", "32"]
_TREE_LINE = re.compile(r"^(\s*)(0x[0-9a-f]+) (.*)  (\d+)x(\d+)\+(-?\d+)\+(-?\d+)"
                        r"  \+(-?\d+)\+(-?\d+)$")


# -- X helpers ------------------------------------------------------------------------------------
def missing_x_tools() -> list[str]:
    return [tool for tool in X_TOOLS if shutil.which(tool) is None]


@dataclass
class XSession:
    display: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        """Environment for a Qt app on this display (xcb, never offscreen)."""
        env = dict(os.environ)
        env.update(DISPLAY=self.display, QT_QPA_PLATFORM="xcb", PYTHONUNBUFFERED="1",
                   GGML_NO_BACKTRACE="1")
        return env

    def x(self, *args: str) -> str:
        """Run an X client on this display; its stdout ('' when it fails)."""
        proc = subprocess.run(args, capture_output=True, text=True, timeout=10, check=False,
                              env={**os.environ, "DISPLAY": self.display})
        return proc.stdout if proc.returncode == 0 else ""


def start_xvfb(session: XSession, first: int = 90, size: str = "1280x800x24") -> None:
    """Start ``Xvfb`` on the first free display from ``first`` up; wait until it answers."""
    for n in range(first, first + 60):
        if Path(f"/tmp/.X11-unix/X{n}").exists() or Path(f"/tmp/.X{n}-lock").exists():
            continue
        proc = subprocess.Popen(["Xvfb", f":{n}", "-screen", "0", size, "-nolisten", "tcp",
                                 "-noreset"], stderr=subprocess.DEVNULL)
        session.procs.append(proc)
        deadline = time.monotonic() + 10
        while proc.poll() is None and time.monotonic() < deadline:
            if subprocess.run(["xdpyinfo", "-display", f":{n}"], capture_output=True,
                              check=False).returncode == 0:
                session.display = f":{n}"
                return
            time.sleep(0.02)
        stop_process(proc)  # lost a race for this display number (or hung): try the next
    raise RuntimeError(f"no free X display in :{first}..:{first + 59}")


def tray_selection_owner(display: str) -> int:
    """The window owning ``_NET_SYSTEM_TRAY_S0`` (0 = no tray host), through libX11."""
    x11, ptr, ulong = ctypes.CDLL("libX11.so.6"), ctypes.c_void_p, ctypes.c_ulong
    x11.XOpenDisplay.restype, x11.XOpenDisplay.argtypes = ptr, [ctypes.c_char_p]
    x11.XInternAtom.restype, x11.XInternAtom.argtypes = ulong, [ptr, ctypes.c_char_p, ctypes.c_int]
    x11.XGetSelectionOwner.restype, x11.XGetSelectionOwner.argtypes = ulong, [ptr, ulong]
    x11.XCloseDisplay.argtypes = [ptr]
    if not (dpy := x11.XOpenDisplay(display.encode())):
        return 0
    try:
        return int(x11.XGetSelectionOwner(dpy, x11.XInternAtom(dpy, b"_NET_SYSTEM_TRAY_S0", 0)))
    finally:
        x11.XCloseDisplay(dpy)


def start_trayer(session: XSession) -> None:
    proc = subprocess.Popen(["trayer", *TRAYER_ARGS], env=session.env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    session.procs.append(proc)

    def ready() -> bool:
        assert proc.poll() is None, f"trayer exited with {proc.returncode}"
        return bool(tray_selection_owner(session.display) and trayer_panel(session))

    wait_until(ready, 10, what="trayer owns the tray selection and shows its panel")


@contextlib.contextmanager
def x_session(trayer: bool) -> Iterator[XSession]:
    """Xvfb (and trayer); both are killed on the way out, whatever happened."""
    session = XSession(display="")
    try:
        start_xvfb(session)
        if trayer:
            start_trayer(session)
        yield session
    finally:
        for proc in reversed(session.procs):
            stop_process(proc)


def stop_process(proc: subprocess.Popen[Any], grace: float = 3.0) -> int | None:
    """SIGTERM, then SIGKILL; always reaped. The exit code (None if it had to be killed)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            return None
    return proc.returncode


@dataclass(frozen=True)
class Win:
    wid: int
    parent: int
    name: str
    x: int  # absolute
    y: int
    w: int
    h: int

    @property
    def centre(self) -> tuple[int, int]:
        return self.x + self.w // 2, self.y + self.h // 2


def window_tree(session: XSession) -> dict[int, Win]:
    """Every window from ``xwininfo -root -tree``, with its parent and absolute geometry."""
    windows: dict[int, Win] = {}
    stack: list[tuple[int, int]] = []  # (indent, wid)
    for line in session.x("xwininfo", "-root", "-tree").splitlines():
        match = _TREE_LINE.match(line)
        if match is None:
            continue
        indent, wid = len(match[1]), int(match[2], 16)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        parent = stack[-1][1] if stack else 0
        windows[wid] = Win(wid, parent, match[3], int(match[8]), int(match[9]),
                           int(match[4]), int(match[5]))
        stack.append((indent, wid))
    return windows


def trayer_panel(session: XSession) -> Win | None:
    tree = window_tree(session)
    ids = {int(w) for w in session.x("xdotool", "search", "--class", "trayer").split()}
    panels = [tree[w] for w in ids if w in tree and tree[w].w > 1 and tree[w].h > 1
              and tree[w].name.startswith('"panel"')]
    return panels[0] if panels else None


def pid_windows(session: XSession, pid: int, *, visible: bool = False) -> set[int]:
    flags = ["--onlyvisible"] if visible else []
    return {int(w) for w in session.x("xdotool", "search", *flags, "--pid", str(pid)).split()}


def docked_icon(session: XSession, pid: int, panel: Win | None = None) -> Win | None:
    """The window of process ``pid`` embedded (reparented) into trayer's panel, if any."""
    panel = panel or trayer_panel(session)
    wids = pid_windows(session, pid)
    if panel is None or not wids:
        return None
    tree = window_tree(session)
    for wid in wids:
        win, hops = tree.get(wid), 0
        while win is not None and hops < 8:
            if win.parent == panel.wid:
                icon = tree[wid]
                return icon if icon.w > 1 and icon.h > 1 else None
            win, hops = tree.get(win.parent), hops + 1
    return None


def window_types(session: XSession, wid: int) -> str:
    return session.x("xprop", "-id", str(wid), "_NET_WM_WINDOW_TYPE")


def popup_menus(session: XSession, pid: int) -> list[Win]:
    """Mapped popup-menu windows of process ``pid``."""
    tree = window_tree(session)
    return [tree[w] for w in pid_windows(session, pid, visible=True)
            if w in tree and "_NET_WM_WINDOW_TYPE_POPUP_MENU" in window_types(session, w)]


def visible_named(session: XSession, name: str) -> list[Win]:
    tree = window_tree(session)
    ids = session.x("xdotool", "search", "--onlyvisible", "--name", name).split()
    return [tree[int(w)] for w in ids if int(w) in tree]


def click(session: XSession, x: int, y: int, button: int) -> None:
    session.x("xdotool", "mousemove", str(x), str(y), "click", str(button))


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
    family = app.descendants()
    assert worker in family
    result = cli(tray_x, "quit")
    assert result.returncode == 0, result.stderr
    assert app.proc.wait(15) == 0
    wait_until(lambda: all(process_gone(p.pid) for p in family), 5,
               what="every process the app started is gone")


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
