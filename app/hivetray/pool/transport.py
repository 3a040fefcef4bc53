"""The parent's end of one worker process: two pipes, an abort flag, and two helper threads.

- data channel: requests out, chunks/results/errors in;
- control channel: ping/pong, cancel, shutdown — never behind a long stream;
- abort flag: shared memory holding the id of the request to stop, seen by the worker at once.

No blocking pipe read runs on the event loop: a reader thread waits on both pipes *and* the
process sentinel, so a worker that dies while idle is noticed at once, and it hands every message
to the loop with ``call_soon_threadsafe``. A writer thread sends requests so a big payload to a
busy worker never blocks the loop either.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import pickle
import queue
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from typing import Any, Protocol

from hivetray.errors import PayloadTooLarge, WorkerBusy
from hivetray.workers.spec import GROUP_SIGNALS, MAX_PAYLOAD_BYTES, WorkerSpec

log = logging.getLogger(__name__)
#: request bytes waiting for one worker's pipe; past this, callers get WorkerBusy (so a flood of
#: 30 MiB images cannot pile up in the app's memory)
MAX_QUEUED_BYTES = 256 * 2**20


class LinkSink(Protocol):
    """Callbacks a link delivers on the loop thread."""

    def on_message(self, msg: dict[str, Any]) -> None: ...

    def on_control(self, msg: dict[str, Any]) -> None: ...

    def on_exit(self, exitcode: int | None) -> None: ...

    def on_started(self, pid: int) -> None: ...

    def on_spawn_failed(self, reason: str) -> None: ...


class WorkerLink(Protocol):
    """What the supervisor needs of a worker; a fake implements it for unit tests."""

    pid: int | None

    def start(self, sink: LinkSink) -> None: ...

    def send(self, msg: dict[str, Any]) -> None: ...

    def send_control(self, msg: dict[str, Any]) -> None: ...

    def abort(self, request_id: int) -> None: ...

    def terminate(self) -> None: ...

    def kill(self) -> None: ...

    def close(self) -> None: ...


class Spawner(Protocol):
    def __call__(self, spec: WorkerSpec) -> WorkerLink: ...


class ProcessLink:
    """A real worker subprocess, started with the ``spawn`` method."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.loop: asyncio.AbstractEventLoop | None = None
        self.pid: int | None = None
        self._ctx = multiprocessing.get_context("spawn")
        self._abort = self._ctx.RawValue("q", 0)
        self._data, self._data_child = self._ctx.Pipe(duplex=True)
        self._control, self._control_child = self._ctx.Pipe(duplex=True)
        self._outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._control_lock = threading.Lock()
        self._process: Any = None
        self._signal_lock = threading.Lock()  # orders signals against the spawn thread's start
        self._kill_requested = False
        self._queued_lock = threading.Lock()
        self._queued_bytes = 0

    def start(self, sink: LinkSink) -> None:
        """Start the process from a helper thread; ``sink.on_started(pid)`` follows.

        fork/exec and handing the spawn data to the child take 5–30 ms: too long to block the
        event loop (and the UI) for. Messages sent meanwhile wait in the pipes and the outbox.
        """
        self.loop = asyncio.get_running_loop()
        threading.Thread(target=self._start_process, args=(sink,), daemon=True,
                         name=f"spawn-{self.spec.role}").start()

    def _start_process(self, sink: LinkSink) -> None:
        from hivetray.workers.runtime import worker_main

        process = self._ctx.Process(
            target=worker_main,
            args=(self.spec, self._data_child, self._control_child, self._abort),
            name=f"hivetray-{self.spec.role}",
            daemon=True,  # multiprocessing's own atexit is a last-resort net, not our shutdown
        )
        try:
            with _group_signals_blocked():
                process.start()
        except Exception as exc:  # fork failure, out of file descriptors or memory
            self._post(sink.on_spawn_failed, str(exc) or type(exc).__name__)
            return
        with self._signal_lock:
            self._process = process
            self.pid = process.pid
            if self._kill_requested and process.pid is not None:  # SIGKILL came before the start
                os.kill(process.pid, getattr(signal, "SIGKILL", signal.SIGTERM))
        # the child has its ends now; closing ours lets EOF tell us when it is gone
        self._data_child.close()
        self._control_child.close()
        self._post(sink.on_started, process.pid)  # queued before anything the reader posts
        threading.Thread(target=self._read_loop, args=(sink,), daemon=True,
                         name=f"reader-{self.spec.role}-{self.pid}").start()
        threading.Thread(target=self._write_loop, daemon=True,
                         name=f"writer-{self.spec.role}-{self.pid}").start()

    def send(self, msg: dict[str, Any]) -> None:
        payload = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise PayloadTooLarge(len(payload), MAX_PAYLOAD_BYTES)
        with self._queued_lock:
            if self._queued_bytes and self._queued_bytes + len(payload) > MAX_QUEUED_BYTES:
                raise WorkerBusy(self.spec.role, round(self._queued_bytes / 2**20),
                                 "MiB of requests")
            self._queued_bytes += len(payload)
        self._outbox.put(payload)

    def send_control(self, msg: dict[str, Any]) -> None:
        with self._control_lock:
            try:
                self._control.send(msg)
            except (OSError, ValueError):
                pass  # the process is gone; the reader thread reports the exit

    def abort(self, request_id: int) -> None:
        self._abort.value = request_id
        self.send_control({"op": "cancel", "id": request_id})

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)
        # a stopped (SIGSTOPped, hung in a debugger) process only acts on SIGTERM once continued
        if hasattr(signal, "SIGCONT"):
            self._signal(signal.SIGCONT)

    def kill(self) -> None:
        with self._signal_lock:
            self._kill_requested = True
        self._signal(getattr(signal, "SIGKILL", signal.SIGTERM))

    def _signal(self, sig: int) -> None:
        with self._signal_lock:
            if self.pid is None or self._process is None or self._process.exitcode is not None:
                return  # not started yet (a pending SIGKILL is delivered on start) or reaped
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def close(self) -> None:
        """Release the pipes and the process object once the process has been reaped."""
        self._outbox.put(None)
        for conn in (self._data, self._control):
            conn.close()
        if self._process is not None:
            self._process.join(timeout=0)
            if self._process.exitcode is not None:
                self._process.close()

    def _post(self, callback: Callable[..., None], *args: Any) -> None:
        assert self.loop is not None
        try:
            self.loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            pass  # the loop is closed: nobody is listening any more

    def _write_loop(self) -> None:
        while (payload := self._outbox.get()) is not None:
            try:
                self._data.send_bytes(payload)
            except (OSError, ValueError):
                return
            finally:
                with self._queued_lock:
                    self._queued_bytes -= len(payload)

    def _read_loop(self, sink: LinkSink) -> None:
        readers: dict[Any, Callable[[dict[str, Any]], None]] = {
            self._data: sink.on_message, self._control: sink.on_control,
        }
        sentinel = self._process.sentinel
        waiting: list[Any] = [*readers, sentinel]
        dead = False
        while readers:
            ready = multiprocessing.connection.wait(waiting, timeout=0.5 if dead else None)
            if dead and not ready:
                break  # process gone and nothing more arrives: stop draining
            for item in ready:
                if item is sentinel:
                    dead = True
                    waiting.remove(sentinel)
                    continue
                conn: Connection = item  # type: ignore[assignment]
                try:
                    msg = conn.recv()
                except (EOFError, OSError):
                    del readers[conn]
                    waiting.remove(conn)
                    continue
                self._post(readers[conn], msg)
        self._process.join()
        self._post(sink.on_exit, self._process.exitcode)


@contextlib.contextmanager
def _group_signals_blocked() -> Iterator[None]:
    """Block the process-group signals in this (spawn) thread while the child is created.

    A child inherits its creator's signal mask across fork and exec, so a Ctrl-C that arrives
    while the worker's interpreter starts stays pending until the worker has moved to its own
    process group and ignores SIGINT (``workers.runtime``). The app's other threads still take
    the signals as usual. Windows has no process groups or masks: the platform check is what
    the type checker follows, ``hasattr`` stays the runtime test for any other such system.
    """
    if sys.platform == "win32" or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, GROUP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def process_spawner(spec: WorkerSpec) -> WorkerLink:
    """The production spawner: a real ``spawn``-method subprocess."""
    return ProcessLink(spec)
