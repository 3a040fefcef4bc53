"""Settings' Local / Remote switch and its "Test connection" button, against a real
llama-server (vision, with the tiny projector) and an address where nothing listens."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pytestqt.qtbot import QtBot

from hivetray.config import default_config, load_config
from hivetray.paths import AppPaths
from hivetray.ui.settings import SettingsDialog
from tests.helpers.llama_server import LlamaServer, free_port


def test_a_remote_role_is_saved_without_its_key_and_hides_the_file_fields(
        qtbot: QtBot, home: AppPaths) -> None:
    dialog = SettingsDialog(home, default_config())
    qtbot.addWidget(dialog)
    chat = dialog.role_tabs["chat"]
    chat.engine.engine.setCurrentIndex(1)
    assert not chat.engine.form.isRowVisible(chat.model)
    assert chat.engine.form.isRowVisible(chat.engine.url)
    chat.engine.url.setText("not a url")
    assert chat.problems() == ["the chat role's engine URL must start with http:// or https://"]
    chat.engine.url.setText("http://gpu-box:8080/")
    chat.engine.model.setText("qwen2.5:7b")
    chat.engine.key_env.setText("GPU_KEY")
    with qtbot.waitSignal(dialog.saved):
        dialog.save()
    role = load_config(home.config_file).config.role("chat")
    assert (role.engine, role.url, role.model, role.api_key_env) == (
        "remote", "http://gpu-box:8080", "qwen2.5:7b", "GPU_KEY")
    reopened = SettingsDialog(home, load_config(home.config_file).config)
    qtbot.addWidget(reopened)
    assert reopened.role_tabs["chat"].engine.remote
    assert reopened.role_tabs["chat"].engine.model.text() == "qwen2.5:7b"


def test_test_connection_reports_the_engine_model_context_and_images(
        qtbot: QtBot, home: AppPaths, start_llama_server: Callable[..., LlamaServer],
        tiny_models: dict[str, Path]) -> None:
    server = start_llama_server(tiny_models["chat"], "--mmproj", str(tiny_models["mmproj"]))
    dialog = SettingsDialog(home, default_config())
    qtbot.addWidget(dialog)
    vision = dialog.role_tabs["vision"].engine
    vision.engine.setCurrentIndex(1)
    vision.url.setText(server.url)
    vision.test.click()
    assert vision.result.text() == "Connecting…"  # the window is not blocked meanwhile
    qtbot.waitUntil(lambda: vision.test.isEnabled(), timeout=10_000)
    text = vision.result.text()
    assert text.startswith("✓ llama-server · ") and "chat.gguf" in text
    assert "context 256 tokens · takes images" in text

    vision.url.setText(f"http://127.0.0.1:{free_port()}")
    vision.test.click()
    qtbot.waitUntil(lambda: vision.test.isEnabled(), timeout=10_000)
    assert vision.result.text().startswith("✗ the engine at http://127.0.0.1:")
    assert "is unreachable" in vision.result.text()
