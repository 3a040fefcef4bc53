"""Composition root of the desktop app (tray, windows) — see issue 4.

Until the widgets exist, a launch shows the running instance's status window if there is one,
and otherwise runs the headless instance so the pool and the socket are available.
"""

from __future__ import annotations

import asyncio
import sys

from hivetray import ipc
from hivetray.paths import AppPaths


def run_desktop(paths: AppPaths) -> int:
    if ipc.instance_alive(paths.socket_path):
        asyncio.run(ipc.call(paths.socket_path, "show"))
        return 0
    from hivetray.daemon import run_daemon

    print("hivetray: the tray UI is not built yet; running the headless instance",
          file=sys.stderr)
    return run_daemon(paths)
