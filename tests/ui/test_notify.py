"""Notifications: the policy (which events, once per role and kind per interval, with a fake
clock), our popup kept inside the screen whatever corner the tray icon is in (offscreen, the
icon's geometry injected), and, for real, ``Notify`` calls reaching a notification server
registered on a private ``dbus-daemon``, or the popup when the bus has none."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jeepney.bus_messages import message_bus
from jeepney.low_level import Message
from PySide6.QtCore import QCoreApplication, QPoint, QRect, QSize, Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QSystemTrayIcon
from pytestqt.qtbot import QtBot

from hivetray.errors import CircuitOpen
from hivetray.pool.events import Event, EventKind
from hivetray.ui import notify
from hivetray.ui.notify import (
    NOTIFY_INTERVAL_S,
    SHOW_MS,
    DBusNotifications,
    Notice,
    NoticePopup,
    NotificationPolicy,
    Notifier,
    popup_position,
)
from hivetray.ui.tray import TrayIcon
from tests.helpers.fake_portal import ServingConnection, private_bus
from tests.pool.fakes import FakeClock
from tests.ui.conftest import PoolRig

CRASH = ("the chat worker was killed by SIGABRT; log: /h/logs/worker-chat.log\n"
         "llama_model_loader: - kv 21: tokenizer.chat_template ...")
BREAKER = str(CircuitOpen("chat", 4, 60, 60))  # "… (or now: hivetray retry chat)"
#: the breaker's event as the pool sends it: with its wording for windows
BREAKER_WORDING = CircuitOpen("chat", 4, 60, 60).wording


def crash(role: str = "chat", message: str = CRASH) -> Event:
    return Event(EventKind.CRASH, role, message.replace("chat", role), {"log_tail": "x"},
                 level="error")


# -- the policy ------------------------------------------------------------------------------------
def test_the_policy_limits_each_role_and_kind_separately() -> None:
    clock = FakeClock()
    policy = NotificationPolicy(clock.now)
    first = policy.notice_for(crash())
    assert first == Notice("A worker crashed", "The chat worker was killed by SIGABRT; log: "
                           "/h/logs/worker-chat.log", warning=True)
    assert policy.notice_for(crash()) is None  # the same role and kind: too soon
    assert policy.notice_for(crash("embed")) is not None  # another role
    opened = policy.notice_for(Event(EventKind.BREAKER_OPEN, "chat", BREAKER, level="warning"))
    assert opened is not None and opened.summary == "A worker keeps crashing"
    # an event without its wording still never shows the command
    assert opened.body == "The chat worker crashed 4 times in 60 s; retrying in 60 s"
    assert policy.notice_for(Event(EventKind.STATE, "chat", "chat: ready")) is None
    clock.advance(NOTIFY_INTERVAL_S - 0.1)
    assert policy.notice_for(crash()) is None
    clock.advance(0.1)
    assert policy.notice_for(crash()) is not None
    closed = policy.notice_for(Event(EventKind.BREAKER_CLOSED, "chat", "chat recovered"))
    assert closed is not None and not closed.warning


def test_only_an_api_that_cannot_run_is_notified() -> None:
    policy = NotificationPolicy(FakeClock().now)
    assert policy.notice_for(Event(EventKind.API, None, "HTTP API listening on x")) is None
    notice = policy.notice_for(Event(EventKind.API, None, "the HTTP API could not listen on "
                                     "127.0.0.1:11480 (address in use)", level="error"))
    assert notice is not None and notice.body.endswith("(address in use)")  # not a command hint


def test_the_body_is_in_a_windows_words_never_a_command() -> None:
    """The pool's own events carry their wording: the notice names the button, not the CLI."""
    policy = NotificationPolicy(FakeClock().now)
    breaker = CircuitOpen("chat", 4, 60, 41.6)
    notice = policy.notice_for(Event(EventKind.BREAKER_OPEN, "chat", str(breaker),
                                     level="error", wording=breaker.wording))
    assert notice is not None
    assert "hivetray" not in notice.body and "`" not in notice.body, notice.body
    assert "Retry" in notice.body and notice.body[0].isupper()
    crash = policy.notice_for(Event(EventKind.CRASH, "embed", "the embed worker was killed by "
                                    "SIGSEGV; its log is /h/worker-embed.log\nlog tail…"))
    assert crash is not None and crash.body.startswith("The embed worker was killed by SIGSEGV")
    assert "log tail" not in crash.body


