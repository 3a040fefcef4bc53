"""The tray icon: a health badge, a menu rebuilt from live state each time it opens, and
rate-limited notifications for crashes and the circuit breaker (the policy and the ways to
show them are in :mod:`hivetray.ui.notify`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu, QSystemTrayIcon

from hivetray.pool.events import Event
from hivetray.pool.status import PoolStatus, RoleStatus
from hivetray.ui.formatting import state_line
from hivetray.ui.icons import Health, health_icon
from hivetray.ui.notify import NOTIFY_INTERVAL_S, NotificationPolicy, Notifier

__all__ = ["NOTIFY_INTERVAL_S", "TrayIcon", "overall_health"]


def overall_health(roles: Iterable[RoleStatus]) -> Health:
    roles = list(roles)
    if any(status.in_trouble for status in roles):
        return Health.TROUBLE
    if any(status.in_transition for status in roles):
        return Health.BUSY
    return Health.OK


class TrayIcon(QObject):
    """Renders snapshots into the tray; user choices leave as signals (intents)."""

    open_quick_chat = Signal()
    open_status = Signal()
    open_settings = Signal()
    retry = Signal(str)
    restart = Signal(str)
    stop = Signal(str)
    pause_all = Signal()
    quit = Signal()

    def __init__(self, snapshot: Callable[[], PoolStatus], clock: Callable[[], float],
                 hotkey_label: Callable[[], str], icon: QSystemTrayIcon | None = None,
                 api_line: Callable[[], str] | None = None,
                 notifier: Notifier | None = None) -> None:
        super().__init__()
        self._snapshot = snapshot
        self._hotkey_label = hotkey_label
        #: "HTTP API: http://127.0.0.1:11480" / "HTTP API: off" / not running
        self._api_line = api_line
        self._health: Health | None = None
        self.policy = NotificationPolicy(clock)
        self.icon = icon or QSystemTrayIcon()  # shown early by the launcher, adopted here
        self.notifier = notifier or Notifier(self.icon)
        self.menu = QMenu()
        self.menu.aboutToShow.connect(self.rebuild_menu)
        self.icon.setContextMenu(self.menu)
        self.icon.activated.connect(self._on_activated)
        self.rebuild_menu()
        self.update_health()

    def show(self) -> None:
        self.icon.show()

    def update_health(self) -> None:
        rows = self._snapshot().roles
        health = overall_health(rows)
        if health != self._health:
            self._health = health
            self.icon.setIcon(health_icon(health))
        self.icon.setToolTip("Hivetray\n" + "\n".join(state_line(r) for r in rows))

    @property
    def health(self) -> Health | None:
        return self._health

    def rebuild_menu(self) -> None:
        """Vorta's habit: the menu is built from live state every time it opens."""
        menu = self.menu
        menu.clear()
        rows = self._snapshot().roles
        for row in rows:
            line = menu.addAction(state_line(row))
            line.setEnabled(False)
            if error := row.error_for_window:  # the button to press, not the command
                line.setToolTip(error)
        if self._api_line is not None:
            menu.addAction(self._api_line()).setEnabled(False)
        menu.addSeparator()
        chat = menu.addAction(f"Open quick chat\t{self._hotkey_label()}")
        chat.triggered.connect(self.open_quick_chat)
        menu.addAction("Status window…").triggered.connect(self.open_status)
        menu.addSeparator()
        for row in rows:
            if not row.configured:
                continue
            sub = menu.addMenu(f"{row.role.capitalize()} worker")
            self._add(sub, "Retry now", partial(self.retry.emit, row.role), row.can_retry)
            self._add(sub, "Restart", partial(self.restart.emit, row.role), True)
            self._add(sub, "Stop", partial(self.stop.emit, row.role), row.can_stop)
        menu.addAction("Pause all (stop workers)").triggered.connect(self.pause_all)
        menu.addSeparator()
        menu.addAction("Settings…").triggered.connect(self.open_settings)
        menu.addAction("Quit Hivetray").triggered.connect(self.quit)

    @staticmethod
    def _add(menu: QMenu, text: str, slot: Callable[[], None], enabled: bool) -> QAction:
        action = menu.addAction(text)
        action.setEnabled(enabled)
        action.triggered.connect(slot)
        return action

    def _on_activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason in (QSystemTrayIcon.ActivationReason.Trigger,
                      QSystemTrayIcon.ActivationReason.DoubleClick):
            self.open_status.emit()

    def notify(self, event: Event) -> bool:
        """Notify crash/breaker events, rate-limited per role and kind; True when shown."""
        notice = self.policy.notice_for(event)
        if notice is None:
            return False
        self.notifier.show(notice)
        return True

    def close(self) -> None:
        """Hide the icon and let go of the notification service's connection."""
        self.notifier.close()
        self.icon.hide()
