"""Entry script of the frozen (PyInstaller) build.

``hivetray.__main__.main`` calls ``multiprocessing.freeze_support()`` before anything else, so a
worker subprocess — the same executable started by the ``spawn`` start method with
``--multiprocessing-fork`` — runs ``hivetray.workers.runtime.worker_main`` instead of the app.
"""

import sys

from hivetray.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
