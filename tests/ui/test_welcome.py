"""The welcome window (offscreen): when it opens by itself (``hivetray.first_run``), what it
shows, and the app's wiring of its intents — a real catalog download child process, a real
GGUF file checked and written to config.toml, the built-in model, Esc. The real app on Xvfb is
tests/ui/test_welcome_e2e.py."""

from __future__ import annotations

import asyncio
import json
import stat
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import qasync
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QWidget
from pytestqt.qtbot import QtBot

from hivetray import ROLES, first_run
from hivetray.config import RoleConfig, default_config, load_config, save_config
from hivetray.desktop import DesktopApp
from hivetray.models import builtin
from hivetray.models.catalog import DEFAULTS, CatalogEntry, find
from hivetray.models.download import target_path
from hivetray.paths import AppPaths
from hivetray.ui.quick_chat import GET_FIRST_MODEL
from hivetray.ui.welcome import WINDOW_TITLE, WelcomeWindow, download_size
from tests.conftest import make_config
from tests.helpers.builtin_dist import write_fake_builtin
from tests.helpers.waiting import until
from tests.ui.clipping import clipped_texts


def on_loop(step: Callable[[], object]) -> None:
    """Run a click on the app's loop, as in the app: applying a config spawns pool tasks."""
    async def go() -> None:
        step()

    asyncio.get_event_loop().run_until_complete(go())


# -- when it opens by itself ------------------------------------------------------------------
def test_it_is_for_a_config_without_any_model_until_dismissed(home: AppPaths) -> None:
    config = default_config()
    assert first_run.should_welcome(config, home)
    for role in ROLES:  # any one role set, by any means, is enough
        roles = {**config.roles, role: RoleConfig(model="/models/x.gguf")}
        assert not first_run.should_welcome(config.__class__(
            roles=roles, pool=config.pool, hotkeys=config.hotkeys), home), role
    remote = {**config.roles, "embed": RoleConfig(engine="remote", url="http://gpu:8080")}
    assert not first_run.should_welcome(config.__class__(
        roles=remote, pool=config.pool, hotkeys=config.hotkeys), home)
    # a config.toml that could not be read whole is somebody's settings: its notice, no welcome
    assert not first_run.should_welcome(config, home, config_warnings=True)
    first_run.remember_dismissed(home, first_run.Dismissal.CLOSED)
    assert not first_run.should_welcome(config, home)


def test_the_dismissal_is_a_private_file_in_the_data_folder_never_config(
        home: AppPaths, umask_022: None) -> None:
    first_run.remember_dismissed(home, first_run.Dismissal.BUILTIN)
    first_run.remember_dismissed(home, first_run.Dismissal.CLOSED)  # the first one is kept
    flag = first_run.flag_path(home)
    assert flag.parent == home.data_dir
    assert json.loads(flag.read_text())["dismissed"] == "builtin"
    assert stat.S_IMODE(flag.stat().st_mode) == 0o600
    assert not home.config_file.exists()


def test_set_role_model_checks_the_file_first_and_keeps_other_settings(
        home: AppPaths, tiny_models: dict[str, Path]) -> None:
    from hivetray.errors import ModelLoadError

    save_config(home.config_file, make_config(None))
    with pytest.raises(ModelLoadError):
        first_run.set_role_model(home, "chat", str(tiny_models["random"]))
    assert load_config(home.config_file).config.role("chat").model is None
    first_run.set_role_model(home, "embed", str(tiny_models["embed"]))
    config = load_config(home.config_file).config
    assert config.role("embed").model == str(tiny_models["embed"])
    assert config.role("embed").idle_timeout_s == default_config().role("embed").idle_timeout_s


# -- the window on its own --------------------------------------------------------------------
def test_one_row_per_role_with_the_catalog_recommendation(qtbot: QtBot) -> None:
    window = WelcomeWindow()
    qtbot.addWidget(window)
    window.present()
    assert window.windowTitle() == "Hivetray — Welcome" == WINDOW_TITLE
    assert list(window.rows) == list(ROLES)
    texts = " ".join(label.text() for label in window.findChildren(type(window.message)))
    for role, row in window.rows.items():
        entry = find(DEFAULTS[role])
        assert entry is not None and row.entry == entry
        assert entry.name in texts and entry.about in texts
        assert download_size(entry.approx_mb) in texts
        with qtbot.waitSignal(window.get_model) as intent:
            row.button.click()
        assert intent.args == [role, entry.name]
    assert window.builtin_button is None  # no built-in model here: no such button
    assert window.focusWidget() is window.rows["chat"].button


def test_esc_closes_it_and_says_it_was_dismissed(qtbot: QtBot) -> None:
    window = WelcomeWindow()
    qtbot.addWidget(window)
    window.present()
    qtbot.waitExposed(window)
    with qtbot.waitSignal(window.dismissed):
        qtbot.keyClick(window, Qt.Key.Key_Escape)
    assert not window.isVisible()


