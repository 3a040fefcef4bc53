"""Entry point: ``python -m hivetray`` and the ``hivetray`` console script."""

from __future__ import annotations

import multiprocessing
import os
import sys


def main() -> int:
    # first, so worker subprocesses start correctly inside a frozen (PyInstaller) build
    multiprocessing.freeze_support()
    # everything Hivetray creates (logs, history, config, sockets, downloads, and what its
    # workers write) is private to the user, whatever umask the session has
    os.umask(0o077)
    if len(sys.argv) == 1:
        # the everyday launch: skip the CLI's imports so the tray icon appears sooner
        from hivetray.app import run_desktop
        from hivetray.paths import app_paths

        return run_desktop(app_paths())
    from hivetray.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
