"""Parent-death watchdog: a worker never outlives the app, even one killed by SIGKILL.

A thread blocks on the parent's sentinel (multiprocessing gives spawned children one: a pipe on
POSIX, a process handle on Windows) and ends the process as soon as it fires.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import sys
import threading


def start_parent_watchdog() -> None:
    parent = multiprocessing.parent_process()
    if parent is None:  # started by hand (tests of the runtime): nothing to watch
        return
    sentinel = parent.sentinel

    def watch() -> None:
        multiprocessing.connection.wait([sentinel])
        try:
            print("hivetray worker: the app process is gone; exiting", file=sys.stderr,
                  flush=True)
        finally:
            os._exit(70)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()
