"""X servers for end-to-end tests: ``Xvfb`` on a free display (and ``trayer`` as a tray host),
and the window queries the tests observe it with (``xwininfo``/``xdotool``/``xprop``).

Shared by the tray end-to-end tests, the hotkey tests, ``bench/tray_start.py`` and
``scripts/screenshots`` (through ``tests.ui.test_tray_e2e``) so that "docked" means the same
everywhere: a window with the app's ``_NET_WM_PID`` that trayer has reparented into its panel
(XEmbed).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers.waiting import wait_until

X_TOOLS = ("Xvfb", "trayer", "xdotool", "xwininfo", "xdpyinfo", "xprop")
TRAYER_ARGS = ["--edge", "top", "--align", "right", "--widthtype", "pixel", "--width", "200",
               "--height", "32"]
_TREE_LINE = re.compile(r"^(\s*)(0x[0-9a-f]+) (.*)  (\d+)x(\d+)\+(-?\d+)\+(-?\d+)"
                        r"  \+(-?\d+)\+(-?\d+)$")


def missing_x_tools(tools: Sequence[str] = X_TOOLS) -> list[str]:
    return [tool for tool in tools if shutil.which(tool) is None]


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
