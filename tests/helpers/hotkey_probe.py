"""A tiny Qt app for the real X11 hotkey tests: ``python -m tests.helpers.hotkey_probe SEQ``.

It runs on the xcb platform (the test process itself is offscreen, and one process has one Qt
platform), registers ``SEQ`` through :class:`HotkeyManager` and prints one JSON object a line:

* ``{"event": "ready", "status": {...}}`` once registered,
* ``{"event": "activated", "t": <CLOCK_MONOTONIC seconds>, "state": <X modifier state>}``,
* ``{"event": "status", "status": {...}}`` after each command.

Commands on stdin, one a line: ``register SEQ``, ``unregister``, ``stats`` (auto-repeats
swallowed so far), ``quit``. stdin is read with a
socket notifier so the Qt event loop never blocks on it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from typing import Any

from PySide6.QtCore import QSocketNotifier
from PySide6.QtGui import QGuiApplication

from hivetray.ui.hotkeys import HotkeyManager, HotkeyStatus


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def as_dict(status: HotkeyStatus) -> dict[str, Any]:
    return dataclasses.asdict(status)


def main() -> int:
    sequence = sys.argv[1] if len(sys.argv) > 1 else "Ctrl+Alt+Space"
    app = QGuiApplication([sys.argv[0], "-platform", "xcb"])
    manager = HotkeyManager()

    def on_activated() -> None:
        # the X11 backend records the modifier state it saw (lock bits matter to the tests)
        state = getattr(manager.backend, "last_state", 0)
        emit(event="activated", t=time.monotonic(), state=state)

    manager.activated.connect(on_activated)
    status = manager.register(sequence)
    emit(event="ready", platform=QGuiApplication.platformName(), status=as_dict(status))

    buffer = bytearray()

    def on_stdin() -> None:
        chunk = os.read(0, 4096)
        if not chunk:
            app.quit()
            return
        buffer.extend(chunk)
        while b"\n" in buffer:
            line, _, rest = bytes(buffer).partition(b"\n")
            buffer[:] = rest
            command, _, arg = line.decode().strip().partition(" ")
            if command == "register":
                emit(event="status", status=as_dict(manager.register(arg)))
            elif command == "unregister":
                manager.unregister()
                emit(event="status", status=as_dict(manager.status))
            elif command == "stats":
                emit(event="status", status=as_dict(manager.status),
                     repeats_ignored=getattr(manager.backend, "repeats_ignored", None))
            elif command == "quit":
                manager.close()
                app.quit()

    notifier = QSocketNotifier(0, QSocketNotifier.Type.Read)
    notifier.activated.connect(on_stdin)
    code = app.exec()
    manager.close()
    return code


if __name__ == "__main__":
    sys.exit(main())
