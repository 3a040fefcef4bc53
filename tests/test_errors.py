"""Errors cross the process boundary as dicts: type, message and traceback survive, even for
exceptions that cannot be pickled."""

from __future__ import annotations

import json
import pickle
import threading

import pytest

from hivetray.errors import (
    CircuitOpen,
    ContextOverflow,
    RemoteError,
    WorkerCrashed,
    error_from_wire,
    error_to_wire,
)


class HoldsALock(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = threading.Lock()


def raise_and_catch(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


def test_unpicklable_exception_still_arrives_with_type_message_and_traceback() -> None:
    exc = raise_and_catch(HoldsALock("the lock is held"))
    with pytest.raises(TypeError):
        pickle.dumps(exc)
    wire = json.loads(json.dumps(error_to_wire(exc)))  # it is plain JSON
    rebuilt = error_from_wire(wire)
    assert isinstance(rebuilt, RemoteError)
    assert rebuilt.type_name == "HoldsALock"
    assert "the lock is held" in str(rebuilt)
    assert rebuilt.remote_traceback is not None and "raise_and_catch" in rebuilt.remote_traceback


def test_our_errors_come_back_as_the_same_class_with_their_fields() -> None:
    rebuilt = error_from_wire(error_to_wire(ContextOverflow(9000, 4096)))
    assert isinstance(rebuilt, ContextOverflow)
    assert (rebuilt.prompt_tokens, rebuilt.n_ctx) == (9000, 4096)
    assert "prompt is 9000 tokens, context is 4096" in str(rebuilt)


def test_crash_error_names_role_signal_log_and_tail() -> None:
    error = WorkerCrashed("chat", -6, "/logs/worker-chat.log", "GGML_ASSERT failed")
    rebuilt = error_from_wire(error_to_wire(error))
    assert isinstance(rebuilt, WorkerCrashed)
    assert str(rebuilt).startswith("the chat worker was killed by SIGABRT; its log is "
                                   "/logs/worker-chat.log")
    assert rebuilt.log_tail == "GGML_ASSERT failed"


def test_circuit_open_message_says_when_to_retry() -> None:
    error = CircuitOpen("chat", 4, 60, 41.6)
    assert str(error).startswith("the chat worker crashed 4 times in 60 s; retrying in 42 s")


def test_unprintable_exception_message_does_not_lose_the_error() -> None:
    class BadStr(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    wire = error_to_wire(BadStr())
    assert wire["type"] == "BadStr" and wire["message"] == "<unprintable message>"
