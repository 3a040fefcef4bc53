"""Composition root of the desktop app: config + pool + instance socket + tray + windows.

The Qt event loop *is* the asyncio loop (qasync), so the pool, the socket and the widgets share
one thread and no locks. Start-up order is chosen for speed: the tray icon is shown first; the
pool (sweep of leftovers, pinned roles) and the socket start right after; no model is loaded
until it is used.
"""

from __future__ import annotations

import contextlib
import sys
from typing import TYPE_CHECKING

from hivetray.lean_imports import without_openssl
from hivetray.paths import AppPaths
from hivetray.probe import instance_alive

if TYPE_CHECKING:
    from PySide6.QtWidgets import QSystemTrayIcon

    from hivetray.config import Config


def run_desktop(paths: AppPaths) -> int:
    """Start the tray app, or hand over to the running instance (it shows its status window).

    Order matters for start-up time: the icon is docked straight after ``QApplication`` exists;
    the pool, the socket and everything else are imported and started after that.
    """
    if instance_alive(paths.socket_path):
        import asyncio

        from hivetray import ipc

        asyncio.run(ipc.call(paths.socket_path, "show"))
        return 0
    if _no_display():
        print("hivetray: no graphical session here (DISPLAY and WAYLAND_DISPLAY are unset); "
              "run `hivetray daemon` for the headless instance", file=sys.stderr)
        return 1
    from PySide6.QtWidgets import QApplication, QSystemTrayIcon

    app = QApplication.instance() or QApplication(sys.argv)
    assert isinstance(app, QApplication)
    app.setApplicationName("Hivetray")
    app.setDesktopFileName("hivetray")
    app.setQuitOnLastWindowClosed(False)
    early_icon: QSystemTrayIcon | None = None
    if QSystemTrayIcon.isSystemTrayAvailable():
        from hivetray.ui.icons import Health, health_icon

        early_icon = QSystemTrayIcon(health_icon(Health.OK))
        early_icon.setToolTip("Hivetray — starting")
        early_icon.show()

    from hivetray.config import load_config

    loaded = load_config(paths.config_file)
    # a remote role on https:// needs OpenSSL in this process; otherwise it stays out (~8 MiB)
    lean = contextlib.nullcontext() if uses_tls(loaded.config) else without_openssl()
    with lean:
        import asyncio

        import qasync

        from hivetray.desktop import DesktopApp
        from hivetray.logsetup import setup_logging

    setup_logging(paths)
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    desktop = DesktopApp(paths, loaded, early_icon)
    with loop:
        return int(loop.run_until_complete(desktop.run()))


def uses_tls(config: Config) -> bool:
    """Whether a role is served by a remote engine over https:// (the tray then keeps TLS)."""
    return any(role.remote and (role.url or "").lower().startswith("https:")
               for role in config.roles.values())


def _no_display() -> bool:
    """Linux/BSD without X or Wayland: Qt would abort the process with a cryptic message."""
    import os

    if sys.platform in ("win32", "darwin") or os.environ.get("QT_QPA_PLATFORM"):
        return False
    return not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
