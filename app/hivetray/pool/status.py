"""What the pool tells the outside about its roles: typed, frozen, and one JSON shape.

The UI renders :class:`RoleStatus` objects (never dicts), and asks them what may be done
(``can_stop``, ``can_retry``) instead of spelling state names itself; ``hivetray status
--json`` is produced here, in :meth:`PoolStatus.status_json`, and nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

from hivetray.pool.states import RETRYABLE, STOPPABLE, TRANSITIONAL, TROUBLE, RoleState
from hivetray.sampling import Sampling
from hivetray.wording import Wording

#: the fields of one role in ``hivetray status --json`` (docs/contract.md), in this order
STATUS_JSON_KEYS = ("role", "state", "pid", "model", "in_flight", "crashes_in_window",
                    "retry_in_s", "last_error", "rss_bytes", "requests", "tokens_per_s",
                    "mem_estimate_bytes", "engine", "url", "rtt_ms")


@dataclass(frozen=True)
class RoleStatus:
    role: str
    state: RoleState
    pid: int | None = None
    model: str | None = None
    in_flight: int = 0
    crashes_in_window: int = 0
    retry_in_s: float | None = None
    last_error: str | None = None
    rss_bytes: int | None = None
    requests: int = 0
    tokens_per_s: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    load_s: float | None = None
    uptime_s: float | None = None
    pinned: bool = False
    #: what a worker for the role's model needs in memory, estimated before it is spawned
    #: (model files + KV cache for n_ctx, from the GGUF header); None when unknown
    mem_estimate_bytes: int | None = None
    #: the sampling defaults its requests get (chat and vision roles)
    sampling: Sampling | None = None
    #: a name for people when the model is a built-in default (else None: the path says it)
    model_label: str | None = None
    #: "local" (a worker process) or "remote" (an engine at ``url``, shown without credentials)
    engine: str = "local"
    url: str | None = None
    #: a remote role's last round trip (a request's answer or a health check), milliseconds
    rtt_ms: float | None = None
    #: ``last_error`` as a problem and a typed remedy, so a window can say it in its own words
    #: (a button to press, not a command to type); not in ``status --json``
    last_failure: Wording | None = None

    @property
    def remote(self) -> bool:
        return self.engine == "remote"

    @property
    def rtt_text(self) -> str | None:
        """'12.3 ms' for a remote role that has made a round trip, else None."""
        return f"{self.rtt_ms:.1f} ms" if self.remote and self.rtt_ms is not None else None

    def served_by(self, name: Callable[[str], str] = str) -> str | None:
        """What serves the role, for people: the model (``name`` shortens a path), and for a
        remote role the engine's address ('qwen2.5 @ http://gpu-box:8080')."""
        if self.remote:
            return f"{self.model or 'default model'} @ {self.url}"
        return name(self.model) if self.model else None

    @property
    def error_for_window(self) -> str | None:
        """The last error as a window shows it (its first line, the remedy as a button)."""
        if self.last_failure is not None:
            return self.last_failure.for_window()
        return Wording(self.last_error).for_window() if self.last_error else None

    @property
    def can_stop(self) -> bool:
        return self.state in STOPPABLE

    @property
    def can_retry(self) -> bool:
        return self.state in RETRYABLE

    @property
    def configured(self) -> bool:
        return self.state is not RoleState.UNCONFIGURED

    @property
    def in_trouble(self) -> bool:
        return self.state in TROUBLE

    @property
    def in_transition(self) -> bool:
        return self.state in TRANSITIONAL

    def to_dict(self) -> dict[str, Any]:
        """Every field (the socket's ``status`` reply; the CLI's text view reads them)."""
        out = asdict(self)
        out["state"] = str(self.state)
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RoleStatus:
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in raw.items() if key in known}
        values["state"] = RoleState(raw["state"])
        if isinstance(values.get("sampling"), dict):
            values["sampling"] = Sampling(**values["sampling"])
        values["last_failure"] = Wording.from_dict(values.get("last_failure"))
        return cls(**values)


@dataclass(frozen=True)
class PoolStatus:
    pid: int
    roles: tuple[RoleStatus, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "roles": [status.to_dict() for status in self.roles]}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> PoolStatus:
        return cls(int(raw["pid"]), tuple(RoleStatus.from_dict(r) for r in raw["roles"]))

    def status_json(self) -> dict[str, Any]:
        """The ``hivetray status --json`` document: exactly the contract's fields."""
        return {"pid": self.pid,
                "roles": [{key: row[key] for key in STATUS_JSON_KEYS}
                          for row in (status.to_dict() for status in self.roles)]}