# -- the popup -------------------------------------------------------------------------------------
def corner_icons(available: QRect, size: int = 22) -> dict[str, QRect]:
    """A tray icon at each corner of the screen (as trayer puts it with --edge/--align)."""
    left, top = available.left(), available.top()
    right, bottom = available.right() - size + 1, available.bottom() - size + 1
    return {"top-left": QRect(left, top, size, size), "top-right": QRect(right, top, size, size),
            "bottom-left": QRect(left, bottom, size, size),
            "bottom-right": QRect(right, bottom, size, size),
            "unknown": QRect()}


@pytest.mark.parametrize("corner", ["top-left", "top-right", "bottom-left", "bottom-right",
                                    "unknown"])
def test_the_popup_stays_inside_the_screen_beside_the_icon(qtbot: QtBot, corner: str) -> None:
    available = QGuiApplication.primaryScreen().availableGeometry()
    icon = corner_icons(available)[corner]
    popup = NoticePopup(lambda: icon)
    qtbot.addWidget(popup)
    popup.show_notice(Notice("A worker keeps crashing", "the chat worker crashed 4 times in "
                             "60 s; retrying in 60 s. " * 4))
    assert popup.isVisible()
    shown = popup.frameGeometry()
    assert available.contains(shown), (corner, shown, available)
    assert shown.height() >= popup.body.heightForWidth(popup.body.width())  # nothing cut off
    if icon.isValid():  # right beside the icon: just below (or above) it, sharing its side
        gap = shown.top() - icon.bottom() if icon.top() == available.top() \
            else icon.top() - shown.bottom()
        assert 0 < gap <= notify.POPUP_MARGIN + 1, (corner, shown, icon)
        assert shown.left() <= icon.right() and icon.left() <= shown.right()
    assert popup.hide_timer.isActive() and popup.hide_timer.interval() == SHOW_MS
    popup.hide_timer.timeout.emit()
    assert not popup.isVisible()
    popup.show_notice(Notice("A worker crashed", "again"))
    qtbot.mouseClick(popup, Qt.MouseButton.LeftButton)
    assert not popup.isVisible()


def test_popup_position_pushes_the_popup_inside_a_small_screen() -> None:
    screen = QRect(0, 0, 320, 240)
    assert popup_position(QSize(300, 100), QRect(300, 0, 20, 20), screen) == QPoint(12, 28)
    # an icon outside the available area (in a panel that reserves the top 30 px)
    work_area = QRect(0, 30, 1280, 994)
    assert popup_position(QSize(360, 80), QRect(1250, 4, 22, 22), work_area) == QPoint(912, 38)


# -- notifications for real, over dbus-daemon ------------------------------------------------------
class FakeNotificationServer:
    """``org.freedesktop.Notifications`` as a notification daemon serves it; records Notify."""

    def __init__(self, address: str, capabilities: tuple[str, ...] = ("body", "body-markup")):
        self.conn = ServingConnection(address)
        self.capabilities = list(capabilities)
        self.calls: list[tuple[Any, ...]] = []
        self.conn.export(notify.SERVICE_PATH, "GetCapabilities",
                         lambda _m: ("as", (self.capabilities,)))
        self.conn.export(notify.SERVICE_PATH, "Notify", self._notify)
        self.conn.call(message_bus.RequestName(notify.SERVICE))

    def _notify(self, message: Message) -> tuple[str, tuple[Any, ...]]:
        self.calls.append(message.body)
        return "u", (len(self.calls),)


