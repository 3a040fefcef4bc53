"""Fake worker links for unit tests of the supervisor's logic (no processes)."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from hivetray.pool.transport import LinkSink
from hivetray.workers.spec import WorkerSpec

_pids = itertools.count(50_000)


class FakeClock:
    """A clock that only moves when told to (tests)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class FakeLink:
    """Records what the supervisor sends; the test plays the worker's part.

    ``exits_on`` names what makes the fake process exit by itself: "shutdown" (control
    message), "sigterm", "sigkill".
    """

    def __init__(self, spec: WorkerSpec, exits_on: frozenset[str]) -> None:
        self.spec = spec
        self.pid: int | None = next(_pids)
        self.exits_on = exits_on
        self.sink: LinkSink | None = None
        self.report_start_later = False
        self.sent: list[dict[str, Any]] = []
        self.control: list[dict[str, Any]] = []
        self.aborted: list[int] = []
        self.signals: list[str] = []
        self.closed = False
        self.exited = False

    # -- WorkerLink -------------------------------------------------------------------------
    def start(self, sink: LinkSink) -> None:
        self.sink = sink
        if self.pid is None:
            return
        if self.report_start_later:  # like the real link: pid known, report queued to the loop
            asyncio.get_running_loop().call_soon(sink.on_started, self.pid)
        else:
            sink.on_started(self.pid)

    def send(self, msg: dict[str, Any]) -> None:
        self.sent.append(msg)

    def send_control(self, msg: dict[str, Any]) -> None:
        self.control.append(msg)
        if msg.get("op") == "shutdown" and "shutdown" in self.exits_on:
            self._exit_soon(0)

    def abort(self, request_id: int) -> None:
        self.aborted.append(request_id)

    def terminate(self) -> None:
        self.signals.append("SIGTERM")
        if "sigterm" in self.exits_on:
            self._exit_soon(-15)

    def kill(self) -> None:
        self.signals.append("SIGKILL")
        if "sigkill" in self.exits_on:
            self._exit_soon(-9)

    def close(self) -> None:
        self.closed = True

    # -- the worker's part ------------------------------------------------------------------
    def ready(self, load_s: float = 0.01) -> None:
        assert self.sink is not None
        self.sink.on_message({"type": "ready", "load_s": load_s})

    def load_error(self, message: str = "bad magic") -> None:
        assert self.sink is not None
        self.sink.on_message({"type": "load_error", "error": {
            "type": "ModelLoadError", "message": message, "traceback": "", "fields": {}}})

    def chunk(self, request_id: int, text: str) -> None:
        assert self.sink is not None
        self.sink.on_message({"type": "chunk", "id": request_id, "data": {"text": text}})

    def result(self, request_id: int, completion_tokens: int = 3) -> None:
        assert self.sink is not None
        self.sink.on_message({"type": "result", "id": request_id, "result": {
            "usage": {"prompt_tokens": 5, "completion_tokens": completion_tokens},
            "finish_reason": "length", "tokens_per_s": 100.0}})

    def cancelled(self, request_id: int) -> None:
        assert self.sink is not None
        self.sink.on_message({"type": "cancelled", "id": request_id, "result": None})

    def pong(self, seq: int) -> None:
        assert self.sink is not None
        self.sink.on_control({"op": "pong", "seq": seq})

    def exit(self, code: int | None) -> None:
        assert self.sink is not None
        if not self.exited:
            self.exited = True
            self.sink.on_exit(code)

    def _exit_soon(self, code: int) -> None:
        asyncio.get_running_loop().call_soon(self.exit, code)

    @property
    def last_request_id(self) -> int:
        return int(self.sent[-1]["id"])


class FakeSpawner:
    def __init__(self, exits_on: frozenset[str] = frozenset({"shutdown"})) -> None:
        self.links: list[FakeLink] = []
        self.exits_on = exits_on
        self.fail_next: Exception | None = None
        self.report_start_later = False

    def __call__(self, spec: WorkerSpec) -> FakeLink:
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise error
        link = FakeLink(spec, self.exits_on)
        link.report_start_later = self.report_start_later
        self.links.append(link)
        return link

    @property
    def last(self) -> FakeLink:
        return self.links[-1]
