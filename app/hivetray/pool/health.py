"""Liveness of one role's worker: health pings on the control channel, and the start deadline.

Shaped like the circuit breaker: a small object over an injected clock that the supervisor asks
"what now?" on every tick, so each rule is a fast deterministic unit test. The supervisor acts
on the answers (sends the ping, kills the worker); this module only keeps time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import StrEnum

from hivetray.pool.clock import Clock
from hivetray.pool.worker_run import WorkerRun

#: a start may take this long whatever the model's size...
START_TIMEOUT_BASE_S = 60.0
#: ...plus this much per GiB of model (and projector) file: a cold disk reads ~100 MB/s at worst
START_TIMEOUT_PER_GIB_S = 30.0


def start_timeout_s(configured_s: float, model_bytes: int) -> float:
    """The deadline for loading a model: the role's ``start_timeout_s``, or (0 = automatic) a
    generous one that grows with the files' size, so a big model on a slow disk is not killed
    while a frozen load (a stopped process, a stalled disk) still ends."""
    if configured_s > 0:
        return configured_s
    return START_TIMEOUT_BASE_S + START_TIMEOUT_PER_GIB_S * model_bytes / 2**30


def files_size(*paths: str | None) -> int:
    """Bytes of the given files (missing ones count 0): what a load has to read."""
    total = 0
    for path in paths:
        try:
            total += os.stat(path).st_size if path else 0
        except OSError:
            pass
    return total


class Stuck(StrEnum):
    """Why a worker is killed: it overran its start deadline, or stopped answering pings."""

    LOADING = "loading"
    HUNG = "hung"


@dataclass(frozen=True)
class Verdict:
    """What the supervisor should do for its worker now: ping it, or kill it (and why)."""

    ping_seq: int | None = None
    stuck: Stuck | None = None
    reason: str = ""


class HealthMonitor:
    """Ping schedule and ping timeout of the current worker, and its start deadline."""

    def __init__(self, clock: Clock, interval_s: float = 10.0, timeout_s: float = 5.0) -> None:
        self.clock = clock
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.seq = 0
        self._sent_at: float | None = None
        self._last_ping_at = clock.now()

    def configure(self, interval_s: float, timeout_s: float) -> None:
        self.interval_s, self.timeout_s = interval_s, timeout_s

    def restart(self) -> None:
        """A worker became ready: its first ping is one interval away."""
        self._sent_at = None
        self._last_ping_at = self.clock.now()

    def forget(self) -> None:
        """The worker is gone (or killed): an unanswered ping no longer matters."""
        self._sent_at = None

    def ping_due(self) -> int | None:
        """The seq of a ping to send now, or None (not yet, or one is still unanswered)."""
        now = self.clock.now()
        if self._sent_at is not None or now - self._last_ping_at < self.interval_s:
            return None
        self.seq += 1
        self._sent_at = self._last_ping_at = now
        return self.seq

    def overdue(self) -> bool:
        """True when the last ping has gone unanswered for ``timeout_s``: the worker is hung."""
        return self._sent_at is not None and self.clock.now() - self._sent_at >= self.timeout_s

    def pong(self, seq: object) -> bool:
        """Record an answer; True when it answers the ping in flight."""
        if self._sent_at is not None and seq == self.seq:
            self._sent_at = None
            return True
        return False

    def start_overdue(self, spawned_at: float, timeout_s: float) -> bool:
        return self.clock.now() - spawned_at >= timeout_s

    def verdict(self, run: WorkerRun, *, loading: bool, serving: bool) -> Verdict | None:
        """One tick's decision for ``run``: nothing, a ping to send, or a kill (not twice)."""
        if run.kill_reason is not None:
            return None
        if loading:
            if self.start_overdue(run.spawned_at, run.start_timeout_s):
                return Verdict(stuck=Stuck.LOADING, reason=f"did not finish loading within "
                               f"{run.start_timeout_s:g} s and was killed")
            return None
        if not serving:
            return None
        if self.overdue():
            self.forget()
            return Verdict(stuck=Stuck.HUNG, reason=f"did not answer a health ping within "
                           f"{self.timeout_s:g} s and was killed")
        seq = self.ping_due()
        return Verdict(ping_seq=seq) if seq is not None else None
