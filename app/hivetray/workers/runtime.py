"""The worker process: entry point, control thread and request loop.

Threads inside a worker:
- main: loads the role's model, then serves requests from the data channel one at a time;
- control: answers pings and takes cancel/shutdown on the control channel, so liveness never
  waits behind a long generation;
- parent-watchdog: exits when the app dies;
- log-rotator: bounds the log file.
"""

from __future__ import annotations

import multiprocessing.connection
import os
import signal
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Protocol

from hivetray.errors import InvalidRequest, PayloadTooLarge, error_to_wire
from hivetray.workers.context import RequestContext, RoleHandler
from hivetray.workers.logcapture import private_output, redirect_output
from hivetray.workers.spec import GROUP_SIGNALS, MAX_LOG_BYTES, MAX_PAYLOAD_BYTES, WorkerSpec
from hivetray.workers.watchdog import start_parent_watchdog


class AbortFlag(Protocol):
    """The shared abort flag: holds the id of the request to abort (0 = none)."""

    value: int


class ControlThread(threading.Thread):
    """Pings, cancels and shutdown on the control channel; runs beside any generation."""

    def __init__(self, conn: Connection, abort: AbortFlag, faults: frozenset[str]) -> None:
        super().__init__(name="control", daemon=True)
        self.conn = conn
        self.abort = abort
        self.faults = faults
        self.cancelled: set[int] = set()
        self.lock = threading.Lock()
        self.shutdown = threading.Event()
        # wakes the request loop at once on shutdown (it waits on this and the data pipe)
        self.wake_reader, self._wake_writer = multiprocessing.Pipe(duplex=False)

    def _stop(self) -> None:
        self.shutdown.set()
        self._wake_writer.send(None)

    def run(self) -> None:
        while True:
            try:
                msg = self.conn.recv()
            except (EOFError, OSError):
                self._stop()  # the parent closed the channel: it is going away
                return
            op = msg.get("op")
            if op == "ping":
                self.conn.send({"op": "pong", "seq": msg.get("seq")})
            elif op == "cancel":
                with self.lock:
                    self.cancelled.add(int(msg["id"]))
            elif op == "shutdown" and "ignore_shutdown" not in self.faults:
                self.abort.value = -1
                self._stop()

    def is_cancelled(self, request_id: int) -> bool:
        if self.abort.value in (request_id, -1):
            return True
        with self.lock:
            return request_id in self.cancelled

    def forget(self, request_id: int) -> None:
        with self.lock:
            self.cancelled.discard(request_id)


def load_handler(spec: WorkerSpec) -> RoleHandler:
    if spec.role == "chat":
        from hivetray.workers.chat import ChatHandler

        return ChatHandler(spec)
    if spec.role == "vision":
        from hivetray.workers.vision import VisionHandler

        return VisionHandler(spec)
    if spec.role == "embed":
        from hivetray.workers.embed import EmbedHandler

        return EmbedHandler(spec)
    if spec.role == "rerank":
        from hivetray.workers.rerank import RerankHandler

        return RerankHandler(spec)
    raise InvalidRequest(f"this build has no worker for the {spec.role!r} role yet")


def worker_main(spec: WorkerSpec, data: Connection, control: Connection,
                abort: AbortFlag) -> None:
    """Entry point of every worker process (target of ``multiprocessing.Process``)."""
    leave_terminal_signals()
    redirect_output(Path(spec.log_path), MAX_LOG_BYTES)
    # a native abort's own message (GGML_ASSERT ...) must stay in the log's tail, not be pushed
    # out by the gdb backtrace ggml would attach first (and that costs ~0.7 s)
    os.environ.setdefault("GGML_NO_BACKTRACE", "1")
    print(f"--- hivetray {spec.role} worker pid {os.getpid()} starting "
          f"{time.strftime('%Y-%m-%d %H:%M:%S')} model={spec.model}", flush=True)
    start_parent_watchdog()
    if "ignore_sigterm" in spec.faults:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    ctl = ControlThread(control, abort, spec.faults)
    ctl.start()
    if "hang_load" in spec.faults:  # a frozen load: silent on its pipes, deaf to shutdown
        threading.Event().wait()
    started = time.perf_counter()
    try:
        handler = load_handler(spec)
    except BaseException as exc:
        traceback.print_exc()
        data.send({"type": "load_error", "error": error_to_wire(exc)})
        data.close()
        sys.stdout.flush()
        return
    load_s = time.perf_counter() - started
    data.send({"type": "ready", "load_s": load_s, "pid": os.getpid(), "info": handler.info()})
    serve(handler, data, ctl, abort)
    print(f"--- {spec.role} worker stopping (asked to shut down)", flush=True)


def leave_terminal_signals() -> None:
    """Take no signal meant for the app's terminal or service: the app stops its workers.

    Ctrl-C in a terminal running ``hivetray daemon`` (SIGINT to the foreground process group),
    or a service manager's SIGTERM to the group, would otherwise hit the workers directly and
    race the app's graceful stop (spurious crashes, pinned roles respawning while quitting).
    The worker moves to a process group of its own and ignores SIGINT/SIGHUP; the app's own
    SIGTERM (the stop escalation) is addressed to the pid and still works. The spawn thread
    blocked these signals while creating us (see ``pool.transport``): unblock them now that
    they are handled.
    """
    for name in ("SIGINT", "SIGHUP"):  # Windows has SIGINT only (a console's Ctrl-C)
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    if hasattr(os, "setpgid"):
        try:
            os.setpgid(0, 0)
        except OSError:
            pass  # already a group leader (started by hand): nothing to leave
    # Windows has no signal masks; the platform check is what the type checker follows there
    if sys.platform != "win32" and hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, GROUP_SIGNALS)


def serve(handler: RoleHandler, data: Connection, ctl: ControlThread, abort: AbortFlag) -> None:
    def send(msg: dict[str, Any]) -> None:
        data.send(msg)

    while not ctl.shutdown.is_set():
        ready = multiprocessing.connection.wait([data, ctl.wake_reader])
        if data not in ready:
            continue
        try:
            raw = data.recv_bytes(MAX_PAYLOAD_BYTES + 1024)
        except (EOFError, OSError):
            return
        msg = _loads(raw)
        rid = int(msg["id"])
        if ctl.is_cancelled(rid):
            send({"type": "cancelled", "id": rid})
            ctl.forget(rid)
            continue
        ctx = RequestContext(rid, send, lambda rid=rid: ctl.is_cancelled(rid))  # type: ignore[misc]
        try:
            with private_output():
                result = handler.handle(msg["method"], msg.get("params") or {}, ctx)
        except Exception as exc:
            traceback.print_exc()
            send({"type": "error", "id": rid, "error": error_to_wire(exc)})
        else:
            kind = "cancelled" if ctx.is_cancelled() else "result"
            send({"type": kind, "id": rid, "result": result})
        finally:
            ctl.forget(rid)
            if abort.value == rid:
                abort.value = 0


def _loads(raw: bytes) -> dict[str, Any]:
    import pickle

    if len(raw) > MAX_PAYLOAD_BYTES:
        raise PayloadTooLarge(len(raw), MAX_PAYLOAD_BYTES)
    msg: dict[str, Any] = pickle.loads(raw)
    return msg
