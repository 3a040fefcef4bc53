"""The tray: menu contents per state, the health badge, rate-limited notifications."""

from __future__ import annotations

from PySide6.QtWidgets import QSystemTrayIcon
from pytestqt.qtbot import QtBot

from hivetray.pool.events import Event, EventKind
from hivetray.pool.states import RoleState
from hivetray.pool.status import RoleStatus
from hivetray.ui.icons import Health
from hivetray.ui.notify import Notice, Notifier
from hivetray.ui.tray import NOTIFY_INTERVAL_S, TrayIcon, overall_health
from tests.ui.conftest import PoolRig


class RecordingNotifier(Notifier):
    """Keeps the notices instead of showing them (the ways to show them: test_notify.py)."""

    def __init__(self) -> None:
        super().__init__(QSystemTrayIcon())
        self.shown: list[Notice] = []

    def show(self, notice: Notice) -> None:
        self.shown.append(notice)


def make_tray(pool_rig: PoolRig) -> TrayIcon:
    return TrayIcon(pool_rig.pool.snapshot, pool_rig.clock.now, lambda: "Ctrl+Alt+Space",
                    notifier=RecordingNotifier())


def texts(tray: TrayIcon) -> list[str]:
    tray.rebuild_menu()
    return [a.text() for a in tray.menu.actions()]


def test_menu_lists_roles_and_the_fixed_entries(qtbot: QtBot, pool_rig: PoolRig) -> None:
    entries = texts(make_tray(pool_rig))
    assert entries[:4] == ["chat — stopped · chat.gguf", "vision — no model set",
                           "embed — no model set", "rerank — no model set"]
    assert "Open quick chat\tCtrl+Alt+Space" in entries
    for fixed in ("Status window…", "Chat worker", "Pause all (stop workers)", "Settings…",
                  "Quit Hivetray"):
        assert fixed in entries
    assert "Vision worker" not in entries  # no actions for an unconfigured role


def test_menu_is_rebuilt_from_live_state(qtbot: QtBot, pool_rig: PoolRig) -> None:
    tray = make_tray(pool_rig)
    pool_rig.ready_chat()
    assert texts(tray)[0] == "chat — ready · chat.gguf"
    pool_rig.crash_chat(times=2)
    pool_rig.clock.advance(18)
    assert texts(tray)[0] == "chat — cooling down (42 s) · chat.gguf"
    submenu = next(a.menu() for a in tray.menu.actions() if a.text() == "Chat worker")
    retry = next(a for a in submenu.actions() if a.text() == "Retry now")
    assert retry.isEnabled()
    with qtbot.waitSignal(tray.retry) as sent:
        retry.trigger()
    assert sent.args == ["chat"]


def test_badge_follows_overall_health(qtbot: QtBot, pool_rig: PoolRig) -> None:
    tray = make_tray(pool_rig)
    assert tray.health is Health.OK
    pool_rig.crash_chat(times=2)
    tray.update_health()
    assert tray.health is Health.TROUBLE
    assert overall_health([RoleStatus("chat", RoleState.STARTING),
                           RoleStatus("embed", RoleState.READY)]) is Health.BUSY


def test_notifications_are_rate_limited_per_role_and_kind(qtbot: QtBot,
                                                         pool_rig: PoolRig) -> None:
    tray = make_tray(pool_rig)
    crash = Event(EventKind.CRASH, "chat", "the chat worker was killed by SIGKILL")
    assert tray.notify(crash) is True
    assert tray.notify(crash) is False
    assert tray.notify(Event(EventKind.BREAKER_OPEN, "chat", "crashed 4 times")) is True
    assert tray.notify(Event(EventKind.STATE, "chat", "ready")) is False
    pool_rig.clock.advance(NOTIFY_INTERVAL_S)
    assert tray.notify(crash) is True
    assert isinstance(tray.notifier, RecordingNotifier)
    assert [n.summary for n in tray.notifier.shown] == [
        "A worker crashed", "A worker keeps crashing", "A worker crashed"]


def test_the_menu_shows_the_http_apis_line(qtbot: QtBot, pool_rig: PoolRig) -> None:
    line = ["HTTP API: off"]
    tray = TrayIcon(pool_rig.pool.snapshot, pool_rig.clock.now, lambda: "Ctrl+Alt+Space",
                    api_line=lambda: line[0], notifier=RecordingNotifier())
    entries = texts(tray)
    assert entries[4] == "HTTP API: off"
    api = next(a for a in tray.menu.actions() if a.text() == "HTTP API: off")
    assert not api.isEnabled()  # information, not an action
    line[0] = "HTTP API: http://127.0.0.1:11480"
    assert texts(tray)[4] == "HTTP API: http://127.0.0.1:11480"  # rebuilt from live state
    assert "HTTP API: off" not in texts(make_tray(pool_rig))  # no line when not wired


def test_only_an_api_that_cannot_run_is_notified(qtbot: QtBot, pool_rig: PoolRig) -> None:
    tray = make_tray(pool_rig)
    assert tray.notify(Event(EventKind.API, None, "HTTP API listening on http://x")) is False
    assert tray.notify(Event(EventKind.API, None, "the HTTP API could not listen on "
                             "127.0.0.1:11480 (address in use)", level="error")) is True
