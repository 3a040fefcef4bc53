"""Entry point: ``python -m hivetray`` and the ``hivetray`` console script."""

from __future__ import annotations

import multiprocessing
import sys


def main() -> int:
    # first, so worker subprocesses start correctly inside a frozen (PyInstaller) build
    multiprocessing.freeze_support()
    if len(sys.argv) == 1:
        # the everyday launch: skip the CLI's imports so the tray icon appears sooner
        from hivetray.app import run_desktop
        from hivetray.paths import app_paths

        return run_desktop(app_paths())
    from hivetray.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
