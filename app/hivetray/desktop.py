"""The desktop app once started: wires the instance (pool + socket) to the tray and windows.

It owns no worker logic: it renders snapshots and events and turns the user's clicks into
calls on the pool. Everything runs on the one qasync loop thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QSystemTrayIcon

from hivetray import ipc
from hivetray.config import LoadResult
from hivetray.errors import HivetrayError, first_line
from hivetray.history import History
from hivetray.homelock import find_instance
from hivetray.instance import Instance, UiHooks
from hivetray.paths import AppPaths
from hivetray.pool.events import Event, EventKind
from hivetray.ui.chat_session import ChatSession
from hivetray.ui.hotkeys import HotkeyManager, HotkeyStatus
from hivetray.ui.notify import Notice
from hivetray.ui.quick_chat import QuickChatWindow
from hivetray.ui.tray import TrayIcon
from hivetray.welcome_flow import WelcomeFlow

if TYPE_CHECKING:  # built on first use: not imported at start-up, where every ms counts
    from hivetray.ui.model_download import CommandFor, ModelDownloadDialog
    from hivetray.ui.settings import SettingsDialog
    from hivetray.ui.status_window import StatusWindow
    from hivetray.ui.welcome import WelcomeWindow

log = logging.getLogger(__name__)


class DesktopApp:
    """Wires the instance and the widgets; owns no worker logic."""

    def __init__(self, paths: AppPaths, loaded: LoadResult,
                 early_icon: QSystemTrayIcon | None = None) -> None:

        self.paths = paths
        self.loaded = loaded
        self.instance = Instance(paths, loaded.config, hooks=UiHooks(
            toggle_chat=self.toggle_chat, show_status=self.show_status))
        self.pool = self.instance.pool
        self.status_window: StatusWindow | None = None
        self.settings_dialog: SettingsDialog | None = None
        self.download_dialogs: dict[str, ModelDownloadDialog] = {}
        #: the child process a catalog download runs (tests put a stand-in here)
        self.download_command: CommandFor | None = None
        self.welcome_flow = WelcomeFlow(paths, lambda: self.instance.config, self._download_dialog,
                                        self._config_changed, self._open_quick_chat)
        self.hotkeys = HotkeyManager()
        # the widgets render the instance's status, not the pool's: it names the built-in model
        self.tray = TrayIcon(self.instance.status, self.pool.clock.now, self.hotkey_label,
                             early_icon, api_line=self.instance.api.line)
        self.tray_available = early_icon is not None or QSystemTrayIcon.isSystemTrayAvailable()
        self._refresh = QTimer()
        self._refresh.setSingleShot(True)
        self._refresh.setInterval(100)  # coalesce bursts of events into one repaint
        self._refresh.timeout.connect(self._repaint)
        self._connect_tray()
        self.pool.events.subscribe(self._on_event)
        self.quick_chat = self._build_quick_chat()
        self.hotkeys.activated.connect(self.toggle_chat)
        self.hotkeys.status_changed.connect(self._on_hotkey_status)
        self._registered_hotkey = ""

    def _build_quick_chat(self) -> QuickChatWindow:
        """Built now and kept hidden, so the hotkey only has to show it."""
        self.history = History(self.paths.history_db)
        session = ChatSession(self.pool.stream, self.history)
        window = QuickChatWindow(session)
        window.retry.connect(self.retry)
        window.open_settings.connect(self.show_settings)
        window.get_model.connect(self.get_model)
        window.open_welcome.connect(self._welcome_from_quick_chat)
        if self.history.notice:
            window.show_banner(self.history.notice)
            self.pool.events.emit(Event(EventKind.HISTORY, None, self.history.notice,
                                        level="warning"))
        return window

    def _connect_tray(self) -> None:
        tray = self.tray
        tray.open_status.connect(self.show_status)
        tray.open_quick_chat.connect(self.toggle_chat)
        tray.open_settings.connect(self.show_settings)
        tray.retry.connect(self.retry)
        tray.restart.connect(lambda role: self._spawn(self.instance.restart(role), "restart"))
        tray.stop.connect(lambda role: self._spawn(self.instance.stop(role), "stop"))
        tray.pause_all.connect(lambda: self._spawn(self.pool.pause_all(), "pause all"))
        tray.quit.connect(self.request_quit)

    async def run(self) -> int:
        if self.tray_available:
            self.tray.show()
            log.info("tray icon shown")
        else:
            log.warning("no system tray host is running; showing the status window instead")
        try:
            await self.instance.start()
        except ipc.AlreadyRunning as exc:  # another launch won the race for this home
            await self.instance.close()
            return await self._hand_over(exc)
        except HivetrayError as exc:  # e.g. an unsafe socket folder: a setup problem to fix
            log.info("could not start: %s", exc)
            await self.instance.close()
            await self._tell_cannot_start(first_line(exc))
            return 1
        self._install_signals()
        self.register_hotkey()
        self.welcome_on_first_run()
        for warning in self.loaded.warnings:
            self.pool.events.emit(Event(EventKind.CONFIG, None, warning, level="warning"))
            if self.tray_available:
                self.tray.notifier.show(Notice("Hivetray settings", warning))
        if not self.tray_available:
            self.show_status()
            assert self.status_window is not None
            self.status_window.statusBar().showMessage(
                "No system tray was found: Hivetray runs from this window (closing it hides it; "
                "quit with `hivetray quit`).")
        print(f"hivetray: running (pid {os.getpid()}), socket {self.paths.socket_path}",
              flush=True)
        await self.instance.quit_requested.wait()
        self.quick_chat.session.stop()
        self.hotkeys.close()
        await self.instance.close()
        self.history.close()
        self.tray.close()
        return 0

    async def _tell_cannot_start(self, reason: str) -> None:
        """A tray app started from a menu has no terminal: say why in a window too, and wait
        until it is read (non-modal, so the loop keeps running)."""
        from PySide6.QtWidgets import QMessageBox

        print(f"hivetray: {reason}", file=sys.stderr, flush=True)
        box = QMessageBox(QMessageBox.Icon.Critical, "Hivetray could not start", reason)
        closed = asyncio.get_running_loop().create_future()
        box.finished.connect(lambda _result: None if closed.done() else closed.set_result(None))
        box.show()
        if os.environ.get("QT_QPA_PLATFORM") == "offscreen":
            box.close()  # nobody can read it: headless tests, CI
        await closed

    async def _hand_over(self, refusal: HivetrayError) -> int:
        """Ask the instance that owns the home to show its status window, as a second
        launch does; say why and exit 1 when it cannot be reached (still starting, or on a
        socket this session cannot open)."""
        socket = find_instance(self.paths)
        if socket is not None:
            try:
                await ipc.call(socket, "show")
                return 0
            except HivetrayError as exc:
                refusal = exc
        print(f"hivetray: {refusal}", file=sys.stderr, flush=True)
        return 1

    # -- intents --------------------------------------------------------------------------------
    def _spawn(self, coro: Coroutine[Any, Any, Any], what: str) -> None:
        """A click's work runs on the pool's task set: a failure (say, a restart refused by
        the breaker) becomes a ``task_failed`` event, shown in the status window's log."""
        self.pool.tasks.spawn(coro, what)

    def retry(self, role: str) -> None:
        self.instance.retry(role)
        self._repaint()

    def request_quit(self) -> None:
        self.instance.request_quit()

    def show_status(self) -> None:
        if self.status_window is None:
            from hivetray.ui.status_window import StatusWindow

            window = StatusWindow(self.instance.status, self.paths.worker_log)
            window.retry.connect(self.retry)
            window.restart.connect(lambda role: self._spawn(self.instance.restart(role),
                                                            "restart"))
            window.stop.connect(lambda role: self._spawn(self.instance.stop(role), "stop"))
            window.logs.events.load(self.pool.events.recent())
            self.status_window = window
        self.status_window.present()

    def show_settings(self) -> None:
        from hivetray.ui.settings import SettingsDialog

        if self.settings_dialog is None:
            self.settings_dialog = SettingsDialog(self.paths, self.instance.config)
            self.settings_dialog.saved.connect(self._apply_saved_config)
            self.settings_dialog.show_welcome.connect(self.show_welcome)
        dialog = self.settings_dialog
        dialog.set_hotkey_status(self.hotkeys.status.message)
        dialog.load(self.instance.config)
        dialog.set_api_status(self.api_status())
        dialog.show()
        dialog.raise_()
        dialog.activateWindow()

    def _apply_saved_config(self) -> None:
        for warning in self.instance.reload_config():
            self.pool.events.emit(Event(EventKind.CONFIG, None, warning, level="warning"))
        self.register_hotkey()

    def get_model(self, role: str) -> None:
        """The quick chat's "Get a better model…": the catalog download for ``role``, in a small
        window of its own (the same downloader as Settings'; one per role, kept, so reopening
        it shows a running download's progress)."""
        self._download_dialog(role).present()

    def _download_dialog(self, role: str) -> ModelDownloadDialog:
        dialog = self.download_dialogs.get(role)
        if dialog is None:
            from hivetray.ui.model_download import ModelDownloadDialog, cli_command

            dialog = ModelDownloadDialog(role, self.paths, self.download_command or cli_command)
            downloader = dialog.downloader
            downloader.finished.connect(self._downloaded)
            self.welcome_flow.follow(role, downloader)  # the welcome window shows it too
            self.download_dialogs[role] = dialog
        return dialog

    def _downloaded(self, ok: bool, _message: str) -> None:
        """The download's child process wrote the model into config.toml (and asked this
        instance to reload over the socket): apply it here too, in case that call could not
        get through, and show it in an open Settings dialog, so its Save cannot write the old
        model back."""
        if not ok:
            return
        self._config_changed()

    def _config_changed(self) -> None:
        """config.toml was written by a window of this app: apply it and show it everywhere."""
        self._apply_saved_config()
        if self.settings_dialog is not None:
            self.settings_dialog.load(self.instance.config)
        self.welcome_flow.config_changed()
        self._repaint()

    # -- the welcome window (hivetray.welcome_flow does the work) ----------------------------
    @property
    def welcome(self) -> WelcomeWindow | None:
        return self.welcome_flow.window

    def welcome_on_first_run(self) -> bool:
        return self.welcome_flow.on_start(config_warnings=bool(self.loaded.warnings))

    def show_welcome(self) -> None:
        self.welcome_flow.show()

    def _welcome_from_quick_chat(self) -> None:
        """The quick chat stays on top of every window: it steps aside for the welcome."""
        self.quick_chat.hide()
        self.show_welcome()

    def _open_quick_chat(self) -> None:
        if not self.quick_chat.isVisible():
            self.toggle_chat()

    # -- the global hotkey ------------------------------------------------------------------------
    def register_hotkey(self) -> None:
        """(Re-)register the quick-chat shortcut when it changed; the status says what happened."""
        sequence = self.instance.config.hotkeys.quick_chat
        if sequence != self._registered_hotkey:
            self._registered_hotkey = sequence
            self.hotkeys.register(sequence)

    def hotkey_label(self) -> str:
        """For the tray menu: the shortcut and its layer, or how to get one."""
        status = self.hotkeys.status
        if status.ok:
            return f"{status.sequence} ({status.layer_name})"
        return "bind `hivetray toggle-chat`"

    def _on_hotkey_status(self, status: HotkeyStatus) -> None:
        level = "info" if status.ok or status.pending else "warning"
        self.pool.events.emit(Event(EventKind.HOTKEY, None, f"quick-chat shortcut: "
                                    f"{status.message}", level=level))
        if self.settings_dialog is not None:
            self.settings_dialog.set_hotkey_status(status.message)

    def toggle_chat(self) -> None:
        """The hotkey / tray / `hivetray toggle-chat`: show or hide, and pre-warm the model."""
        self.quick_chat.toggle()
        if self.quick_chat.isVisible():
            self.quick_chat.update_roles(self.instance.status().roles)
            self._spawn(self._prewarm(), "pre-warm chat")

    async def _prewarm(self) -> None:
        try:
            await self.pool.ensure_started("chat")
        except HivetrayError:
            pass  # the window's banner shows the role's state (error, cooldown, no model)

    def api_status(self) -> str:
        """For Settings → API: where it listens, or why it does not."""
        return self.instance.api.error or self.instance.api.line()

    # -- rendering --------------------------------------------------------------------------------
    def _on_event(self, event: Event) -> None:
        if self.status_window is not None:
            self.status_window.logs.events.add(event)
        if event.kind is EventKind.API and self.settings_dialog is not None:
            self.settings_dialog.set_api_status(self.api_status())
        if self.tray_available:
            self.tray.notify(event)
        if not self._refresh.isActive():
            self._refresh.start()

    def _repaint(self) -> None:
        self.tray.update_health()
        if self.quick_chat.isVisible():
            self.quick_chat.update_roles(self.instance.status().roles)
        if self.status_window is not None and self.status_window.isVisible():
            self.status_window.refresh()

    def _install_signals(self) -> None:
        """SIGINT/SIGTERM: graceful quit; a second one kills the workers and exits now."""
        from hivetray.daemon import install_quit_signals

        try:
            install_quit_signals(asyncio.get_running_loop(), self.instance)
        except (NotImplementedError, RuntimeError):  # Windows: no loop signal handlers
            log.info("signal handlers unavailable on this platform")
