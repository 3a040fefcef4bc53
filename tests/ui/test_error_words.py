"""GUI words in GUI places: every kind of error, driven through every window surface that shows
errors, names a button or a menu item — never a `hivetray …` command or backticks.

The surfaces: the quick chat's banner (whose button is the remedy) and its failed reply's
status line, the Settings download message (through a real child process and its report file),
the status window's detail line and state tooltip, and a desktop notification's text.
"""

from __future__ import annotations

import inspect
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from hivetray import errors
from hivetray.errors import HivetrayError, error_to_wire
from hivetray.models.catalog import CatalogEntry
from hivetray.models.validate import check_role, open_model
from hivetray.paths import AppPaths
from hivetray.pool.events import Event, EventKind
from hivetray.pool.memory import plan_admission, refusal
from hivetray.ui.model_download import ModelDownloader
from hivetray.ui.quick_chat import GET_FIRST_MODEL, QuickChatWindow
from hivetray.ui.status_window import StatusWindow
from hivetray.wording import Fix, Remedy, Wording, notification_text, sentence
from tests.ui.conftest import PoolRig
from tests.ui.test_clipped_windows import quick_chat  # noqa: F401 (a fixture)
from tests.ui.test_quick_chat import ScriptedStream, loop  # noqa: F401 (a fixture)

#: a command for the terminal, as the CLI words its hints
COMMAND = re.compile(r"\bhivetray (?:models|retry|restart|stop|status|chat|embed|rerank|logs|"
                     r"events|quit|daemon|api|self-test|toggle-chat)\b|`")



def raised(make: Callable[[], object]) -> HivetrayError:
    try:
        make()
    except HivetrayError as exc:
        return exc
    raise AssertionError("it did not fail")


def samples(models: dict[str, Path]) -> list[tuple[HivetrayError, str, str | None]]:
    """(error, words a window must show, the banner's button) for every kind of error; the
    file checks and the memory refusal are the real ones."""
    tight = plan_admission(3 << 30, 1 << 30, [])
    memory = refusal("chat", tight, {"vision": 2 << 30}, n_ctx=8192)
    return [
        (errors.RemoteError("ValueError", "odd input"), "ValueError: odd input", None),
        (errors.InvalidRequest("the chat worker has no method 'x'"), "has no method", None),
        (errors.ModelLoadError("llama.cpp could not load /m.gguf: bad magic", "/m.gguf"),
         "could not load /m.gguf", None),
        (raised(lambda: open_model("/gone/model.gguf")),
         "(moved or deleted? choose it again in Settings)", "Open Settings…"),
        (raised(lambda: check_role("vision", str(models["chat"]), None)),
         ": choose it in Settings → Vision → Projector (mmproj)", "Open Settings…"),
        (raised(lambda: check_role("chat", str(models["mmproj"]))),
         "choose it as the Projector (mmproj) in Settings → Vision", "Open Settings…"),
        (errors.ProjectorMismatch("the projector /p.gguf does not match the model /m.gguf: use "
                                  "the mmproj file published with this model", "/p.gguf"),
         "use the mmproj file published with this model", None),
        (raised(lambda: check_role("rerank", str(models["chat"]))),
         "(Settings → Rerank → Download offers one)", "Open Settings…"),
        (memory, "stop vision (2.0 GiB) in the status window or lower its Context size (8192) "
                 "in Settings, then press Retry", "Retry"),
        (errors.InvalidImage("notes.txt", "not a known image format"), "use a PNG", None),
        (errors.DownloadFailed("cannot fetch a/b/c.gguf from huggingface.co: no network "
                               "connection", Remedy(Fix.CHECK_NETWORK)),
         "connect to the network and press Download again", None),
        (errors.ChecksumMismatch("/m.gguf", "sha256:a", "sha256:b"),
         "the file was deleted: press Download to fetch it again", None),
        (errors.ContextOverflow(9000, 4096), "start a New chat, or raise the Context size", None),
        (errors.PayloadTooLarge(40 << 20, 32 << 20), "send a smaller image", None),
        (errors.WorkerCrashed("chat", -9, "/logs/worker-chat.log", "a log tail"),
         "killed by SIGKILL; its log is /logs/worker-chat.log", None),
        (errors.RemoteEngineFailed("chat", "http://gpu:8080", "is unreachable"),
         "chat engine at http://gpu:8080 is unreachable", None),
        (errors.RemoteSetupError("the chat role's key is neither in $GPU_KEY nor in the OS "
                                 "keyring: export GPU_KEY=<key>, or store it with `keyring set "
                                 "hivetray GPU_KEY`"), "“keyring set hivetray GPU_KEY”", None),
        (errors.RemoteRequestError("the chat engine stopped the reply: overloaded", "chat", 503),
         "overloaded", None),
        (errors.CircuitOpen("chat", 4, 60, 41.6), "(or press Retry to try now)", "Retry now"),
        (errors.RoleUnconfigured("chat"),
         ": choose a model file (Browse…) or press Download in Settings → Chat", "Set one…"),
        (errors.RoleInError("chat", "llama.cpp could not load /m.gguf"),
         "(after fixing it, press Retry)", "Retry"),
        (errors.RoleInError("chat", memory.wording), "then press Retry", "Retry"),
        (errors.RequestCancelled("the request was cancelled"), "was cancelled", None),
        (errors.PoolClosed("Hivetray is shutting down"), "shutting down", None),
        (errors.WorkerBusy("chat", 8), "try again in a moment", None),
        (errors.AlreadyRunning("another Hivetray instance (pid 5) owns /data",
                               Remedy(Fix.USE_RUNNING_INSTANCE)),
         "use its tray icon, or choose Quit Hivetray in its tray menu", None),
        (errors.NoInstance("no Hivetray instance is running (no socket at /run/x.sock)"),
         "Hivetray instance is running (no socket", None),
        (errors.UnsafeRuntimeDir("/run/user/1000/hivetray-1000", "it is world-writable"),
         "set XDG_RUNTIME_DIR to a private folder", None),
        (errors.ReplyTooLarge(64 << 20), "fewer texts or documents per call", None),
        (errors.InternalError("a bug: KeyError: 'x'"), "bug: KeyError: 'x'", None),
        (errors.InternalError("internal error (KeyError: 'x')", Remedy(Fix.REPORT_BUG)),
         "report it with the app log (logs/hivetray.log in Hivetray's data folder)", None),
    ]


