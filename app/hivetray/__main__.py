"""Entry point: ``python -m hivetray`` and the ``hivetray`` console script."""

from __future__ import annotations

import multiprocessing
import sys


def main() -> int:
    # first, so worker subprocesses start correctly inside a frozen (PyInstaller) build
    multiprocessing.freeze_support()
    from hivetray.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
