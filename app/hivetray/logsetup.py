"""The app log: every pool event and warning, size-bounded, in the data folder."""

from __future__ import annotations

import logging
import logging.handlers

from hivetray.paths import AppPaths


def setup_logging(paths: AppPaths, *, to_stderr: bool = False) -> None:
    paths.ensure()
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
