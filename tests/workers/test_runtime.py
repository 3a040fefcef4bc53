"""The worker's request loop and control thread, over real pipes, with a scripted handler."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import pytest

from hivetray.errors import error_from_wire
from hivetray.workers.context import RequestContext
from hivetray.workers.runtime import ControlThread, serve
from tests.helpers.waiting import wait_until


class Flag:
    def __init__(self) -> None:
        self.value = 0


class ScriptedHandler:
    """'count' streams chunks until cancelled (or n reached); 'fail' raises; 'block' waits."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.release = threading.Event()

    def info(self) -> dict[str, Any]:
        return {}

    def handle(self, method: str, params: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        self.calls.append(ctx.request_id)
        if method == "fail":
            raise KeyError("no such thing")
        if method == "block":
            self.release.wait(10)
            return {"released": True}
        sent = 0
        while sent < int(params.get("n", 10**9)) and not ctx.is_cancelled():
            ctx.emit({"text": "x"})
            sent += 1
            if sent == 3:
                self.release.wait(10)  # let the test cancel mid-stream
        return {"sent": sent}


@dataclass
class Worker:
    data: Connection
    control: Connection
    handler: ScriptedHandler
    ctl: ControlThread

    def request(self, rid: int, method: str, **params: Any) -> None:
        self.data.send({"type": "request", "id": rid, "method": method, "params": params})

    def replies_until_done(self, rid: int) -> list[dict[str, Any]]:
        out = []
        while True:
            assert self.data.poll(10), "the worker did not answer"
            msg = self.data.recv()
            out.append(msg)
            if msg["id"] == rid and msg["type"] in ("result", "error", "cancelled"):
                return out


@pytest.fixture
def worker() -> Iterator[Worker]:
    data_parent, data_child = multiprocessing.Pipe()
    control_parent, control_child = multiprocessing.Pipe()
    abort = Flag()
    ctl = ControlThread(control_child, abort, frozenset())
    ctl.start()
    handler = ScriptedHandler()
    loop = threading.Thread(target=serve, args=(handler, data_child, ctl, abort), daemon=True)
    loop.start()
    yield Worker(data_parent, control_parent, handler, ctl)
    handler.release.set()
    control_parent.send({"op": "shutdown"})
    loop.join(5)
    assert not loop.is_alive(), "serve() did not stop on shutdown"


def test_stream_then_result(worker: Worker) -> None:
    worker.handler.release.set()
    worker.request(1, "count", n=4)
    replies = worker.replies_until_done(1)
    assert [r["type"] for r in replies] == ["chunk"] * 4 + ["result"]
    assert replies[-1]["result"] == {"sent": 4}


def test_ping_is_answered_while_a_request_is_running(worker: Worker) -> None:
    worker.request(1, "block")
    worker.control.send({"op": "ping", "seq": 7})
    assert worker.control.poll(5)
    assert worker.control.recv() == {"op": "pong", "seq": 7}
    worker.handler.release.set()
    assert worker.replies_until_done(1)[-1]["result"] == {"released": True}


def test_cancel_mid_stream_stops_and_the_worker_serves_the_next(worker: Worker) -> None:
    worker.request(1, "count")
    for _ in range(3):
        assert worker.data.poll(5) and worker.data.recv()["type"] == "chunk"
    worker.control.send({"op": "cancel", "id": 1})
    # wait until the control thread recorded it, then let the handler go on
    wait_until(lambda: worker.ctl.is_cancelled(1), 5.0, interval=0.005, what="cancel recorded")
    worker.handler.release.set()
    replies = worker.replies_until_done(1)
    assert replies[-1]["type"] == "cancelled"
    worker.request(2, "count", n=2)
    assert worker.replies_until_done(2)[-1]["result"] == {"sent": 2}


def test_cancel_that_arrives_before_the_request_starts_is_not_lost(worker: Worker) -> None:
    worker.request(1, "block")
    worker.request(2, "count", n=5)  # queued behind the blocked one
    worker.control.send({"op": "cancel", "id": 2})
    wait_until(lambda: worker.ctl.is_cancelled(2), 5.0, interval=0.005, what="cancel recorded")
    worker.handler.release.set()
    worker.replies_until_done(1)
    assert worker.replies_until_done(2) == [{"type": "cancelled", "id": 2}]
    assert worker.handler.calls == [1]  # request 2 never reached the handler


def test_handler_exception_becomes_a_typed_error_reply(worker: Worker) -> None:
    worker.request(1, "fail")
    reply = worker.replies_until_done(1)[-1]
    assert reply["type"] == "error"
    error = error_from_wire(reply["error"])
    assert "KeyError" in str(error) and "no such thing" in str(error)
    assert error.remote_traceback is not None and "handle" in error.remote_traceback
