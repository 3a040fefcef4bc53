"""The quick-chat window end to end on Xvfb + trayer: the real app, a real global key press
(XTest via xdotool), the real tiny model, and the history database read from outside."""

from __future__ import annotations

import os
import signal
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hivetray.paths import AppPaths
from tests.conftest import make_config
from tests.helpers.waiting import wait_until
from tests.helpers.x11 import XSession, visible_named
from tests.ui.test_tray_e2e import AppRun, cli, launch, tray_x  # noqa: F401  (fixtures)

pytestmark = pytest.mark.real
TITLE = "Quick chat"


def shown(session: XSession) -> bool:
    return bool(visible_named(session, TITLE))


def key(session: XSession, keys: str) -> None:
    session.x("xdotool", "key", "--clearmodifiers", keys)


def assistant_rows(db: Path) -> list[tuple[str, str]]:
    if not db.exists():
        return []
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        try:
            rows = conn.execute("SELECT content, status FROM messages WHERE role='assistant' "
                                "ORDER BY id").fetchall()
        except sqlite3.OperationalError:  # the app has not created the tables yet
            return []
    return [(str(r[0]), str(r[1])) for r in rows]


@pytest.fixture
def app(tray_x: XSession, launch: Callable[[XSession], AppRun], write_config: Any,  # noqa: F811
        tmp_path: Path) -> AppRun:
    from hivetray.devtools.tinymodels import write_chat_model

    model = write_chat_model(tmp_path / "chat-4k.gguf", n_ctx=4096)
    write_config(make_config(model, n_ctx=4096))
    run = launch(tray_x)
    run.wait_docked()
    return run


def test_hotkey_shows_the_window_every_time_and_esc_hides_it(tray_x: XSession,  # noqa: F811
                                                             app: AppRun) -> None:
    assert not shown(tray_x)  # built at start-up, but hidden
    for _ in range(3):
        key(tray_x, "ctrl+alt+space")
        wait_until(lambda: shown(tray_x), 5, what="quick chat visible after Ctrl+Alt+Space")
        key(tray_x, "Escape")
        wait_until(lambda: not shown(tray_x), 5, what="quick chat hidden after Esc")
    app.alive()


def test_toggle_chat_command_shows_and_hides(tray_x: XSession, app: AppRun) -> None:  # noqa: F811
    assert cli(tray_x, "toggle-chat").returncode == 0
    wait_until(lambda: shown(tray_x), 5, what="quick chat visible after toggle-chat")
    assert cli(tray_x, "toggle-chat").returncode == 0
    wait_until(lambda: not shown(tray_x), 5, what="quick chat hidden after a second toggle")


def test_a_reply_from_the_tiny_model_lands_in_the_history(
        tray_x: XSession, app: AppRun, home: AppPaths) -> None:  # noqa: F811
    key(tray_x, "ctrl+alt+space")
    wait_until(lambda: shown(tray_x), 5, what="quick chat visible")
    tray_x.x("xdotool", "type", "--delay", "2", "hello there")
    key(tray_x, "Return")
    rows = wait_until(lambda: [r for r in assistant_rows(home.history_db)
                               if r[1] == "complete"], 30, what="a complete reply")
    assert rows[0][0].strip(), "the reply has text"


def test_killing_the_app_mid_stream_keeps_what_was_shown(
        tray_x: XSession, app: AppRun, home: AppPaths) -> None:  # noqa: F811
    key(tray_x, "ctrl+alt+space")
    wait_until(lambda: shown(tray_x), 5, what="quick chat visible")
    tray_x.x("xdotool", "type", "--delay", "2", "a long story please")
    key(tray_x, "Return")

    def partial() -> str | None:
        rows = assistant_rows(home.history_db)
        return rows[-1][0] if rows and rows[-1][1] == "streaming" and rows[-1][0] else None

    seen = wait_until(partial, 30, what="a reply streaming", interval=0.01)
    assert seen is not None
    os.kill(app.pid, signal.SIGKILL)
    app.proc.wait(10)
    [(content, status)] = assistant_rows(home.history_db)
    assert content.startswith(seen) and status == "streaming"  # committed up to the kill
    # the next start marks it interrupted and keeps the text
    from hivetray.history import History

    history = History(home.history_db)
    [conversation] = history.conversations()
    reply = history.messages(conversation.id)[-1]
    assert reply.content == content and reply.status == "interrupted"
    history.close()
