"""The app log: every pool event and warning, size-bounded, in the data folder."""

from __future__ import annotations

import logging
import logging.handlers
import os

from hivetray.paths import AppPaths, make_private


def setup_logging(paths: AppPaths, *, to_stderr: bool = False) -> None:
    paths.ensure()
    # created private before the handler opens it (its backups are renames: they stay private)
    os.close(os.open(paths.app_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    make_private(paths.app_log)
    handler = logging.handlers.RotatingFileHandler(
        paths.app_log, maxBytes=2 * 2**20, backupCount=2, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    root.addHandler(handler)
    if to_stderr:
        console = logging.StreamHandler()
        console.setLevel(logging.WARNING)
        console.setFormatter(logging.Formatter("hivetray: %(levelname)s: %(message)s"))
        # events are JSON lines for the file; on a terminal they would drown everything else
        console.addFilter(lambda record: not record.name.startswith("hivetray.events"))
        root.addHandler(console)
