"""Start-to-tray time and idle memory: Hivetray vs a bare PySide6 tray icon (docs/performance.md).

On ``Xvfb`` + ``trayer`` (the end-to-end tests' X helpers, so "docked" means the same thing:
a window with the process's ``_NET_WM_PID`` reparented into trayer's panel), each candidate is
started as ``python ...`` with the same environment and measured for

- ``start_ms``: from just before ``Popen`` to the first poll that sees the icon docked
  (polled every ~5 ms plus the cost of one ``xdotool``/``xwininfo`` call);
- ``rss_mib`` / ``uss_mib``: the process alone (not its children), 3 s after docking.

Hivetray runs ``python -m hivetray`` with a config naming the tiny chat model (not loaded: no
request is made). The baseline is a minimal ``QApplication`` + ``QSystemTrayIcon`` with an icon.
Runs alternate (the order flips every pair), one discarded warm-up each, N=5 by default.
Targets: start ≤ 1.5× and RSS ≤ 1.3× the bare icon (medians).

``--exe dist/hivetray/hivetray`` adds a third candidate, ``hivetray_frozen``: the packaged
(PyInstaller one-dir) executable, measured the same way (``--exe`` may be given more than once,
e.g. an AppImage as well; each is named after its file).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from _common import BENCH_DIR, arg_parser, bench_home, chat_config, emit, log, median, summarize

sys.path.insert(0, str(BENCH_DIR.parent))
from tests.ui.test_tray_e2e import (
    Win,
    XSession,
    docked_icon,
    missing_x_tools,
    stop_process,
    trayer_panel,
    x_session,
)

TARGET_START_RATIO = 1.5
TARGET_RSS_RATIO = 1.3
IDLE_S = 3.0
BARE_TRAY = """\
import sys
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import QApplication, QMenu, QSystemTrayIcon
app = QApplication(sys.argv)
pixmap = QPixmap(22, 22)
pixmap.fill(QColor("#2a9d8f"))
icon = QSystemTrayIcon(QIcon(pixmap))
menu = QMenu()
menu.addAction("Quit").triggered.connect(app.quit)
icon.setContextMenu(menu)
icon.show()
sys.exit(app.exec())
"""
COMMANDS = {"hivetray": [sys.executable, "-m", "hivetray"],
            "bare_pyside6": [sys.executable, "-c", BARE_TRAY]}


def add_executables(paths: list[str]) -> None:
    """Measure packaged executables too (``--exe``), named ``hivetray_frozen`` and so on."""
    for n, path in enumerate(paths):
        exe = Path(path).resolve()
        if not exe.is_file():
            raise SystemExit(f"--exe {path}: no such file")
        COMMANDS["hivetray_frozen" if n == 0 else f"hivetray_exe_{exe.name}"] = [str(exe)]


def one_run(kind: str, session: XSession, panel: Win, log_dir: Path) -> dict[str, float]:
    err = log_dir / f"{kind}-{time.monotonic_ns()}.err"
    with open(err, "wb") as stderr:
        t0 = time.perf_counter()
        proc = subprocess.Popen(COMMANDS[kind], env=session.env(), stdout=subprocess.DEVNULL,
                                stderr=stderr)
    try:
        deadline = t0 + 60
        while docked_icon(session, proc.pid, panel) is None:
            if proc.poll() is not None or time.perf_counter() > deadline:
                raise RuntimeError(f"{kind} did not dock (exit {proc.poll()}): "
                                   + err.read_text(errors="replace")[-500:])
            time.sleep(0.005)
        start_ms = (time.perf_counter() - t0) * 1000
        time.sleep(IDLE_S)  # part of the protocol: memory of the idle app, 3 s after docking
        mem = psutil.Process(proc.pid).memory_full_info()
        return {"start_ms": round(start_ms, 1), "rss_mib": round(mem.rss / 2**20, 2),
                "uss_mib": round(mem.uss / 2**20, 2)}
    finally:
        code = stop_process(proc, grace=10)
        if kind.startswith("hivetray") and code != 0:
            log(f"hivetray exited {code} on SIGTERM")


def main() -> None:
    parser = arg_parser(__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=5, help="measured runs per candidate")
    parser.add_argument("--exe", action="append", default=[], metavar="PATH",
                        help="also measure a packaged executable (PyInstaller one-dir, AppImage)")
    args = parser.parse_args()
    add_executables(args.exe)
    if missing := missing_x_tools():
        raise SystemExit(f"tray_start needs {', '.join(missing)} (Debian: xvfb trayer xdotool "
                         "x11-utils)")
    started = time.perf_counter()
    from hivetray.config import save_config

    runs: dict[str, list[dict[str, float]]] = {kind: [] for kind in COMMANDS}
    with bench_home("hvb-tray-") as home, x_session(trayer=True) as session:
        save_config(home.paths().config_file, chat_config(home.chat_model))
        panel = trayer_panel(session)
        assert panel is not None
        for kind in COMMANDS:
            log(f"warm-up {kind}: {one_run(kind, session, panel, home.root)}")
        for k in range(args.n):
            order = list(COMMANDS) if k % 2 == 0 else list(reversed(COMMANDS))
            for kind in order:
                runs[kind].append(one_run(kind, session, panel, home.root))
                log(f"{kind} #{k + 1}: {runs[kind][-1]}")
    result: dict[str, Any] = {"n": args.n, "idle_s": IDLE_S, "display_server": "Xvfb+trayer"}
    medians: dict[str, dict[str, float]] = {}
    for kind, rows in runs.items():
        result[kind] = {metric: summarize([r[metric] for r in rows], 2)
                        for metric in ("start_ms", "rss_mib", "uss_mib")}
        result[kind]["runs"] = rows
        medians[kind] = {m: median([r[m] for r in rows]) for m in ("start_ms", "rss_mib")}
    start_ratio = medians["hivetray"]["start_ms"] / medians["bare_pyside6"]["start_ms"]
    rss_ratio = medians["hivetray"]["rss_mib"] / medians["bare_pyside6"]["rss_mib"]
    result["ratios"] = {"start": round(start_ratio, 3), "rss": round(rss_ratio, 3)}
    for kind in COMMANDS:
        if kind.startswith("hivetray_"):
            result["ratios"][kind] = {
                "start": round(medians[kind]["start_ms"] / medians["bare_pyside6"]["start_ms"], 3),
                "rss": round(medians[kind]["rss_mib"] / medians["bare_pyside6"]["rss_mib"], 3)}
    result["targets"] = {"start": TARGET_START_RATIO, "rss": TARGET_RSS_RATIO}
    result["meets_target"] = {"start": start_ratio <= TARGET_START_RATIO,
                              "rss": rss_ratio <= TARGET_RSS_RATIO}
    emit("tray_start", result, args.out, started)


if __name__ == "__main__":
    main()
