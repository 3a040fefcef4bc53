"""One wording per error: the CLI's text stays word for word, a window names the button, and
the typed remedy survives every boundary (the wire, the status reply, events)."""

from __future__ import annotations

import json

import pytest

from hivetray.errors import (
    ChecksumMismatch,
    CircuitOpen,
    ContextOverflow,
    InsufficientMemory,
    InternalError,
    RoleInError,
    RoleUnconfigured,
    WorkerCrashed,
    error_from_wire,
    error_to_wire,
)
from hivetray.pool.events import Event, EventKind
from hivetray.pool.states import RoleState
from hivetray.pool.status import PoolStatus, RoleStatus
from hivetray.wording import (
    Act,
    Fix,
    Remedy,
    Wording,
    button_for,
    cli_hint,
    notification_text,
    window_hint,
    window_text,
)

MEMORY = InsufficientMemory("chat needs ~1.4 GiB of memory, 924 MiB free", "chat", 1, 2,
                            Remedy(Fix.FREE_MEMORY, "chat", stop=("vision (2.0 GiB)",),
                                   n_ctx=4096))

#: the CLI's words before the wording layer existed, to the letter (black-box tests match them)
CLI_TEXT = [
    (RoleUnconfigured("chat"), "no model is set for the chat role: set one with `hivetray models "
                               "set chat FILE.gguf` or in Settings"),
    (CircuitOpen("chat", 4, 60, 41.6), "the chat worker crashed 4 times in 60 s; retrying in 42 s "
                                       "(or now: hivetray retry chat)"),
    (RoleInError("chat", "boom"), "the chat role is in error: boom (after fixing it: hivetray "
                                  "retry chat)"),
    (MEMORY, "chat needs ~1.4 GiB of memory, 924 MiB free; stop vision (2.0 GiB) or lower n_ctx "
             "(4096) in Settings, then: hivetray retry chat"),
    (ContextOverflow(9000, 4096), "prompt is 9000 tokens, context is 4096: shorten the "
                                  "conversation or raise n_ctx for this role in Settings"),
    (InternalError("internal error (KeyError: 'x')", Remedy(Fix.REPORT_BUG)),
     "internal error (KeyError: 'x'); please report it with the app log (`hivetray logs`)"),
    (ChecksumMismatch("/m.gguf", "sha256:a", "sha256:b"),
     "/m.gguf: checksum mismatch (expected sha256 sha256:a, got sha256:b); the file was "
     "deleted: download it again"),
]


@pytest.mark.parametrize(("error", "text"), CLI_TEXT, ids=lambda v: type(v).__name__)
def test_the_cli_text_is_unchanged(error: Exception, text: str) -> None:
    assert str(error) == text


def test_a_window_names_the_button_where_the_cli_names_the_command() -> None:
    assert window_text(RoleUnconfigured("chat")) == (
        "no model is set for the chat role: choose a model file (Browse…) or press Download in "
        "Settings → Chat")
    assert window_text(CircuitOpen("chat", 4, 60, 41.6)).endswith(
        "retrying in 42 s (or press Retry to try now)")
    assert window_text(MEMORY) == (
        "chat needs ~1.4 GiB of memory, 924 MiB free; stop vision (2.0 GiB) in the status "
        "window or lower its Context size (4096) in Settings, then press Retry")
    in_error = RoleInError("chat", MEMORY.wording)
    assert "hivetray retry chat (after fixing it: hivetray retry chat)" in str(in_error)
    assert window_text(in_error) == "the chat role is in error: " + window_text(MEMORY)


def test_beside_its_button_the_text_is_the_problem_alone() -> None:
    unconfigured = RoleUnconfigured("vision").wording
    button = button_for(unconfigured.remedy)
    assert button is not None and (button.label, button.act, button.role) == (
        "Set one…", Act.OPEN_SETTINGS, "vision")
    assert unconfigured.beside(button) == "no model is set for the vision role"
    retry = button_for(MEMORY.wording.remedy)
    assert retry is not None and retry.label == "Retry" and retry.act is Act.RETRY
    assert MEMORY.wording.beside(retry) == window_text(MEMORY)  # stop X first: said in words


@pytest.mark.parametrize("fix", list(Fix))
def test_every_remedy_has_both_renderings_and_only_the_cli_names_commands(fix: Fix) -> None:
    remedy = Remedy(fix, "chat", path="/data/models", setting="HTTPS_PROXY",
                    stop=("vision (2.0 GiB)",), n_ctx=4096)
    for_window = window_hint(remedy)
    assert for_window and "hivetray " not in for_window and "`" not in for_window
    assert cli_hint(remedy) and cli_hint(remedy) != for_window


def test_the_wording_crosses_the_wire_typed() -> None:
    for error in (RoleUnconfigured("rerank"), MEMORY, RoleInError("chat", MEMORY.wording),
                  CircuitOpen("chat", 4, 60, 3)):
        rebuilt = error_from_wire(json.loads(json.dumps(error_to_wire(error))))
        assert type(rebuilt) is type(error) and str(rebuilt) == str(error)
        assert rebuilt.wording == error.wording
    crash = WorkerCrashed("chat", -9, "/logs/worker-chat.log", "tail")
    wire = error_to_wire(crash)
    assert "wording" not in wire["fields"]  # no remedy: nothing new on the wire
    assert error_from_wire(wire).wording == Wording(str(crash))
    assert window_text(crash) == "the chat worker was killed by SIGKILL; its log is " \
                                 "/logs/worker-chat.log"  # the tail stays in the log pane


def test_an_error_from_a_peer_without_wording_is_shown_as_its_message() -> None:
    wire = {"type": "RoleUnconfigured", "message": "no model is set", "fields": {"role": "x"}}
    assert error_from_wire(wire).wording == Wording("no model is set")
    wire["fields"] = {"role": "x", "wording": {"problem": "p", "remedy": {"fix": "new_thing"}}}
    assert error_from_wire(wire).wording == Wording("p")  # an unknown remedy is dropped


def test_the_status_reply_carries_the_failure_and_status_json_keeps_its_keys() -> None:
    row = RoleStatus("chat", RoleState.ERROR, last_error=str(MEMORY),
                     last_failure=MEMORY.wording)
    status = PoolStatus(7, (row,))
    back = PoolStatus.from_dict(json.loads(json.dumps(status.to_dict())))
    assert back.roles[0].last_failure == MEMORY.wording
    assert back.roles[0].error_for_window == window_text(MEMORY)
    assert "last_failure" not in status.status_json()["roles"][0]
    legacy = RoleStatus("chat", RoleState.ERROR, last_error="`odd` text\nand a tail")
    assert legacy.error_for_window == "“odd” text"


def test_an_event_words_its_notification_and_keeps_its_shape_without_one() -> None:
    plain = Event(EventKind.CRASH, "chat", "the chat worker was killed by SIGKILL\nlog tail")
    assert "wording" not in plain.to_dict()
    assert notification_text(plain) == "The chat worker was killed by SIGKILL"
    opened = CircuitOpen("chat", 4, 60, 41.6)
    event = Event(EventKind.BREAKER_OPEN, "chat", str(opened), wording=opened.wording)
    assert json.loads(json.dumps(event.to_dict()))["wording"]["remedy"]["fix"] == "retry_now"
    assert notification_text(event) == ("The chat worker crashed 4 times in 60 s; retrying in "
                                        "42 s (or press Retry to try now)")
