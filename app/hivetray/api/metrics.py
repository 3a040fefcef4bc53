"""``GET /metrics``: the pool's per-role figures in Prometheus' text format (version 0.0.4).

A small formatter rather than ``prometheus_client``: the figures already exist (one status
snapshot per scrape), so a registry, collectors and a second dependency would add nothing; the
text format is a few lines per metric (``# HELP``, ``# TYPE``, then ``name{labels} value``).
A figure that is unknown right now (no worker: no RSS) is left out, as Prometheus expects.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from hivetray.pool.states import RoleState
from hivetray.pool.status import RoleStatus

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True)
class Metric:
    name: str
    kind: str  # "gauge" | "counter"
    help: str
    value: Callable[[RoleStatus], float | int | None]


METRICS = (
    Metric("hivetray_role_requests_total", "counter", "Requests the role's workers served.",
           lambda s: s.requests),
    Metric("hivetray_role_prompt_tokens_total", "counter", "Prompt tokens the role evaluated.",
           lambda s: s.prompt_tokens),
    Metric("hivetray_role_completion_tokens_total", "counter",
           "Tokens the role generated.", lambda s: s.completion_tokens),
    Metric("hivetray_role_in_flight", "gauge", "Requests in flight now.", lambda s: s.in_flight),
    Metric("hivetray_role_crashes_in_window", "gauge",
           "Crashes inside the restart window (the breaker opens past the budget).",
           lambda s: s.crashes_in_window),
    Metric("hivetray_role_retry_in_seconds", "gauge",
           "Seconds until a cooling-down role may start again.", lambda s: s.retry_in_s),
    Metric("hivetray_role_load_seconds", "gauge", "How long the last model load took.",
           lambda s: s.load_s),
    Metric("hivetray_role_rss_bytes", "gauge", "Resident memory of the role's worker.",
           lambda s: s.rss_bytes),
    Metric("hivetray_role_tokens_per_second", "gauge",
           "Generation speed of the role's last reply.", lambda s: s.tokens_per_s),
    Metric("hivetray_role_uptime_seconds", "gauge", "How long the worker has been running.",
           lambda s: s.uptime_s),
)


def label(value: str) -> str:
    """A label value, escaped as the text format wants (backslash, quote, newline)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def number(value: float | int) -> str:
    return str(int(value)) if isinstance(value, bool | int) else repr(float(value))


def render(roles: Sequence[RoleStatus], crashes: Mapping[str, int]) -> str:
    """The whole exposition for one scrape; ``crashes`` counts crashes per role since the
    instance started (the status only knows those inside the restart window)."""
    lines = ["# HELP hivetray_role_state The role's state (1 for the current one).",
             "# TYPE hivetray_role_state gauge"]
    for status in roles:
        for state in RoleState:
            lines.append(f'hivetray_role_state{{role="{label(status.role)}",'
                         f'state="{state}"}} {int(status.state is state)}')
    lines += ["# HELP hivetray_role_crashes_total Crashes of the role's workers since start.",
              "# TYPE hivetray_role_crashes_total counter"]
    lines += [f'hivetray_role_crashes_total{{role="{label(s.role)}"}} {crashes.get(s.role, 0)}'
              for s in roles]
    for metric in METRICS:
        lines += [f"# HELP {metric.name} {metric.help}", f"# TYPE {metric.name} {metric.kind}"]
        for status in roles:
            value = metric.value(status)
            if value is not None:
                lines.append(f'{metric.name}{{role="{label(status.role)}"}} {number(value)}')
    return "\n".join(lines) + "\n"
