"""The desktop app's wiring of the built-in demo model (offscreen, nothing spawned): the
quick-chat window and the other widgets render the instance's status, so the demo line shows;
"Get a better model…" opens the catalog download for the chat role; a finished download is
applied and the line goes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import qasync
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from hivetray.config import LoadResult, default_config, save_config
from hivetray.desktop import DesktopApp
from hivetray.models import builtin
from hivetray.paths import AppPaths
from tests.conftest import make_config
from tests.helpers.builtin_dist import write_fake_builtin
from tests.helpers.waiting import until


@pytest.fixture
def desktop(qtbot: QtBot, qapp: QApplication, home: AppPaths, tmp_path: Path,
            tiny_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
            ) -> Iterator[DesktopApp]:
    write_fake_builtin(tmp_path / "site", tiny_models["chat"])
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delenv(builtin.DISABLE_ENV, raising=False)
    loop = qasync.QEventLoop(qapp, already_running=False)
    asyncio.set_event_loop(loop)
    app = DesktopApp(home, LoadResult(default_config()))
    qtbot.addWidget(app.quick_chat)
    yield app
    for dialog in app.download_dialogs.values():
        dialog.close()
    loop.run_until_complete(app.instance.close())
    app._refresh.stop()  # closing emitted events: no repaint after the widgets are gone
    app.history.close()
    loop.close()
    asyncio.set_event_loop(None)


def test_the_demo_line_leads_to_the_chat_download_and_goes_when_a_model_is_set(
        qtbot: QtBot, desktop: DesktopApp, home: AppPaths, tiny_models: dict[str, Path]
        ) -> None:
    window = desktop.quick_chat
    window.present()
    window.update_roles(desktop.instance.status().roles)
    assert window.demo_box.isVisibleTo(window) and builtin.LABEL in window.demo_notice.text()
    window.demo_button.click()
    dialog = desktop.download_dialogs["chat"]
    assert dialog.isVisible() and dialog.downloader.role == "chat"
    window.demo_button.click()
    assert list(desktop.download_dialogs) == ["chat"]  # reopened, not a second one
    # the download's child process wrote config.toml; the app applies it and repaints
    save_config(home.config_file, make_config(tiny_models["chat"]))

    async def finish() -> None:
        dialog.downloader.finished.emit(True, "done")

    asyncio.get_event_loop().run_until_complete(finish())
    assert desktop.instance.role_status("chat").model == str(tiny_models["chat"])
    assert not window.demo_box.isVisibleTo(window)


def test_saving_the_api_tab_starts_the_api_and_the_tray_shows_it(
        qtbot: QtBot, qapp: QApplication, desktop: DesktopApp, home: AppPaths) -> None:
    loop = asyncio.get_event_loop()
    loop.run_until_complete(desktop.instance.start())
    desktop.tray.rebuild_menu()
    assert "HTTP API: off" in [a.text() for a in desktop.tray.menu.actions()]
    desktop.show_settings()
    dialog = desktop.settings_dialog
    assert dialog is not None
    dialog.api_tab.enabled.setChecked(True)
    dialog.api_tab.port.setValue(0)

    async def save_and_wait() -> None:  # a click's work runs on the app's loop
        dialog.save()
        await until(lambda: desktop.instance.api.url, 5.0, what="the API listening")

    # as in the app (app.py): closing Settings, the only window, must not end the loop
    qapp.setQuitOnLastWindowClosed(False)
    try:
        loop.run_until_complete(save_and_wait())
    finally:
        qapp.setQuitOnLastWindowClosed(True)
    url = desktop.instance.api.url
    assert url is not None and url.startswith("http://127.0.0.1:")
    desktop.tray.rebuild_menu()
    assert f"HTTP API: {url}" in [a.text() for a in desktop.tray.menu.actions()]
    assert dialog.api_tab.status.text() == f"HTTP API: {url}"  # told by the api event
    assert desktop.instance.config.api.enabled
