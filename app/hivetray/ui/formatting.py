"""How numbers and states read in the UI (shared by the tray menu and the status window)."""

from __future__ import annotations

from hivetray.pool.states import RoleState
from hivetray.pool.status import RoleStatus

S = RoleState
STATE_LABELS: dict[RoleState, str] = {
    S.UNCONFIGURED: "no model set",
    S.STOPPED: "stopped",
    S.STARTING: "starting…",
    S.READY: "ready",
    S.BUSY: "busy",
    S.COOLING_DOWN: "cooling down",
    S.STOPPING: "stopping…",
    S.ERROR: "error",
}

STATE_COLOURS: dict[RoleState, str] = {
    S.READY: "#2e9d4f",
    S.BUSY: "#2f7fd8",
    S.STARTING: "#c98a00",
    S.STOPPING: "#c98a00",
    S.COOLING_DOWN: "#d9480f",
    S.ERROR: "#e5484d",
}


def model_name(path: str | None) -> str:
    if not path:
        return "—"
    return path.replace("\\", "/").rsplit("/", 1)[-1]


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def state_line(status: RoleStatus) -> str:
    """'chat — ready · qwen.gguf' / 'chat — cooling down (42 s)' for the tray menu."""
    label = STATE_LABELS[status.state]
    if status.state is S.COOLING_DOWN and status.retry_in_s is not None:
        label += f" ({round(status.retry_in_s)} s)"
    if status.in_flight:
        label += f" · {status.in_flight} in flight"
    model = "built-in demo model" if status.model_label else (
        status.served_by(model_name) or "")
    if status.rtt_text:
        model += f" · {status.rtt_text}"
    return f"{status.role} — {label}" + (f" · {model}" if model else "")