@pytest.fixture
def bus_address(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    try:
        with private_bus(tmp_path) as address:
            monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", address)
            yield address
    except FileNotFoundError:
        pytest.skip("dbus-daemon is not installed (Debian: dbus-daemon)")


def owned(qtbot: QtBot, server: FakeNotificationServer) -> None:
    owner: list[Any] = []
    server.conn.call(message_bus.GetNameOwner(notify.SERVICE), on_reply=owner.extend)
    qtbot.waitUntil(lambda: bool(owner), timeout=5000)


@pytest.mark.real
def test_crashes_are_notified_through_the_desktops_service_and_rate_limited(
        qapp: QCoreApplication, qtbot: QtBot, bus_address: str, pool_rig: PoolRig) -> None:
    server = FakeNotificationServer(bus_address)
    owned(qtbot, server)
    clock = pool_rig.clock
    tray = TrayIcon(pool_rig.pool.snapshot, clock.now, lambda: "Ctrl+Alt+Space")
    try:
        for _ in range(5):  # a crash loop: one notice
            tray.notify(crash())
        for _ in range(2):
            tray.notify(Event(EventKind.BREAKER_OPEN, "chat", BREAKER, level="warning",
                              wording=BREAKER_WORDING))
        tray.notify(crash("embed", "the chat worker died loading <tensor> & co\nmore"))
        # the last one sent arrives last (one connection keeps its order): nothing else came
        qtbot.waitUntil(lambda: len(server.calls) >= 3, timeout=5000)
        assert len(server.calls) == 3
        apps = {call[0] for call in server.calls}
        summaries = [call[3] for call in server.calls]
        bodies = [call[4] for call in server.calls]
        assert apps == {"Hivetray"}
        assert summaries == ["A worker crashed", "A worker keeps crashing", "A worker crashed"]
        assert bodies == [
            "The chat worker was killed by SIGABRT; log: /h/logs/worker-chat.log",
            "The chat worker crashed 4 times in 60 s; retrying in 60 s (or press Retry to try "
            "now)",
            "The embed worker died loading &lt;tensor&gt; &amp; co"]  # the server reads markup
        assert not any("hivetray " in body for body in bodies)  # no command in a notification
        assert server.calls[0][6]["desktop-entry"] == ("s", "hivetray")
        assert tray.notifier.popup is None  # the desktop showed them, not our popup
        clock.advance(NOTIFY_INTERVAL_S)
        tray.notify(crash())
        qtbot.waitUntil(lambda: len(server.calls) == 4, timeout=5000)
    finally:
        tray.close()
        server.conn.close()


@pytest.mark.real
def test_a_bus_without_a_notification_service_gets_the_popup(
        qapp: QCoreApplication, qtbot: QtBot, bus_address: str) -> None:
    icon = QRect(700, 0, 22, 22)
    notifier = Notifier(QSystemTrayIcon(), icon_geometry=lambda: icon)
    try:
        notifier.show(Notice("A worker crashed", "the chat worker was killed by SIGKILL"))
        assert notifier.popup is None  # asked the bus first
        qtbot.waitUntil(lambda: notifier.popup is not None and notifier.popup.isVisible(),
                        timeout=5000)
        assert notifier.popup is not None
        assert notifier.popup.body.text() == "the chat worker was killed by SIGKILL"
    finally:
        notifier.close()


def test_no_session_bus_at_all_gets_the_popup_at_once(qtbot: QtBot, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path / 'no-bus'}")
    notifier = Notifier(QSystemTrayIcon(), icon_geometry=QRect)
    try:
        notifier.show(Notice("A worker crashed", "boom"))
        assert notifier.popup is not None and notifier.popup.isVisible()
    finally:
        notifier.close()


class RecordingIcon(QSystemTrayIcon):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[tuple[str, str]] = []

    def showMessage(self, title: str, msg: str, *args: Any) -> None:  # type: ignore[override]
        self.messages.append((title, msg))


def test_where_qt_balloons_are_native_they_are_used(qtbot: QtBot, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(notify, "draws_its_own_balloon", lambda: False)  # Windows, macOS
    icon = RecordingIcon()
    notifier = Notifier(icon, DBusNotifications(bus_factory=lambda: _no_bus()))
    notifier.show(Notice("A worker crashed", "boom"))
    assert icon.messages == [("A worker crashed", "boom")] and notifier.popup is None


def _no_bus() -> Any:
    raise OSError("no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is not set)")
