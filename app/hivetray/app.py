"""Composition root of the desktop app: config + pool + instance socket + tray + windows.

The Qt event loop *is* the asyncio loop (qasync), so the pool, the socket and the widgets share
one thread and no locks. Start-up order is chosen for speed: the tray icon is shown first; the
pool (sweep of leftovers, pinned roles) and the socket start right after; no model is loaded
until it is used.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from hivetray.paths import AppPaths
from hivetray.probe import instance_alive

if TYPE_CHECKING:
    from PySide6.QtWidgets import QSystemTrayIcon


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

    _import_asyncio_without_ssl()
    import asyncio

    import qasync

    from hivetray.config import load_config
    from hivetray.logsetup import setup_logging

    setup_logging(paths)
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    from hivetray.desktop import DesktopApp

    desktop = DesktopApp(paths, load_config(paths.config_file), early_icon)
    with loop:
        return int(loop.run_until_complete(desktop.run()))


def _import_asyncio_without_ssl() -> None:
    """Import asyncio without letting it load ``ssl`` (libssl + libcrypto, ~4 MiB of RSS).

    asyncio imports ``ssl`` eagerly but the tray app never makes a TLS connection on its loop:
    it only talks over a local socket. ``ssl`` stays importable afterwards for code that needs it
    (model downloads); only asyncio's own TLS transports are off in this process.
    """
    if "asyncio" in sys.modules:
        return
    missing = object()
    saved = sys.modules.get("ssl", missing)
    sys.modules["ssl"] = None  # type: ignore[assignment]  # makes `import ssl` fail, cleanly
    try:
        import asyncio  # noqa: F401
    finally:
        if saved is missing:
            del sys.modules["ssl"]
        else:
            sys.modules["ssl"] = saved  # type: ignore[assignment]
