"""Restart budget with a sliding window, and the circuit breaker it opens.

Closed: crashes are counted in a window (default 3 allowed per 60 s). The crash that exceeds the
budget opens the breaker for ``cooldown_s``. When the cooldown is over the breaker is half-open:
one attempt is allowed; its success closes the breaker and forgets the history, a crash re-opens
it. The clock is injected, so every edge is a fast deterministic unit test.
"""

from __future__ import annotations

from collections import deque
from enum import StrEnum

from hivetray.pool.clock import Clock


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(self, clock: Clock, budget: int = 3, window_s: float = 60.0,
                 cooldown_s: float = 60.0) -> None:
        self.clock = clock
        self.budget = budget
        self.window_s = window_s
        self.cooldown_s = cooldown_s
        self._crashes: deque[float] = deque()
        self._open_until: float | None = None
        self._half_open = False

    def configure(self, budget: int, window_s: float, cooldown_s: float) -> None:
        self.budget, self.window_s, self.cooldown_s = budget, window_s, cooldown_s

    @property
    def state(self) -> BreakerState:
        if self._open_until is not None:
            return BreakerState.OPEN if self.clock.now() < self._open_until \
                else BreakerState.HALF_OPEN
        return BreakerState.HALF_OPEN if self._half_open else BreakerState.CLOSED

    def crashes_in_window(self) -> int:
        self._prune()
        return len(self._crashes)

    def retry_in_s(self) -> float | None:
        """Seconds until the half-open attempt is allowed, or None when not open."""
        if self._open_until is None:
            return None
        return max(0.0, self._open_until - self.clock.now())

    def record_crash(self) -> bool:
        """Count a crash; return True when this crash opened (or re-opened) the breaker."""
        now = self.clock.now()
        if self._half_open or self.state is BreakerState.HALF_OPEN:
            self._crashes.append(now)
            self._open(now)
            return True
        self._crashes.append(now)
        self._prune()
        if len(self._crashes) > self.budget:
            self._open(now)
            return True
        return False

    def begin_attempt(self) -> None:
        """A spawn is starting; after a cooldown it is the single half-open attempt."""
        if self._open_until is not None and self.clock.now() >= self._open_until:
            self._open_until = None
            self._half_open = True

    def record_success(self) -> bool:
        """The worker proved healthy; return True if this closed a half-open breaker."""
        if self._half_open:
            self.reset()
            return True
        return False

    def reset(self) -> None:
        """'Retry now', or a successful half-open attempt: forget everything."""
        self._crashes.clear()
        self._open_until = None
        self._half_open = False

    def _open(self, now: float) -> None:
        self._half_open = False
        self._open_until = now + self.cooldown_s

    def _prune(self) -> None:
        horizon = self.clock.now() - self.window_s
        while self._crashes and self._crashes[0] <= horizon:
            self._crashes.popleft()
