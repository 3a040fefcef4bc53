"""The supervisor under faults, over fake workers: callbacks tied to the worker that sent them,
start deadlines, deaths while loading, bounded queues, hostile files, stops of errored workers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hivetray.config import PoolConfig, RoleConfig
from hivetray.errors import InvalidModelFile, RoleInError, WorkerBusy, WorkerCrashed
from hivetray.pool import dispatch as role_module
from hivetray.pool.events import EventKind
from hivetray.pool.health import HealthMonitor, start_timeout_s
from hivetray.pool.states import RoleState
from hivetray.pool.tasks import TaskSet
from tests.pool.fakes import FakeClock
from tests.pool.harness import (
    SCENARIO_DEADLINE_S,
    make_rig,
    open_request,
    settle,
    start_ready,
)

# a scenario runs on fakes in milliseconds: one still running at the deadline waits for
# something that never comes (a broken stop escalation, say)
pytestmark = pytest.mark.timeout(SCENARIO_DEADLINE_S)

S = RoleState


@pytest.mark.asyncio
async def test_an_old_workers_exit_after_a_retry_is_not_applied_to_the_new_worker(
        tmp_path: Path) -> None:
    rig = make_rig(tmp_path, exits_on=frozenset())  # the errored worker lingers
    waiter = asyncio.ensure_future(rig.role.ensure_ready())
    await settle()
    old = rig.spawner.last
    old.load_error()
    with pytest.raises(Exception, match="bad magic"):
        await waiter
    rig.role.retry()
    await start_ready(rig)
    new = rig.spawner.last
    assert new is not old and rig.role.state is S.READY
    old.exit(1)  # the old process finally goes: nothing happens to the new one
    old.ready()  # and a late message of it is ignored
    await settle()
    assert rig.role.state is S.READY and rig.role.pid == new.pid
    assert rig.role.breaker.crashes_in_window() == 0 and rig.kinds(EventKind.CRASH) == []
    assert old.closed and not new.closed


@pytest.mark.asyncio
async def test_stop_of_a_role_in_error_reaps_its_lingering_worker(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, exits_on=frozenset({"sigkill"}))  # deaf to shutdown, SIGTERM
    rig.role.begin_start()
    await settle()
    link = rig.spawner.last
    link.load_error()
    assert rig.role.state is S.ERROR
    task = rig.role.stop("quit")
    assert task is not None
    await asyncio.wait_for(task, 5)
    assert link.signals == ["SIGTERM", "SIGKILL"] and link.exited
    assert rig.role.state is S.ERROR  # stopping an errored role does not change its state


@pytest.mark.asyncio
async def test_quit_waits_for_every_worker_of_a_role_whatever_its_state(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, exits_on=frozenset({"sigkill"}))
    rig.role.begin_start()
    await settle()
    lingering = rig.spawner.last
    lingering.load_error()
    rig.role.retry()
    await start_ready(rig)
    tasks = rig.role.stop_all_workers("quit")
    assert len(tasks) == 2  # the current worker and the replaced one
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert lingering.exited and rig.spawner.last.exited
    assert rig.role.live_links() == []


@pytest.mark.asyncio
async def test_a_start_past_its_deadline_is_killed_and_counted_as_a_crash(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, exits_on=frozenset({"shutdown", "sigkill"}))
    rig.role.config = RoleConfig(model="/models/m.gguf", start_timeout_s=30)
    waiter = asyncio.ensure_future(rig.role.ensure_ready())
    await settle()
    rig.clock.advance(29)
    rig.role.health_tick()
    assert rig.spawner.last.signals == []
    rig.clock.advance(1)
    rig.role.health_tick()
    assert rig.spawner.last.signals == ["SIGKILL"]
    with pytest.raises(WorkerCrashed, match="did not finish loading within 30 s"):
        await waiter
    assert rig.role.state is S.STOPPED and rig.role.breaker.crashes_in_window() == 1
    assert "did not finish loading" in (rig.role.last_error or "")
    assert len(rig.kinds(EventKind.START_TIMEOUT)) == 1


@pytest.mark.parametrize("signal_number", [6, 11])
@pytest.mark.asyncio
async def test_a_native_abort_while_loading_is_an_error_not_a_crash_loop(
        tmp_path: Path, signal_number: int) -> None:
    rig = make_rig(tmp_path)
    waiter = asyncio.ensure_future(rig.role.ensure_ready())
    await settle()
    rig.spawner.last.exit(-signal_number)
    with pytest.raises(WorkerCrashed, match=r"while loading /models/m\.gguf"):
        await waiter  # the crash report names the file that killed it
    assert rig.role.state is S.ERROR and "while loading" in (rig.role.last_error or "")
    with pytest.raises(RoleInError):
        await rig.role.ensure_ready()  # no respawn until retried
    assert len(rig.spawner.links) == 1


@pytest.mark.asyncio
async def test_requests_past_the_queue_bound_get_a_typed_busy_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(role_module, "MAX_QUEUED_REQUESTS", 3)
    rig = make_rig(tmp_path)
    await start_ready(rig)
    async with open_request(rig), open_request(rig), open_request(rig):
        assert len(rig.role.in_flight) == 3
        with pytest.raises(WorkerBusy, match=r"busy .*3 requests already waiting"):
            async for _chunk in rig.role.stream("chat", {}):
                pass
        assert len(rig.spawner.last.sent) == 3  # the refused one never reached the worker


@pytest.mark.asyncio
async def test_any_failure_of_the_file_check_is_an_error_naming_the_file(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    ran_through: list[str] = []

    def check(role: str, model: str | None, mmproj: str | None) -> None:
        raise RecursionError("maximum recursion depth exceeded")

    async def runner(fn):  # type: ignore[no-untyped-def]
        ran_through.append("runner")
        return fn()

    rig.role.launcher.validate_model = check
    rig.role.launcher.run_blocking = runner
    with pytest.raises(InvalidModelFile, match=r"/models/m\.gguf could not be checked"):
        await rig.role.ensure_ready()
    assert ran_through == ["runner"]  # off the loop, through the injected runner
    assert rig.role.state is S.ERROR and rig.spawner.links == []


@pytest.mark.asyncio
async def test_a_stop_during_the_file_check_spawns_nothing(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    release = asyncio.Event()

    async def slow_runner(fn):  # type: ignore[no-untyped-def]
        await release.wait()
        return fn()

    rig.role.launcher.run_blocking = slow_runner
    rig.role.begin_start()
    task = rig.role.stop("stop asked")
    assert task is not None
    await task
    release.set()
    await settle()
    assert rig.role.state is S.STOPPED and rig.spawner.links == []


def test_health_monitor_pings_on_schedule_and_spots_a_hung_worker() -> None:
    clock = FakeClock()
    health = HealthMonitor(clock, interval_s=10, timeout_s=5)
    health.restart()
    assert health.ping_due() is None
    clock.advance(10)
    seq = health.ping_due()
    assert seq == 1 and health.ping_due() is None  # one ping at a time
    clock.advance(4.9)
    assert not health.overdue()
    assert health.pong(seq + 1) is False  # not the ping in flight
    clock.advance(0.1)
    assert health.overdue()
    assert health.pong(seq) is True and not health.overdue()


def test_the_automatic_start_deadline_grows_with_the_model() -> None:
    assert start_timeout_s(0, 0) == 60
    assert start_timeout_s(0, 4 * 2**30) == 60 + 4 * 30
    assert start_timeout_s(12.5, 4 * 2**30) == 12.5  # configured wins


def test_a_failed_background_task_becomes_a_report_not_a_lost_exception() -> None:
    failures: list[tuple[str, str]] = []

    async def scenario() -> None:
        tasks = TaskSet(lambda name, error: failures.append((name, str(error))))

        async def broken() -> None:
            raise ValueError("boom")

        tasks.spawn(broken(), "settle-chat")
        await tasks.wait()
        assert len(tasks) == 0

    asyncio.run(scenario())
    assert failures == [("settle-chat", "boom")]


@pytest.mark.asyncio
async def test_settings_change_during_error_replaces_the_lingering_worker(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, exits_on=frozenset({"shutdown"}), pinned=True)
    rig.role.begin_start()
    await settle()
    rig.spawner.last.load_error()
    task = rig.role.reconfigure(RoleConfig(model="/models/other.gguf", pinned=True))
    assert task is not None
    await task
    await settle()
    assert rig.role.state is S.STARTING and rig.spawner.last.spec.model == "/models/other.gguf"
    assert rig.spawner.links[0].exited  # the errored worker was stopped, not orphaned


def test_pool_config_reaches_the_health_monitor(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    rig.role.apply_pool_config(PoolConfig(health_interval_s=3, ping_timeout_s=2))
    assert (rig.role.health.interval_s, rig.role.health.timeout_s) == (3, 2)
