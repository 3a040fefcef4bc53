"""Desktop notifications for crashes and the circuit breaker: which events and how often (the
policy), the desktop's notification service, and a popup of our own where there is none.

Why not only ``QSystemTrayIcon.showMessage``: on X11 with an XEmbed tray (trayer, most panels
without StatusNotifierItem) Qt draws its own balloon at the icon and does not keep it on the
screen: at the usual top-right tray it runs off the right edge. So:

1. where the session bus has ``org.freedesktop.Notifications`` (every desktop's notification
   daemon), the notice goes there — ``Notify`` sent with jeepney on a private
   :class:`~hivetray.ui.hotkeys.dbus_client.Connection`, read on the GUI thread by a socket
   notifier: no thread, no second event loop;
2. otherwise, on X11 (and offscreen), :class:`NoticePopup`: a small frameless window placed
   next to the icon *inside* the screen's available geometry, hiding itself after a while;
3. elsewhere (Windows, macOS), ``showMessage``, which is native there.

The policy lives here alone (:class:`NotificationPolicy`, with an injectable clock): at most one
notice per role and kind in :data:`NOTIFY_INTERVAL_S`, so a crash loop is one notice, not many.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from PySide6.QtCore import QObject, QPoint, QRect, QSize, Qt, QTimer
from PySide6.QtGui import QGuiApplication, QMouseEvent
from PySide6.QtWidgets import QFrame, QLabel, QSystemTrayIcon, QVBoxLayout

from hivetray.autostart import APP_ID
from hivetray.pool.events import Event, EventKind
from hivetray.wording import notification_text

if TYPE_CHECKING:  # jeepney is imported at the first notice: the tray's start-up stays lean
    from hivetray.ui.hotkeys.dbus_client import DBusError, ErrorHandler, ReplyHandler

__all__ = ["NOTIFY_INTERVAL_S", "NOTIFY_KINDS", "DBusNotifications", "Notice", "NoticePopup",
           "NotificationPolicy", "Notifier", "popup_position"]
log = logging.getLogger(__name__)

NOTIFY_KINDS = {EventKind.CRASH, EventKind.BREAKER_OPEN, EventKind.BREAKER_CLOSED,
                EventKind.LOAD_ERROR, EventKind.API}
#: at most one notification per role and kind in this many seconds
NOTIFY_INTERVAL_S = 30.0
#: how long a notice stays up (the service may choose otherwise; our popup obeys)
SHOW_MS = 8000
APP_NAME = "Hivetray"
SUMMARIES = {EventKind.CRASH: "A worker crashed",
             EventKind.BREAKER_OPEN: "A worker keeps crashing",
             EventKind.BREAKER_CLOSED: "A worker recovered",
             EventKind.LOAD_ERROR: "A model failed to load",
             EventKind.API: "The HTTP API is not running"}
#: a trailing "(or now: hivetray retry chat)": advice for a terminal, not for a notification


@dataclass(frozen=True)
class Notice:
    """One notification as the user reads it; ``warning`` False for good news."""

    summary: str
    body: str
    warning: bool = True


class NotificationPolicy:
    """Which events become notices, and how often: once per role and kind per interval."""

    def __init__(self, clock: Callable[[], float], interval_s: float = NOTIFY_INTERVAL_S) -> None:
        self._clock = clock
        self.interval_s = interval_s
        self._last: dict[tuple[str | None, EventKind], float] = {}

    def notice_for(self, event: Event) -> Notice | None:
        """The notice to show for ``event`` now, or None (not notified, or too soon)."""
        if event.kind not in NOTIFY_KINDS:
            return None
        if event.kind is EventKind.API and event.level != "error":
            return None  # the API starting or stopping is the user's own doing
        key = (event.role, event.kind)
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            return None
        self._last[key] = now
        return Notice(SUMMARIES[event.kind], notification_text(event),
                      warning=event.kind is not EventKind.BREAKER_CLOSED)


# -- org.freedesktop.Notifications -----------------------------------------------------------------
SERVICE = "org.freedesktop.Notifications"
SERVICE_PATH = "/org/freedesktop/Notifications"
NOTIFY_SIGNATURE = "susssasa{sv}i"


class NotifyBus(Protocol):
    """What notifications need of a bus connection (:class:`Connection`, or a fake)."""

    def call(self, message: Any, on_reply: ReplyHandler | None = None,
             on_error: ErrorHandler | None = None) -> None: ...

    def close(self) -> None: ...


def _service_call(member: str, signature: str | None = None,
                  body: tuple[Any, ...] = ()) -> Any:
    from jeepney.wrappers import DBusAddress, new_method_call

    address = DBusAddress(SERVICE_PATH, bus_name=SERVICE, interface=SERVICE)
    return new_method_call(address, member, signature, body)


def notify_body(notice: Notice, markup: bool) -> tuple[Any, ...]:
    """``Notify``'s arguments. A server that renders markup gets the text escaped: an error
    quoting ``<tensor>`` must not read as a tag."""
    text = html.escape(notice.body, quote=False) if markup else notice.body
    hints = {"urgency": ("y", 1), "desktop-entry": ("s", APP_ID)}
    return (APP_NAME, 0, APP_ID, notice.summary, text, [], hints, SHOW_MS)


class DBusNotifications:
    """Notices sent to the session's notification daemon, on a connection made at first use.

    ``send`` answers False when there is no session bus; a bus without the service answers
    ``Notify`` with an error, which reaches ``on_failed`` (a few ms later, on the GUI thread).
    """

    def __init__(self, bus_factory: Callable[[], NotifyBus] | None = None) -> None:
        self._bus_factory = bus_factory
        self._bus: NotifyBus | None = None
        self._markup: bool | None = None  # from GetCapabilities, asked once per connection

    def send(self, notice: Notice, on_failed: Callable[[Notice], None]) -> bool:
        """Ask the service to show ``notice``; False at once when there is no session bus."""
        bus = self._connect()
        if bus is None:
            return False

        def failed(error: DBusError) -> None:
            log.info("desktop notifications unavailable: %s", error.name)
            if error.name == "org.freedesktop.DBus.Error.Disconnected":
                self._drop()
            on_failed(notice)

        def notify() -> None:
            self._call(_service_call("Notify", NOTIFY_SIGNATURE,
                                     notify_body(notice, bool(self._markup))),
                       None, failed, lambda: on_failed(notice))

        if self._markup is not None:
            notify()
            return True

        def capabilities(reply: tuple[Any, ...]) -> None:
            self._markup = "body-markup" in (reply[0] if reply else [])
            notify()

        self._call(_service_call("GetCapabilities"), capabilities, failed,
                   lambda: on_failed(notice))
        return True

    def _call(self, message: Any, on_reply: ReplyHandler | None, on_error: ErrorHandler,
              on_lost: Callable[[], None]) -> None:
        """Send, or (the bus went away since) drop the connection and fall back."""
        if self._bus is None:
            on_lost()
            return
        try:
            self._bus.call(message, on_reply=on_reply, on_error=on_error)
        except OSError as exc:
            log.info("the session bus went away: %s", exc)
            self._drop()
            on_lost()

    def _connect(self) -> NotifyBus | None:
        if self._bus is None:
            try:
                if self._bus_factory is None:
                    from hivetray.ui.hotkeys.dbus_client import Connection

                    self._bus = Connection()
                else:
                    self._bus = self._bus_factory()
            except OSError as exc:
                log.info("no session bus for notifications: %s", exc)
                return None
        return self._bus

    def _drop(self) -> None:
        bus, self._bus, self._markup = self._bus, None, None
        if bus is not None:
            bus.close()

    def close(self) -> None:
        self._drop()


# -- our own popup ---------------------------------------------------------------------------------
POPUP_MARGIN = 8
POPUP_WIDTH = 360
POPUP_TITLE = "Hivetray notification"


def popup_position(size: QSize, icon: QRect, available: QRect,
                   margin: int = POPUP_MARGIN) -> QPoint:
    """Where a popup of ``size`` goes: beside the tray icon, on the screen's side of it (below
    an icon in the top half, above one in the bottom half; right-aligned with an icon in the
    right half), then pushed inside ``available``; the top-right corner when the icon's place
    is unknown."""
    if icon.isValid() and not icon.isEmpty():
        below = icon.center().y() < available.center().y()
        y = icon.bottom() + 1 + margin if below else icon.top() - margin - size.height()
        right = icon.center().x() >= available.center().x()
        x = icon.right() + 1 - size.width() if right else icon.left()
    else:
        x = available.right() + 1 - margin - size.width()
        y = available.top() + margin
    x = max(available.left() + margin, min(x, available.right() + 1 - margin - size.width()))
    y = max(available.top() + margin, min(y, available.bottom() + 1 - margin - size.height()))
    return QPoint(x, y)


class NoticePopup(QFrame):
    """A small frameless notice near the tray icon, always inside the screen; a click or
    :data:`SHOW_MS` hides it. It never takes the focus."""

    def __init__(self, icon_geometry: Callable[[], QRect], show_ms: int = SHOW_MS) -> None:
        super().__init__(None, Qt.WindowType.ToolTip | Qt.WindowType.FramelessWindowHint
                         | Qt.WindowType.WindowStaysOnTopHint)
        self._icon_geometry = icon_geometry
        self.setWindowTitle(POPUP_TITLE)
        self.setAttribute(Qt.WidgetAttribute.WA_ShowWithoutActivating)
        self.setFrameShape(QFrame.Shape.Box)
        self.summary = QLabel()
        font = self.summary.font()
        font.setBold(True)
        self.summary.setFont(font)
        self.body = QLabel()
        self.body.setWordWrap(True)
        self.body.setTextFormat(Qt.TextFormat.PlainText)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 10, 12, 10)
        layout.addWidget(self.summary)
        layout.addWidget(self.body)
        self.hide_timer = QTimer(self)
        self.hide_timer.setSingleShot(True)
        self.hide_timer.setInterval(show_ms)
        self.hide_timer.timeout.connect(self.hide)

    def show_notice(self, notice: Notice) -> None:
        self.summary.setText(notice.summary)
        self.body.setText(notice.body)
        self.setAccessibleName(notice.summary)
        self.setAccessibleDescription(notice.body)
        icon = self._icon_geometry()
        screen = (QGuiApplication.screenAt(icon.center()) if icon.isValid() else None) \
            or QGuiApplication.primaryScreen()
        available = screen.availableGeometry()
        width = min(POPUP_WIDTH, available.width() - 2 * POPUP_MARGIN)
        self.setFixedWidth(width)
        layout = self.layout()
        height = layout.totalHeightForWidth(width) if layout is not None \
            and layout.hasHeightForWidth() else self.sizeHint().height()
        height = min(height, available.height() - 2 * POPUP_MARGIN)
        self.setFixedHeight(height)
        self.move(popup_position(QSize(width, height), icon, available))
        self.show()
        self.raise_()
        self.hide_timer.start()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        self.hide()


def draws_its_own_balloon() -> bool:
    """Qt's balloon is its own drawing (not the system's) on X11: ours is kept on screen."""
    return QGuiApplication.platformName() in ("xcb", "offscreen")


class Notifier(QObject):
    """Shows a :class:`Notice` the best way this desktop allows (see the module's notes)."""

    def __init__(self, icon: QSystemTrayIcon,
                 dbus: DBusNotifications | None = None,
                 icon_geometry: Callable[[], QRect] | None = None) -> None:
        super().__init__()
        self._icon = icon
        self.dbus = dbus if dbus is not None else DBusNotifications()
        self._icon_geometry = icon_geometry or icon.geometry
        self.popup: NoticePopup | None = None

    def show(self, notice: Notice) -> None:
        if not self.dbus.send(notice, on_failed=self.show_fallback):
            self.show_fallback(notice)

    def show_fallback(self, notice: Notice) -> None:
        """No notification service: our popup on X11, the system's balloon elsewhere."""
        if draws_its_own_balloon():
            if self.popup is None:
                self.popup = NoticePopup(self._icon_geometry)
            self.popup.show_notice(notice)
            return
        icon = (QSystemTrayIcon.MessageIcon.Warning if notice.warning
                else QSystemTrayIcon.MessageIcon.Information)
        self._icon.showMessage(notice.summary, notice.body, icon, SHOW_MS)

    def close(self) -> None:
        self.dbus.close()
        if self.popup is not None:
            self.popup.close()
            self.popup.deleteLater()
            self.popup = None
