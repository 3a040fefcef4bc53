"""How numbers and states read in the UI (shared by the tray menu and the status window)."""

from __future__ import annotations

from typing import Any

STATE_LABELS = {
    "unconfigured": "no model set",
    "stopped": "stopped",
    "starting": "starting…",
    "ready": "ready",
    "busy": "busy",
    "cooling_down": "cooling down",
    "stopping": "stopping…",
    "error": "error",
}

STATE_COLOURS = {
    "ready": "#2e9d4f",
    "busy": "#2f7fd8",
    "starting": "#c98a00",
    "stopping": "#c98a00",
    "cooling_down": "#d9480f",
    "error": "#e5484d",
}


def model_name(path: str | None) -> str:
    if not path:
        return "—"
    return path.replace("\\", "/").rsplit("/", 1)[-1]


def megabytes(value: int | None) -> str:
    return f"{value / 2**20:.0f} MiB" if value else "—"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def state_line(row: dict[str, Any]) -> str:
    """'chat — ready · qwen.gguf' / 'chat — cooling down (42 s)' for the tray menu."""
    state = str(row["state"])
    label = STATE_LABELS.get(state, state)
    if state == "cooling_down" and row.get("retry_in_s") is not None:
        label += f" ({round(row['retry_in_s'])} s)"
    if row.get("in_flight"):
        label += f" · {row['in_flight']} in flight"
    model = model_name(row.get("model")) if row.get("model") else ""
    return f"{row['role']} — {label}" + (f" · {model}" if model else "")