def test_a_gguf_file_is_offered_for_the_chosen_role(qtbot: QtBot, tmp_path: Path) -> None:
    asked: list[QWidget] = []

    def choose(parent: QWidget) -> str:
        asked.append(parent)
        return str(tmp_path / "mine.gguf")

    window = WelcomeWindow(choose_file=choose)
    qtbot.addWidget(window)
    with qtbot.waitSignal(window.use_file) as intent:
        window.file_button.click()
    assert intent.args == ["chat", str(tmp_path / "mine.gguf")] and asked == [window]
    window.file_role.setCurrentText("embed")
    with qtbot.waitSignal(window.use_file) as intent:
        window.file_button.click()
    assert intent.args[0] == "embed"
    with qtbot.assertNotEmitted(window.use_file):
        window._choose_file = lambda _parent: ""  # cancelled
        window.file_button.click()


def test_the_built_in_button_is_there_when_the_model_is(qtbot: QtBot) -> None:
    window = WelcomeWindow(builtin.LABEL)
    qtbot.addWidget(window)
    assert window.builtin_button is not None
    assert window.builtin_button.text() == "Try the built-in model now"
    with qtbot.waitSignal(window.try_builtin):
        window.builtin_button.click()


def test_a_download_shows_progress_then_its_outcome_and_can_be_cancelled(qtbot: QtBot) -> None:
    window = WelcomeWindow()
    qtbot.addWidget(window)
    window.present()
    row = window.rows["embed"]
    window.download_started("embed")
    assert row.bar.isVisible() and row.button.text() == "Cancel"
    window.download_progress("embed", 30, 80)
    assert (row.bar.value(), row.bar.maximum()) == (30, 80)
    with qtbot.waitSignal(window.cancel_download) as intent:
        row.button.click()
    assert intent.args == ["embed"]
    window.download_finished("embed", False, "the download was cancelled — press Download to "
                             "resume.")
    assert not row.bar.isVisible() and row.button.text() == "Get"
    assert "cancelled" in row.note.text() and row.note.isVisible()


def test_no_text_is_cut_off_as_rows_grow(qtbot: QtBot) -> None:
    window = WelcomeWindow(builtin.LABEL)
    qtbot.addWidget(window)
    window.present()
    assert clipped_texts(window) == []  # the check every window's test uses
    window.set_models({"chat": "/home/me/models/a-model-with-a-long-name.Q4_K_M.gguf"})
    window.download_started("embed")
    window.download_finished("rerank", False, "Cannot fetch gpustack/bge-reranker-v2-m3-GGUF/"
                             "bge-reranker-v2-m3-Q4_K_M.gguf from huggingface.co: no network "
                             "connection. Connect to the network, then press Download again.")
    window.show_message("/tmp/x.gguf is not a GGUF model file Hivetray can load: bad magic "
                        "number; it is damaged or not a model: pick another file")
    assert clipped_texts(window) == []  # the check every window's test uses


# -- wired into the app -----------------------------------------------------------------------
COPY_AND_SET = """
import shutil, sys
from hivetray.cli_models import set_model
from hivetray.paths import app_paths
source, target = sys.argv[1], sys.argv[2]
shutil.copyfile(source, target)
sys.exit(set_model(app_paths(), "chat", target, None))
"""


@pytest.fixture
def make_desktop(qtbot: QtBot, qapp: QApplication, home: AppPaths, tmp_path: Path,
                 tiny_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
                 ) -> Iterator[Callable[..., DesktopApp]]:
    """A DesktopApp (not started: no socket, no worker), optionally with the built-in model;
    catalog downloads copy the tiny chat model and set it, as the real CLI does."""
    loop = qasync.QEventLoop(qapp, already_running=False)
    asyncio.set_event_loop(loop)
    made: list[DesktopApp] = []

    def download(role: str, entry: CatalogEntry) -> list[str]:
        target = target_path(home, entry.repo, entry.filename)
        target.parent.mkdir(parents=True, exist_ok=True)
        return [sys.executable, "-c", COPY_AND_SET, str(tiny_models["chat"]), str(target)]

    def make(*, with_builtin: bool = False) -> DesktopApp:
        if with_builtin:
            write_fake_builtin(tmp_path / "site", tiny_models["chat"])
            monkeypatch.syspath_prepend(str(tmp_path / "site"))
            monkeypatch.delenv(builtin.DISABLE_ENV, raising=False)
        app = DesktopApp(home, load_config(home.config_file))
        app.download_command = download
        qtbot.addWidget(app.quick_chat)
        made.append(app)
        return app

    yield make
    for app in made:
        for window in [*app.download_dialogs.values(), app.welcome, app.settings_dialog]:
            if window is not None:
                window.hide()
        loop.run_until_complete(app.instance.close())
        app._refresh.stop()
        app.history.close()
    loop.close()
    asyncio.set_event_loop(None)


