"""The welcome window's intents, carried out for the desktop app.

Why apart from ``desktop.py``: the window (``hivetray.ui.welcome``) only renders and emits;
someone has to start downloads, check and write a file, remember a dismissal and open the
quick chat, and that is a job of its own beside the rest of the desktop wiring. The desktop app
owns one :class:`WelcomeFlow` and hands it what it needs as callables, so this module knows
nothing of the tray, the pool or the other windows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from hivetray import first_run
from hivetray.config import Config
from hivetray.errors import ModelLoadError
from hivetray.paths import AppPaths

if TYPE_CHECKING:  # built on first use: most starts never need the window
    from hivetray.ui.model_download import ModelDownloadDialog, ModelDownloader
    from hivetray.ui.welcome import WelcomeWindow

log = logging.getLogger(__name__)


class WelcomeFlow:
    def __init__(self, paths: AppPaths, config: Callable[[], Config],
                 download_dialog: Callable[[str], ModelDownloadDialog],
                 config_written: Callable[[], None], open_quick_chat: Callable[[], None]) -> None:
        self.paths = paths
        self._config = config
        self._download_dialog = download_dialog
        self._config_written = config_written
        self._open_quick_chat = open_quick_chat
        self.window: WelcomeWindow | None = None

    def on_start(self, *, config_warnings: bool = False) -> bool:
        """At start-up: open the window when ``hivetray.first_run`` says so (``config_warnings``:
        config.toml could not be read whole, see there)."""
        if not first_run.should_welcome(self._config(), self.paths,
                                        config_warnings=config_warnings):
            return False
        log.info("first run: no model is set in config.toml; showing the welcome window")
        self.show()
        return True

    def show(self) -> None:
        """Open the window (built on first use)."""
        if self.window is None:
            from hivetray.models import builtin
            from hivetray.ui.welcome import WelcomeWindow

            window = WelcomeWindow(builtin.LABEL if builtin.available() else None)
            window.get_model.connect(self._get)
            window.cancel_download.connect(self._cancel)
            window.use_file.connect(self._use_file)
            window.try_builtin.connect(self._try_builtin)
            window.dismissed.connect(
                lambda: first_run.remember_dismissed(self.paths, first_run.Dismissal.CLOSED))
            self.window = window
        self.config_changed()
        self.window.present()

    def config_changed(self) -> None:
        """Show which roles now have a model."""
        if self.window is not None:
            self.window.set_models({role: cfg.model for role, cfg in self._config().roles.items()})

    def follow(self, role: str, downloader: ModelDownloader) -> None:
        """Show ``role``'s catalog downloads (wherever they were started) in the window too."""
        def progress(value: int) -> None:
            if self.window is not None:
                self.window.download_progress(role, value, downloader.bar.maximum())

        def finished(ok: bool, message: str) -> None:
            if self.window is not None:
                self.window.download_finished(role, ok, message)

        downloader.bar.valueChanged.connect(progress)
        downloader.finished.connect(finished)

    def _get(self, role: str, name: str) -> None:
        """A "Get" button: the role's catalog download starts, in the same downloader as the
        quick chat's "Get a better model…" (so the two never fetch the same file at once)."""
        downloader = self._download_dialog(role).downloader
        if downloader.process is None:
            downloader.select(name)
            downloader.toggle()
        if self.window is not None:
            self.window.download_started(role)

    def _cancel(self, role: str) -> None:
        downloader = self._download_dialog(role).downloader
        if downloader.process is not None:
            downloader.toggle()  # kills it; ``finished`` tells the window

    def _use_file(self, role: str, path: str) -> None:
        """"I have a GGUF file…": checked as the pool will check it, then written and applied;
        a file the pool would refuse is said in the window, and nothing is written."""
        assert self.window is not None
        try:
            first_run.set_role_model(self.paths, role, path)
        except ModelLoadError as exc:
            self.window.show_message(f"{exc}\n\nChoose another file.")
            return
        except OSError as exc:
            self.window.show_message(f"Could not save the setting: {exc}")
            return
        self._config_written()
        self.window.show_message(f"{path} is set for the {role} role." + (
            " Open the quick chat from the tray menu or with its shortcut."
            if role == "chat" else ""))

    def _try_builtin(self) -> None:
        """"Try the built-in model now": it is already the chat model; the quick chat opens."""
        first_run.remember_dismissed(self.paths, first_run.Dismissal.BUILTIN)
        if self.window is not None:
            self.window.hide()
        self._open_quick_chat()
