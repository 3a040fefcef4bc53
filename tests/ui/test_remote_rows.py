"""A remote role as the status window, the tray menu and ``hivetray status`` show it: the
model at the engine's address (no credentials) and the last round trip."""

from __future__ import annotations

from hivetray.pool.states import RoleState
from hivetray.pool.status import PoolStatus, RoleStatus
from hivetray.ui.formatting import state_line
from hivetray.ui.role_table import KEYS, RoleTableModel

REMOTE = RoleStatus("chat", RoleState.READY, model="qwen", engine="remote",
                    url="http://gpu-box:8080", rtt_ms=12.34)
LOCAL = RoleStatus("embed", RoleState.READY, model="/m/embed.gguf", rtt_ms=None)


def test_the_table_shows_where_a_remote_role_runs_and_its_round_trip() -> None:
    model = RoleTableModel(lambda: PoolStatus(1, (REMOTE, LOCAL)))
    model.refresh()

    def cell(row: int, key: str) -> object:
        return model.data(model.index(row, KEYS.index(key)))

    assert cell(0, "model") == "qwen @ http://gpu-box:8080"
    assert cell(0, "rtt_ms") == "12.3 ms"
    assert cell(1, "model") == "embed.gguf" and cell(1, "rtt_ms") == "—"


def test_the_tray_line_names_the_engine_and_round_trip() -> None:
    assert state_line(REMOTE) == "chat — ready · qwen @ http://gpu-box:8080 · 12.3 ms"
    assert state_line(LOCAL) == "embed — ready · embed.gguf"


def test_status_json_carries_engine_url_and_rtt() -> None:
    rows = PoolStatus(1, (REMOTE, LOCAL)).status_json()["roles"]
    assert (rows[0]["engine"], rows[0]["url"], rows[0]["rtt_ms"]) == (
        "remote", "http://gpu-box:8080", 12.34)
    assert (rows[1]["engine"], rows[1]["url"], rows[1]["rtt_ms"]) == ("local", None, None)