def test_a_first_start_opens_it_and_a_start_with_a_model_does_not(
        make_desktop: Callable[..., DesktopApp], home: AppPaths,
        tiny_models: dict[str, Path]) -> None:
    first = make_desktop()
    assert first.welcome_on_first_run()
    assert first.welcome is not None and first.welcome.isVisible()
    save_config(home.config_file, make_config(tiny_models["chat"]))
    configured = make_desktop()
    assert not configured.welcome_on_first_run() and configured.welcome is None


def test_closing_it_is_remembered(make_desktop: Callable[..., DesktopApp],
                                  home: AppPaths) -> None:
    app = make_desktop()
    app.show_welcome()
    assert app.welcome is not None
    app.welcome.reject()  # Esc / Close
    assert first_run.dismissed(home)
    assert not make_desktop().welcome_on_first_run()


def test_get_downloads_with_progress_and_sets_the_role(
        qtbot: QtBot, make_desktop: Callable[..., DesktopApp], home: AppPaths) -> None:
    app = make_desktop()
    app.show_welcome()
    welcome = app.welcome
    assert welcome is not None
    row = welcome.rows["chat"]
    outcomes: list[bool] = []
    app._download_dialog("chat").downloader.finished.connect(
        lambda ok, _message: outcomes.append(ok))

    async def download() -> None:
        row.button.click()
        assert row.bar.isVisible() and row.button.text() == "Cancel"
        await until(lambda: outcomes, 30, what="the download's child process ended")

    asyncio.get_event_loop().run_until_complete(download())
    assert outcomes == [True]
    entry = find(DEFAULTS["chat"])
    assert entry is not None
    target = str(target_path(home, entry.repo, entry.filename))
    assert load_config(home.config_file).config.role("chat").model == target
    assert app.instance.config.role("chat").model == target  # applied by the app
    assert not row.bar.isVisible() and "set for the chat role" in row.note.text()
    assert not first_run.should_welcome(app.instance.config, home)


def test_a_gguf_file_is_checked_then_set(make_desktop: Callable[..., DesktopApp],
                                         home: AppPaths, tiny_models: dict[str, Path]) -> None:
    app = make_desktop()
    app.show_welcome()
    welcome = app.welcome
    assert welcome is not None
    welcome._choose_file = lambda _parent: str(tiny_models["random"])
    welcome.file_button.click()
    assert welcome.message.isVisible() and str(tiny_models["random"]) in welcome.message.text()
    assert not home.config_file.exists()  # nothing written for a file the pool would refuse
    welcome._choose_file = lambda _parent: str(tiny_models["chat"])
    on_loop(welcome.file_button.click)
    assert "is set for the chat role" in welcome.message.text()
    assert load_config(home.config_file).config.role("chat").model == str(tiny_models["chat"])
    assert app.instance.role_status("chat").model == str(tiny_models["chat"])
    assert "In use now: chat.gguf" in welcome.rows["chat"].note.text()


def test_trying_the_built_in_model_opens_quick_chat_and_is_remembered(
        make_desktop: Callable[..., DesktopApp], home: AppPaths) -> None:
    app = make_desktop(with_builtin=True)
    assert app.welcome_on_first_run()
    welcome = app.welcome
    assert welcome is not None and welcome.builtin_button is not None
    on_loop(welcome.builtin_button.click)  # the quick chat pre-warms the chat worker
    assert not welcome.isVisible() and app.quick_chat.isVisible()
    assert json.loads(first_run.flag_path(home).read_text())["dismissed"] == "builtin"
    # the built-in model is the chat model: quick chat has no "no model" banner
    assert app.instance.role_status("chat").model_label == builtin.LABEL
    assert not app.quick_chat.banner_box.isVisibleTo(app.quick_chat)


def test_quick_chat_without_any_model_offers_the_welcome_window(
        qtbot: QtBot, make_desktop: Callable[..., DesktopApp]) -> None:
    app = make_desktop()
    on_loop(app.toggle_chat)
    chat = app.quick_chat
    assert chat.banner_box.isVisibleTo(chat)
    assert chat.banner_button.text() == GET_FIRST_MODEL
    assert "hivetray models" not in chat.banner.text()
    chat.banner_button.click()
    assert app.welcome is not None and app.welcome.isVisible()
    assert not chat.isVisible()  # it stays on top of everything: it steps aside


def test_settings_reopens_it(make_desktop: Callable[..., DesktopApp], home: AppPaths,
                             tiny_models: dict[str, Path]) -> None:
    save_config(home.config_file, make_config(tiny_models["chat"]))
    app = make_desktop()
    app.show_settings()
    assert app.settings_dialog is not None
    [button] = [b for b in app.settings_dialog.findChildren(type(app.quick_chat.send_button))
                if b.text() == "Show the welcome window…"]
    button.click()
    assert app.welcome is not None and app.welcome.isVisible()
    assert "In use now: chat.gguf" in app.welcome.rows["chat"].note.text()
