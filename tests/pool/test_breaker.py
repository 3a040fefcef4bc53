"""The restart budget and circuit breaker, with an injected clock; and the deadline of the
scenario runner the supervisor's unit tests use (``tests.pool.harness.run``)."""

from __future__ import annotations

from hivetray.pool.breaker import BreakerState, CircuitBreaker
from tests.pool.fakes import FakeClock


def make(budget: int = 3, *, window_s: float = 60, cooldown_s: float = 60
         ) -> tuple[CircuitBreaker, FakeClock]:
    clock = FakeClock()
    return CircuitBreaker(clock, budget=budget, window_s=window_s, cooldown_s=cooldown_s), clock


def test_three_crashes_in_the_window_are_allowed_the_fourth_opens() -> None:
    breaker, clock = make()
    for _ in range(3):
        assert breaker.record_crash() is False
        clock.advance(1)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.record_crash() is True
    assert breaker.state is BreakerState.OPEN
    assert breaker.retry_in_s() == 60


def test_crashes_older_than_the_window_are_forgotten() -> None:
    breaker, clock = make()
    for _ in range(3):
        breaker.record_crash()
    clock.advance(60)
    assert breaker.crashes_in_window() == 0
    assert breaker.record_crash() is False
    assert breaker.crashes_in_window() == 1


def test_sliding_window_counts_only_recent_crashes() -> None:
    breaker, clock = make()
    breaker.record_crash()           # t=0
    clock.advance(30)
    breaker.record_crash()           # t=30
    breaker.record_crash()           # t=30
    clock.advance(31)                # t=61: the first one left the window
    assert breaker.record_crash() is False
    assert breaker.crashes_in_window() == 3
    assert breaker.record_crash() is True


def test_retry_in_counts_down_then_half_open() -> None:
    breaker, clock = make(budget=0)
    breaker.record_crash()
    clock.advance(18)
    assert breaker.retry_in_s() == 42
    clock.advance(42)
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.retry_in_s() == 0


def test_half_open_success_closes_and_clears_history() -> None:
    # a cooldown shorter than the window: the crash is still in the window when the attempt
    # succeeds, so only the success itself can clear it
    breaker, clock = make(budget=0, window_s=60, cooldown_s=10)
    breaker.record_crash()
    clock.advance(10)
    breaker.begin_attempt()
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.record_success() is True
    assert breaker.state is BreakerState.CLOSED
    assert breaker.crashes_in_window() == 0
    assert breaker.record_success() is False  # only a half-open success "closes"


def test_after_a_half_open_success_the_whole_budget_is_back() -> None:
    breaker, clock = make(budget=3, window_s=60, cooldown_s=10)
    for _ in range(4):
        breaker.record_crash()
        clock.advance(1)
    clock.advance(10)  # t=14: the four crashes are all still inside the 60 s window
    breaker.begin_attempt()
    assert breaker.record_success() is True
    for _ in range(3):  # the old crashes no longer count: three more are allowed...
        assert breaker.record_crash() is False
    assert breaker.state is BreakerState.CLOSED
    assert breaker.record_crash() is True  # ...and the fourth opens it again


def test_half_open_crash_reopens_for_a_full_cooldown() -> None:
    # a window shorter than the cooldown: the history has expired, so the budget alone would
    # allow this crash; only the half-open rule can re-open the breaker
    breaker, clock = make(budget=3, window_s=30, cooldown_s=60)
    for _ in range(4):
        breaker.record_crash()
    clock.advance(60)
    assert breaker.crashes_in_window() == 0
    breaker.begin_attempt()
    assert breaker.record_crash() is True
    assert breaker.state is BreakerState.OPEN
    assert breaker.retry_in_s() == 60


def test_reset_closes_at_once() -> None:
    breaker, _ = make(budget=0)
    breaker.record_crash()
    breaker.reset()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.retry_in_s() is None
    assert breaker.crashes_in_window() == 0


def test_begin_attempt_while_open_keeps_it_open() -> None:
    breaker, clock = make(budget=0)
    breaker.record_crash()
    clock.advance(10)
    breaker.begin_attempt()
    assert breaker.state is BreakerState.OPEN
