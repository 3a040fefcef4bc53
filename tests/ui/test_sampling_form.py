"""Sampling defaults in Settings: chat and vision tabs have them; what is saved is what the
request check takes; hand-written precision survives a save that did not touch the field."""

from __future__ import annotations

from dataclasses import replace

from pytestqt.qtbot import QtBot

from hivetray.config import RoleConfig, default_config, load_config
from hivetray.paths import AppPaths
from hivetray.sampling import DEFAULT_SAMPLING, MAX_SEED, sampling_problem
from hivetray.ui.settings import SettingsDialog


def test_only_the_sampled_roles_have_sampling_fields(qtbot: QtBot, home: AppPaths) -> None:
    dialog = SettingsDialog(home, default_config())
    qtbot.addWidget(dialog)
    assert dialog.role_tabs["chat"].sampling is not None
    assert dialog.role_tabs["vision"].sampling is not None
    assert dialog.role_tabs["embed"].sampling is None
    assert dialog.role_tabs["rerank"].sampling is None


def test_changed_sampling_is_saved_to_config_toml(qtbot: QtBot, home: AppPaths) -> None:
    dialog = SettingsDialog(home, default_config())
    qtbot.addWidget(dialog)
    form = dialog.role_tabs["chat"].sampling
    assert form is not None
    form.temperature.setValue(0.0)
    form.top_k.setValue(20)
    form.top_p.setValue(0.9)
    form.repeat_penalty.setValue(1.25)
    form.seed.setValue(1234)
    with qtbot.waitSignal(dialog.saved):
        dialog.save()
    loaded = load_config(home.config_file)
    assert loaded.warnings == []
    assert loaded.config.role("chat").sampling == replace(
        DEFAULT_SAMPLING, temperature=0.0, top_k=20, top_p=0.9, repeat_penalty=1.25, seed=1234)
    assert loaded.config.role("vision").sampling == DEFAULT_SAMPLING


def test_untouched_fields_keep_hand_written_values_exactly(qtbot: QtBot,
                                                           home: AppPaths) -> None:
    config = default_config()
    roles = dict(config.roles)
    roles["chat"] = RoleConfig(top_p=0.925, seed=MAX_SEED)  # finer than the boxes show
    dialog = SettingsDialog(home, replace(config, roles=roles))
    qtbot.addWidget(dialog)
    form = dialog.role_tabs["chat"].sampling
    assert form is not None
    form.temperature.setValue(0.5)
    chat = dialog.collect().role("chat")
    assert (chat.top_p, chat.seed, chat.temperature) == (0.925, MAX_SEED, 0.5)


def test_reset_and_random_seed(qtbot: QtBot, home: AppPaths) -> None:
    config = default_config()
    roles = dict(config.roles)
    roles["vision"] = RoleConfig(temperature=1.5, seed=9)
    dialog = SettingsDialog(home, replace(config, roles=roles))
    qtbot.addWidget(dialog)
    form = dialog.role_tabs["vision"].sampling
    assert form is not None
    form.show(DEFAULT_SAMPLING)  # what the reset button does
    vision = dialog.collect().role("vision")
    assert vision.sampling == DEFAULT_SAMPLING and vision.seed is None


def test_every_value_the_boxes_allow_passes_the_request_check(qtbot: QtBot,
                                                              home: AppPaths) -> None:
    dialog = SettingsDialog(home, default_config())
    qtbot.addWidget(dialog)
    form = dialog.role_tabs["chat"].sampling
    assert form is not None
    boxes = {"temperature": form.temperature, "top_k": form.top_k, "top_p": form.top_p,
             "min_p": form.min_p, "repeat_penalty": form.repeat_penalty,
             "repeat_last_n": form.repeat_last_n}
    for key, box in boxes.items():
        for value in (box.minimum(), box.maximum()):
            assert sampling_problem(key, value) is None, (key, value)
    assert sampling_problem("seed", form.seed.maximum()) is None
