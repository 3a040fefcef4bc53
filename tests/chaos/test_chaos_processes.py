"""Chaos on processes, against a real daemon: workers killed or frozen mid-stream and
mid-load, a crash burst that opens the breaker, the app SIGKILLed with a frozen worker, other
launches and private pools. Every invariant is checked after each fault (see ``checks``)."""

from __future__ import annotations

import pytest

from tests.chaos.conftest import MakeRun, finish

pytestmark = pytest.mark.real


def test_workers_killed_or_frozen_mid_stream(chaos: MakeRun) -> None:
    run = chaos(11)
    for kind in ("worker_sigkill_streaming", "worker_sigstop_streaming") * 2:
        run.step(kind)
    finish(run)


def test_workers_killed_or_frozen_while_loading(chaos: MakeRun) -> None:
    run = chaos(12)
    for kind in ("worker_sigkill_loading", "worker_sigstop_loading") * 2:
        run.step(kind)
    finish(run)


def test_a_crash_burst_opens_the_breaker_exactly(chaos: MakeRun) -> None:
    run = chaos(13)
    run.step("crash_burst")
    run.step("crash_burst")
    finish(run)


def test_the_app_killed_with_a_frozen_worker_leaves_nothing_behind(chaos: MakeRun) -> None:
    run = chaos(14)
    run.step("app_sigkill_frozen_worker")
    run.step("app_sigkill_frozen_worker")
    finish(run)


def test_other_launches_and_private_pools_leave_the_instance_alone(chaos: MakeRun) -> None:
    run = chaos(15)
    for kind in ("second_launch", "private_pools", "second_launch", "private_pools"):
        run.step(kind)
    finish(run)