@pytest.fixture
def cases(tiny_models: dict[str, Path]) -> list[tuple[HivetrayError, str, str | None]]:
    return samples(tiny_models)


def assert_gui_words(text: str, *phrases: str) -> None:
    assert not COMMAND.search(text), f"a command in a window: {text!r}"
    for phrase in phrases:
        assert phrase in text, f"{phrase!r} missing from {text!r}"


def test_the_samples_cover_every_kind_of_error(cases: list[tuple[HivetrayError, str,
                                                                  str | None]]) -> None:
    ours = {cls for _, cls in inspect.getmembers(errors, inspect.isclass)
            if issubclass(cls, HivetrayError) and cls.__module__ == errors.__name__}
    assert ours - {HivetrayError} <= {type(error) for error, _, _ in cases}


def test_the_quick_chat_banner_and_reply_status(
        cases: list[tuple[HivetrayError, str, str | None]],
        quick_chat: QuickChatWindow) -> None:  # noqa: F811 (the imported fixture)
    view = quick_chat
    for error, phrase, button in cases:
        view.reply = view._add_view("assistant")
        view.session.failed.emit(error)  # what a failed reply sends the window
        assert_gui_words(view.reply.status.text(), "failed: ", phrase)
        banner = view.banner.text()
        if isinstance(error, errors.RoleUnconfigured) and error.role == "chat":
            button = GET_FIRST_MODEL  # no chat model at all: the welcome window gets one
        if button is not None:  # the button is the remedy: the text is the problem alone
            assert view.banner_button.isVisibleTo(view) and view.banner_button.text() == button
            assert_gui_words(banner)
            assert banner.startswith(sentence(error.wording.problem.split("\n")[0][:40]))
        else:
            assert not view.banner_button.isVisibleTo(view), type(error).__name__
            assert_gui_words(banner, phrase)


def test_the_settings_download_message(cases: list[tuple[HivetrayError, str, str | None]],
                                       qtbot: QtBot, home: AppPaths) -> None:
    """Each error comes back from a real child process the way a failed `hivetray models
    download` sends it: one line on stderr, and the typed error in the report file."""
    child = ("import json, sys; from hivetray.errors import error_from_wire, first_line, "
             "report_to_parent; error = error_from_wire(json.loads(sys.argv[1])); "
             "print('hivetray: ' + first_line(error), file=sys.stderr); "
             "report_to_parent(error); sys.exit(1)")
    for error, phrase, _ in cases:
        wire = json.dumps(error_to_wire(error))

        def command(role: str, entry: CatalogEntry, wire: str = wire) -> list[str]:
            return [sys.executable, "-c", child, wire]

        widget = ModelDownloader("chat", home, command)
        qtbot.addWidget(widget)
        with qtbot.waitSignal(widget.finished, timeout=15_000) as done:
            widget.toggle()
        assert done.args[0] is False and done.args[1] == widget.message.text()
        assert_gui_words(widget.message.text(), phrase)


def test_the_status_window_detail_line_and_state_tooltip(
        cases: list[tuple[HivetrayError, str, str | None]], qtbot: QtBot,
        pool_rig: PoolRig) -> None:
    from PySide6.QtCore import Qt

    from hivetray.ui.role_table import KEYS

    window = StatusWindow(pool_rig.pool.snapshot, pool_rig.pool.paths.worker_log)
    qtbot.addWidget(window)
    window.present()
    chat = pool_rig.pool.role("chat")
    for error, phrase, _ in cases:
        chat.last_failure = error.wording  # as the role keeps its last failure
        window.refresh()
        assert_gui_words(window.detail.text(), phrase)
        tip = window.model.data(window.model.index(0, KEYS.index("state")),
                                Qt.ItemDataRole.ToolTipRole)
        assert_gui_words(tip, phrase)


def test_the_notification_text(cases: list[tuple[HivetrayError, str, str | None]]) -> None:
    for error, phrase, _ in cases:
        event = Event(EventKind.LOAD_ERROR, "chat", f"chat: {error}", level="error",
                      wording=error.wording)
        assert_gui_words(notification_text(event), phrase)


def test_the_pools_own_events_carry_their_words(pool_rig: PoolRig) -> None:
    """The breaker opening, as the pool reports it: the event's message is the CLI's, its
    notification names the Retry button."""
    pool_rig.crash_chat(times=2)
    opened = [e for e in pool_rig.pool.events.recent() if e.kind is EventKind.BREAKER_OPEN]
    assert opened and "hivetray retry chat" in opened[-1].message
    assert isinstance(opened[-1].wording, Wording)
    assert_gui_words(notification_text(opened[-1]), "The chat worker crashed 2 times",
                     "(or press Retry to try now)")
