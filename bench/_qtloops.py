"""qasync event loops for the benchmarks, and a probe for a fatal PySide6 refcount bug.

- ``qasync``: stock ``qasync.QEventLoop``. Its ``call_soon_threadsafe`` (what the pool's reader
  threads call for every worker message) is ``Signal.emit`` → queued slot on the loop thread →
  ``call_soon`` → a 0 ms Qt timer → the handle runs: two Qt dispatches per wakeup.
- ``qasync_pipe``: the same loop with ``call_soon_threadsafe`` replaced by a self-pipe: append
  the handle to a deque, write one byte to a socketpair watched by a ``QSocketNotifier``; the
  notifier's slot runs the queued handles at once. One Qt dispatch, no Python-side emit.

The probe: PySide6 6.12.0 on Python 3.11 returns ``None``/``True`` from methods without taking a
reference (every void call such as ``QTimer.setInterval`` or ``QObject.killTimer`` drops one
reference to ``None``; every ``Signal.emit`` drops one to ``True``). CPython < 3.12 aborts with
"Fatal Python error: none_dealloc / bool_dealloc" once the count reaches zero: after a few
hundred emits, or a few tens of thousands of void calls (qasync makes several per callback).
Python ≥ 3.12 is immune (immortal singletons); PySide6 6.11.3 does not have the bug.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import socket
import sys
from typing import Any


def ensure_app() -> Any:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QCoreApplication

    return QCoreApplication.instance() or QCoreApplication([sys.argv[0]])


def pyside_refcount_probe(samples: int = 4) -> dict[str, Any]:
    """Does this PySide6 drop references to None (void calls) or True (Signal.emit)?"""
    import PySide6
    from PySide6.QtCore import QObject, Signal

    class Probe(QObject):
        fired = Signal()

    probe = Probe()
    none_before, true_before = sys.getrefcount(None), sys.getrefcount(True)
    for _ in range(samples):
        probe.setObjectName("probe")  # void
        probe.fired.emit()
    none_lost = none_before - sys.getrefcount(None)
    true_lost = true_before - sys.getrefcount(True)
    return {"pyside6": PySide6.__version__, "python": sys.version.split()[0],
            "void_call_drops_none": none_lost >= samples,
            "emit_drops_true": true_lost >= samples,
            "none_refcount": sys.getrefcount(None), "true_refcount": sys.getrefcount(True)}


def make_loop(kind: str) -> asyncio.AbstractEventLoop:
    """``qasync`` (stock) or ``qasync_pipe`` (self-pipe ``call_soon_threadsafe``)."""
    import qasync
    from PySide6.QtCore import QSocketNotifier

    app = ensure_app()

    class PipeWakeupQEventLoop(qasync.QEventLoop):  # type: ignore[misc]
        def __init__(self, app: Any) -> None:
            super().__init__(app)
            self._ts_handles: collections.deque[asyncio.Handle] = collections.deque()
            self._ts_read, self._ts_write = socket.socketpair()
            self._ts_read.setblocking(False)
            self._ts_write.setblocking(False)
            self._ts_notifier = QSocketNotifier(self._ts_read.fileno(),
                                                QSocketNotifier.Type.Read)
            self._ts_notifier.activated.connect(self._ts_drain)

        def call_soon_threadsafe(self, callback: Any, *args: Any,
                                 context: Any = None) -> asyncio.Handle:
            handle = asyncio.Handle(callback, args, self, context=context)
            self._ts_handles.append(handle)  # deque.append is atomic under the GIL
            with contextlib.suppress(BlockingIOError, InterruptedError, OSError):
                self._ts_write.send(b"\0")  # full buffer = a wakeup is pending anyway
            return handle

        def _ts_drain(self, *_: Any) -> None:
            with contextlib.suppress(BlockingIOError, InterruptedError):
                while self._ts_read.recv(4096):
                    pass
            while self._ts_handles:
                handle = self._ts_handles.popleft()
                if not handle.cancelled():
                    handle._run()

        def close(self) -> None:
            self._ts_notifier.setEnabled(False)
            super().close()
            self._ts_read.close()
            self._ts_write.close()

    if kind == "qasync":
        return qasync.QEventLoop(app)  # type: ignore[no-any-return]
    if kind == "qasync_pipe":
        return PipeWakeupQEventLoop(app)
    raise ValueError(f"unknown qasync loop kind {kind!r}")
