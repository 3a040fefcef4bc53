"""The X11 hotkey layer for real: ``Xvfb`` on a free display, ``tests/helpers/hotkey_probe.py``
(a Qt app on the xcb platform) registering through :class:`HotkeyManager`, and key presses from
outside with ``xdotool`` as a user's keyboard would send them (XTEST).

The probe is a subprocess because this test process already has an offscreen QApplication and
a process has one Qt platform. Its stdout goes to a file the test polls with a deadline.
"""

from __future__ import annotations

import ctypes
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hivetray.ui.hotkeys.keys import X_LOCK, X_MOD2
from tests.helpers.waiting import wait_until
from tests.helpers.x11 import XSession, missing_x_tools, stop_process, x_session

pytestmark = pytest.mark.real
ROOT = Path(__file__).resolve().parents[3]
TOOLS = ("Xvfb", "xdotool", "xdpyinfo")
CTRL_ALT = 0x4 | 0x8


@dataclass
class Probe:
    proc: subprocess.Popen[bytes]
    out: Path

    def lines(self) -> list[dict[str, Any]]:
        text = self.out.read_text(errors="replace")
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line["event"] == kind]

    def alive(self) -> None:
        assert self.proc.poll() is None, (f"probe exited {self.proc.returncode}: "
                                          + self.out.read_text(errors="replace"))

    def wait_ready(self) -> dict[str, Any]:
        def ready() -> list[dict[str, Any]]:
            self.alive()
            return self.events("ready")

        status: dict[str, Any] = wait_until(ready, 20, what="probe ready")[0]["status"]
        return status

    def wait_activations(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        def enough() -> list[dict[str, Any]]:
            self.alive()
            found = self.events("activated")
            return found if len(found) >= count else []

        return wait_until(enough, timeout, what=f"{count} activation(s)")

    def command(self, line: str) -> dict[str, Any]:
        """Send a command; the status the probe answers with."""
        return dict(self.answer(line)["status"])

    def answer(self, line: str) -> dict[str, Any]:
        before = len(self.events("status"))
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()
        found = wait_until(lambda: self.events("status")[before:], 10, what=f"answer to {line}")
        return dict(found[0])


@pytest.fixture
def xvfb() -> Iterator[XSession]:
    if missing := missing_x_tools(TOOLS):
        pytest.skip(f"the X11 hotkey test needs {', '.join(missing)} (Debian: xvfb xdotool "
                    "x11-utils)")
    with x_session(trayer=False) as session:
        yield session


@pytest.fixture
def probe(xvfb: XSession, tmp_path: Path) -> Iterator[Callable[[str], Probe]]:
    probes: list[Probe] = []

    def start(sequence: str = "Ctrl+Alt+Space") -> Probe:
        out = tmp_path / f"probe{len(probes)}.jsonl"
        with open(out, "wb") as sink:
            proc = subprocess.Popen([sys.executable, "-m", "tests.helpers.hotkey_probe",
                                     sequence], cwd=ROOT, env=xvfb.env(), stdin=subprocess.PIPE,
                                    stdout=sink, stderr=subprocess.STDOUT)
        probes.append(Probe(proc, out))
        return probes[-1]

    yield start
    for item in probes:
        if item.proc.stdin is not None:
            item.proc.stdin.close()
        stop_process(item.proc)


def press(session: XSession, *keys: str, verb: str = "key") -> None:
    """``xdotool key`` (or ``keydown``/``keyup``) as a user's keyboard would, through XTEST."""
    done = subprocess.run(["xdotool", verb, *keys], env=session.env(), timeout=10,
                          check=False, capture_output=True)
    assert done.returncode == 0, done.stderr


class XTest:
    """Key presses straight through libXtst: measures latency without xdotool's start-up."""

    def __init__(self, display: str) -> None:
        self.x = ctypes.CDLL("libX11.so.6")
        self.xtst = ctypes.CDLL("libXtst.so.6")
        self.x.XOpenDisplay.restype = ctypes.c_void_p
        self.x.XOpenDisplay.argtypes = [ctypes.c_char_p]
        self.x.XKeysymToKeycode.restype = ctypes.c_ubyte
        self.x.XKeysymToKeycode.argtypes = [ctypes.c_void_p, ctypes.c_ulong]
        self.x.XFlush.argtypes = [ctypes.c_void_p]
        self.x.XCloseDisplay.argtypes = [ctypes.c_void_p]
        self.xtst.XTestFakeKeyEvent.argtypes = [ctypes.c_void_p, ctypes.c_uint, ctypes.c_int,
                                                ctypes.c_ulong]
        self.dpy = self.x.XOpenDisplay(display.encode())
        assert self.dpy

    def chord(self, keysyms: list[int]) -> float:
        """Press and release ``keysyms`` in order; the monotonic time the presses were sent."""
        codes = [int(self.x.XKeysymToKeycode(self.dpy, k)) for k in keysyms]
        for code in codes:
            self.xtst.XTestFakeKeyEvent(self.dpy, code, 1, 0)
        sent = time.monotonic()
        self.x.XFlush(self.dpy)
        for code in reversed(codes):
            self.xtst.XTestFakeKeyEvent(self.dpy, code, 0, 0)
        self.x.XFlush(self.dpy)
        return sent

    def close(self) -> None:
        self.x.XCloseDisplay(self.dpy)


def test_ctrl_alt_space_reaches_the_app_with_and_without_lock_keys(
        xvfb: XSession, probe: Callable[[str], Probe]) -> None:
    app = probe("Ctrl+Alt+Space")
    status = app.wait_ready()
    assert status == {"layer": "x11", "ok": True, "message": "Ctrl+Alt+Space is grabbed (X11)",
                      "sequence": "Ctrl+Alt+Space", "conflict": False, "pending": False}

    press(xvfb, "ctrl+alt+space")
    first = app.wait_activations(1)[0]
    assert first["state"] & 0xFF == CTRL_ALT

    press(xvfb, "Num_Lock")  # Num Lock on: the server now adds Mod2 to every key event
    press(xvfb, "ctrl+alt+space")
    numlock = app.wait_activations(2)[1]
    assert numlock["state"] & X_MOD2 and numlock["state"] & CTRL_ALT == CTRL_ALT
    press(xvfb, "Caps_Lock")  # both locks on
    press(xvfb, "ctrl+alt+space")
    both = app.wait_activations(3)[2]
    assert both["state"] & (X_LOCK | X_MOD2) == X_LOCK | X_MOD2
    press(xvfb, "Num_Lock")  # Caps Lock alone
    press(xvfb, "ctrl+alt+space")
    caps = app.wait_activations(4)[3]
    assert caps["state"] & (X_LOCK | X_MOD2) == X_LOCK
    press(xvfb, "Caps_Lock")

    # other combinations and the bare key do not fire
    press(xvfb, "ctrl+space", "alt+space", "space", "ctrl+alt+shift+space")
    press(xvfb, "ctrl+alt+space")  # a sentinel: the one that must come fifth
    assert app.wait_activations(5)[4]["state"] & 0xFF == CTRL_ALT
    assert len(app.events("activated")) == 5


def test_holding_the_hotkey_fires_once(xvfb: XSession, probe: Callable[[str], Probe]) -> None:
    """Auto-repeat (the server repeats a held key) must not fire again, like MOD_NOREPEAT."""
    app = probe("Ctrl+Alt+Space")
    assert app.wait_ready()["ok"]
    press(xvfb, "ctrl+alt+space", verb="keydown")
    try:
        app.wait_activations(1)
        # the server's auto-repeat starts after its delay (660 ms on Xvfb): wait for repeats
        wait_until(lambda: (app.answer("stats")["repeats_ignored"] or 0) >= 3, 10,
                   what="auto-repeated presses", interval=0.1)
    finally:
        press(xvfb, "ctrl+alt+space", verb="keyup")
    assert len(app.events("activated")) == 1
    press(xvfb, "ctrl+alt+space")  # released and pressed again: fires again
    app.wait_activations(2)


def test_activation_latency(xvfb: XSession, probe: Callable[[str], Probe]) -> None:
    """From the key press leaving the sender to the ``activated`` signal in the app."""
    app = probe("Ctrl+Alt+Space")
    assert app.wait_ready()["ok"]
    try:
        xtest = XTest(xvfb.display)
    except OSError:
        pytest.skip("libXtst is not installed")
    latencies = []
    try:
        for n in range(1, 21):
            sent = xtest.chord([0xFFE3, 0xFFE9, 0x20])  # Control_L, Alt_L, space
            latencies.append(app.wait_activations(n)[n - 1]["t"] - sent)
    finally:
        xtest.close()
    median = statistics.median(latencies)
    print(f"\nhotkey latency XTEST → activated: median {median * 1000:.2f} ms, "
          f"max {max(latencies) * 1000:.2f} ms over {len(latencies)} presses")
    # every press is delivered on its own (none waits for the next); the millisecond target
    # (p95 <= 50 ms to a visible window) is bench/hotkey_show.py's, on a quiet machine
    assert median < 1.0, latencies


def test_a_key_held_by_another_program_is_reported_as_a_conflict(
        probe: Callable[[str], Probe], xvfb: XSession) -> None:
    first = probe("Ctrl+Alt+Space")
    assert first.wait_ready()["ok"]
    second = probe("Ctrl+Alt+Space")
    status = second.wait_ready()
    assert status["layer"] == "x11" and status["ok"] is False and status["conflict"] is True
    assert status["message"] == (
        "Ctrl+Alt+Space is taken by another program (X11 BadAccess); choose another shortcut or "
        "bind `hivetray toggle-chat` in your desktop's keyboard shortcut settings")
    # the loser grabbed nothing (no half grab left over): its other shortcut works, and the
    # winner still gets Ctrl+Alt+Space
    assert second.command("register Ctrl+Alt+K")["ok"]
    press(xvfb, "ctrl+alt+space")
    first.wait_activations(1)
    press(xvfb, "ctrl+alt+k")
    second.wait_activations(1)
    assert len(first.events("activated")) == 1

    # once the first lets go, the second can take it
    assert first.command("unregister")["ok"] is False
    taken = second.command("register Ctrl+Alt+Space")
    assert taken["ok"] and taken["message"] == "Ctrl+Alt+Space is grabbed (X11)"
    press(xvfb, "ctrl+alt+space")
    second.wait_activations(2)
    assert len(first.events("activated")) == 1
